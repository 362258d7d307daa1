"""The flow engine against fake switch connections: dump, diff, barrier, readiness, restarts,
admission of switches, duplicate connections, and rejected flows held back with backoff."""

from __future__ import annotations

import struct
import threading
from ipaddress import IPv4Address, IPv4Network

import pytest

from controller.engine import Engine
from controller.flows import Flow
from controller.model import Block, Endpoint, EndpointState, Host, Network, Snapshot, mac_for_ip
from controller.oftable import Switch
from controller.pipeline import desired_flows

OFPT_FLOW_MOD = 14
OFPT_BARRIER_REQUEST = 20
OFPFC_ADD, OFPFC_DELETE = 0, 3


class FakeConn:
    """Records what the engine sends; splits buffers into OpenFlow messages."""

    def __init__(self, dpid: int, peer_name: str | None = None) -> None:
        self.dpid = dpid
        self.address = "198.18.0.9:1234"
        self.peer_name = peer_name
        self.msgs: list[tuple[int, int, int, int]] = []  # (type, xid, command, cookie)
        self.dumps = 0
        self.missed = False
        self.closed = False
        self.busy = False

    def send(self, data: bytes) -> bool:
        off = 0
        while off < len(data):
            _, mtype, length, xid = struct.unpack_from("!BBHI", data, off)
            cmd = cookie = -1
            if mtype == OFPT_FLOW_MOD:
                (cookie,) = struct.unpack_from("!Q", data, off + 8)
                cmd = data[off + 25]
            self.msgs.append((mtype, xid, cmd, cookie))
            off += length
        return True

    def request_flow_dump(self) -> None:
        self.dumps += 1

    def missed_echo(self) -> bool:
        return self.missed

    def congested(self) -> bool:
        return self.busy

    def close(self) -> None:
        self.closed = True

    def adds(self) -> list[tuple[int, int]]:
        """(xid, cookie) of every add sent."""
        return [(x, c) for t, x, cmd, c in self.msgs if t == OFPT_FLOW_MOD and cmd == OFPFC_ADD]

    def barriers(self) -> list[int]:
        return [xid for t, xid, _, _ in self.msgs if t == OFPT_BARRIER_REQUEST]

    def flow_mods(self) -> list[tuple[int, int]]:
        """(command, cookie) of every flow-mod sent, in order."""
        return [(cmd, cookie) for t, _, cmd, cookie in self.msgs if t == OFPT_FLOW_MOD]

    def cookies(self, command: int) -> set[int]:
        return {c for t, _, cmd, c in self.msgs if t == OFPT_FLOW_MOD and cmd == command}


def play(table: Switch, msgs: list[tuple[int, int, int, int]], catalog: dict[int, Flow]) -> None:
    """Apply to ``table`` the flow-mods among ``msgs`` (a ``FakeConn``'s), adds decoded by
    their cookie through ``catalog``."""
    for mtype, _xid, cmd, cookie in msgs:
        if mtype == OFPT_FLOW_MOD and cmd == OFPFC_ADD:
            table.add(catalog[cookie])
        elif mtype == OFPT_FLOW_MOD and cmd == OFPFC_DELETE:
            table.delete_cookie(cookie)


class TableConn(FakeConn):
    """A connection whose flow-mods land in an in-memory flow table (adds decoded through
    ``catalog``: every flow the test can produce, by cookie)."""

    def __init__(self, dpid: int, catalog: dict[int, Flow]) -> None:
        super().__init__(dpid)
        self.catalog = catalog
        self.table = Switch(f"br-int of dpid {dpid}")

    def send(self, data: bytes) -> bool:
        first = len(self.msgs)
        super().send(data)
        play(self.table, self.msgs[first:], self.catalog)
        return True


def snapshot(rev: int, with_b: bool = False, a_port: int = 5, h9: bool = False) -> Snapshot:
    net = Network("blue", 7, IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))
    a_ip, b_ip = IPv4Address("10.0.0.2"), IPv4Address("10.0.0.66")
    eps = [Endpoint("blue", "a", a_ip, mac_for_ip(a_ip), "h1", a_port, EndpointState.PENDING, 1)]
    if with_b:
        eps.append(
            Endpoint("blue", "b", b_ip, mac_for_ip(b_ip), "h2", 6, EndpointState.PENDING, rev)
        )
    hosts = {
        "h1": Host("h1", IPv4Address("198.18.0.1"), dpid=1),
        "h2": Host("h2", IPv4Address("198.18.0.2"), dpid=2),
    }
    if h9:
        hosts["h9"] = Host("h9", IPv4Address("198.18.0.9"), dpid=9)
    return Snapshot(
        rev,
        {"blue": net},
        hosts,
        (
            Block("blue", IPv4Network("10.0.0.0/26"), "h1"),
            Block("blue", IPv4Network("10.0.0.64/26"), "h2"),
        ),
        tuple(eps),
    )


class Harness:
    def __init__(
        self,
        poll: float = 60,
        require_cert: bool = False,
        bundles: str = "never",
        hosts_at_start: int = 0,
        read: bool = True,
        max_dumps: int | None = None,
    ) -> None:
        self.snap = snapshot(1)
        self.fail_reads = False
        self.marked: list[tuple[int, list[str]]] = []
        self.now = 1000.0
        self.events: list[tuple[str, dict]] = []
        self.engine = Engine(
            self._session,
            self._load,
            self._revision,
            self._mark,
            poll_interval=poll,
            on_event=lambda kind, **data: self.events.append((kind, data)),
            require_cert=require_cert,
            clock=lambda: self.now,
            bundles=bundles,  # these tests read plain flow-mods; bundles: test_bundles.py
            hosts_at_start=hosts_at_start,
            **({} if max_dumps is None else {"max_dumps": max_dumps}),
        )
        if read:
            self.sync()  # the engine knows the registered hosts before switches connect

    class _S:
        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *a: object) -> None:
            pass

        def commit(self) -> None:
            pass

    def _session(self):  # noqa: ANN202
        return self._S()

    def _revision(self, _s: object) -> int:
        if self.fail_reads:
            raise RuntimeError("database is down")
        return self.snap.revision

    def _load(self, _s: object) -> Snapshot:
        if self.fail_reads:
            raise RuntimeError("database is down")
        return self.snap

    def _mark(self, _s: object, revisions: object) -> int:
        self.marked.append(list(revisions))  # type: ignore[call-overload]
        return 0

    def sync(self) -> None:
        self.engine.sync_all(self._load(None))


@pytest.fixture
def h() -> Harness:
    return Harness()


def test_connect_dump_then_full_install_and_barrier(h: Harness) -> None:
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    assert c1.dumps == 1
    h.sync()
    assert c1.msgs == [], "nothing is sent before the flow dump answered"
    h.engine.switch_dump(1, [], more=False)
    h.sync()
    want = {f.cookie for f in desired_flows(h.snap, "h1")}
    assert c1.cookies(OFPFC_ADD) == want
    assert c1.msgs[-1][0] == OFPT_BARRIER_REQUEST
    assert not h.engine.wait_applied(1, 0.01)
    h.engine.barrier_reply(1, c1.barriers()[-1])
    assert h.engine.wait_applied(1, 0.01, hosts=["h1"])
    assert not h.engine.wait_applied(1, 0.01, hosts=["h2"]), "h2's switch is not connected"


def test_reconnect_with_flows_in_place_sends_only_stale_deletes(h: Harness) -> None:
    want = {f.cookie for f in desired_flows(h.snap, "h1")}
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    stale = 0x1234
    h.engine.switch_dump(1, [*want, stale], more=True)
    h.engine.switch_dump(1, [], more=False)
    h.sync()
    assert c1.cookies(OFPFC_ADD) == set()
    assert c1.cookies(OFPFC_DELETE) == {stale}


def test_change_touches_only_switches_it_concerns(h: Harness) -> None:
    c1, c2 = FakeConn(1), FakeConn(2)
    for c in (c1, c2):
        h.engine.switch_connected(c)
        h.engine.switch_dump(c.dpid, [], more=False)
    h.sync()
    for c in (c1, c2):
        h.engine.barrier_reply(c.dpid, c.barriers()[-1])
    before1, before2 = len(c1.msgs), len(c2.msgs)
    h.snap = snapshot(2, with_b=True)  # b lands on h2 inside h2's own block
    h.sync()
    assert len(c1.msgs) == before1, "h1 needs nothing: b is covered by h2's block route"
    assert len(c2.msgs) > before2
    assert h.engine.wait_applied(2, 0.01, hosts=["h1"]) is False
    h.engine.barrier_reply(2, c2.barriers()[-1])
    assert h.engine.wait_applied(2, 0.01, hosts=["h1", "h2"])


def test_unknown_switch_is_never_touched(h: Harness) -> None:
    c9 = FakeConn(9)
    assert h.engine.switch_connected(c9), "held, not refused: its host may register soon"
    h.engine.switch_dump(9, [111, 222], more=False)
    h.sync()
    assert (c9.msgs, c9.dumps, c9.closed) == ([], 0, False), "no flow dump, no flow-mod"
    assert h.engine.waiting_on(1) == ["h1"], "an unmapped switch does not hold readiness back"
    assert [s.dpid for s in h.engine.switches()] == [], "a held switch is not listed"
    h.snap = snapshot(2, h9=True)  # its host registers: admitted on the next pass
    h.sync()
    assert c9.dumps == 1
    h.engine.switch_dump(9, [], more=False)
    h.sync()
    assert c9.cookies(OFPFC_ADD) == {f.cookie for f in desired_flows(h.snap, "h9")}


def test_failed_database_read_changes_nothing(h: Harness) -> None:
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    h.engine.switch_dump(1, [1, 2, 3], more=False)
    h.fail_reads = True
    h.engine.start()
    try:
        h.engine.notify(2)
        threading.Event().wait(0.3)
    finally:
        h.engine.stop()
    assert c1.msgs == []


def test_worker_marks_ready_on_its_poll_tick() -> None:
    h = Harness(poll=0.05)
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    h.engine.start()
    try:
        h.engine.switch_dump(1, [], more=False)
        for _ in range(100):
            if c1.barriers():
                break
            threading.Event().wait(0.02)
        h.engine.barrier_reply(1, c1.barriers()[-1])
        assert h.engine.wait_applied(1, 2.0, hosts=["h1"])
        for _ in range(100):
            if h.marked:
                break
            threading.Event().wait(0.02)
    finally:
        h.engine.stop()
    assert h.marked and h.marked[-1] == [1]


def test_a_revision_waits_only_for_the_switches_it_changed(h: Harness) -> None:
    c1, c2 = FakeConn(1), FakeConn(2)
    for c in (c1, c2):
        h.engine.switch_connected(c)
        h.engine.switch_dump(c.dpid, [], more=False)
    h.sync()
    assert h.engine.waiting_on(1) == ["h1"], "a on h1, in h1's block: only h1 must know"
    h.engine.barrier_reply(1, c1.barriers()[-1])
    assert h.engine.wait_applied(1, 0.01), "h2 has not answered, and need not"
    h.engine.switch_disconnected(2, c2)
    assert h.engine.wait_applied(1, 0.01)
    h.engine.switch_error(1, 0x12345, "type=1 code=1")  # not a flow-mod of ours: logged only
    assert c1.dumps == 1
    status = {s.dpid: s for s in h.engine.switches()}
    assert status[1].connected and not status[2].connected


def test_until_applied_awaits_the_barrier_without_a_thread(h: Harness) -> None:
    """The asyncio wait is resolved by the barrier reply from another thread; a wait that
    times out leaves no waiter behind."""
    import asyncio

    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    h.engine.switch_dump(1, [], more=False)
    h.sync()

    async def scenario() -> tuple[bool, bool, bool, int]:
        timed_out = await h.engine.until_applied(1, 0.05, hosts=["h1"])
        waits = [asyncio.create_task(h.engine.until_applied(1, 5, hosts=["h1"])) for _ in range(50)]
        await asyncio.sleep(0.05)
        assert h.engine.waiting == 50
        reply = threading.Thread(target=h.engine.barrier_reply, args=(1, c1.barriers()[-1]))
        reply.start()
        done = await asyncio.wait_for(asyncio.gather(*waits), 2)
        reply.join()
        at_once = await h.engine.until_applied(1, 0)
        return timed_out, all(done), at_once, h.engine.waiting

    assert asyncio.run(scenario()) == (False, True, True, 0)


def test_until_applied_waits_for_the_hosts_switch_to_connect(h: Harness) -> None:
    import asyncio

    async def scenario() -> bool:
        wait = asyncio.create_task(h.engine.until_applied(0, 5, hosts=["h1"]))
        await asyncio.sleep(0.02)
        assert not wait.done()
        c1 = FakeConn(1)
        h.engine.switch_connected(c1)
        h.engine.switch_dump(1, [], more=False)
        await asyncio.to_thread(h.sync)  # the snapshot maps dpid 1 to h1
        return await asyncio.wait_for(wait, 2)

    assert asyncio.run(scenario())


def _synced(h: Harness, conn: FakeConn, cookies: tuple[int, ...] = ()) -> None:
    assert h.engine.switch_connected(conn)
    h.engine.switch_dump(conn.dpid, list(cookies), more=False)
    h.sync()


def test_second_connection_for_a_dpid_is_refused_while_the_first_answers(h: Harness) -> None:
    first, second = FakeConn(1), FakeConn(1)
    _synced(h, first)
    assert not h.engine.switch_connected(second)
    assert second.closed and not first.closed
    assert (second.msgs, second.dumps) == ([], 0)
    assert ("switch.refused", "0000000000000001") in [(k, d.get("dpid")) for k, d in h.events]
    h.snap = snapshot(2, with_b=True)
    h.sync()
    assert first.barriers()[-1:] and not second.msgs, "the first keeps its flows coming"


def test_second_connection_replaces_a_first_that_missed_an_echo(h: Harness) -> None:
    first, second = FakeConn(1), FakeConn(1)
    _synced(h, first)
    first.missed = True
    assert h.engine.switch_connected(second)
    assert first.closed and second.dumps == 1
    h.engine.switch_disconnected(1, first)  # the old connection's close is not the new one's
    assert {s.dpid: s.connected for s in h.engine.switches()} == {1: True}


def test_tls_certificate_of_the_host_replaces_and_wrong_one_is_refused() -> None:
    h = Harness(require_cert=True)
    first = FakeConn(1, peer_name="h1")
    _synced(h, first)
    for bad in (FakeConn(1, peer_name="h2"), FakeConn(1, peer_name=None)):
        assert not h.engine.switch_connected(bad) and bad.closed and bad.dumps == 0
    assert not first.closed
    right = FakeConn(1, peer_name="h1")
    assert h.engine.switch_connected(right), "the host's own certificate takes over"
    assert first.closed and right.dumps == 1


def test_tls_switch_naming_another_host_is_refused_alone_or_once_registered() -> None:
    h = Harness(require_cert=True)
    spoof = FakeConn(2, peer_name="h1")  # h1's certificate claiming h2's dpid
    assert not h.engine.switch_connected(spoof) and spoof.closed and spoof.dumps == 0
    held = FakeConn(9, peer_name="h1")  # dpid not registered yet: held...
    assert h.engine.switch_connected(held) and not held.closed
    h.snap = snapshot(2, h9=True)  # ...and refused once the dpid turns out to be h9's
    h.sync()
    assert held.closed and held.dumps == 0 and held.msgs == []


def _reject_adds(h: Harness, conn: FakeConn, cookies: set[int]) -> None:
    for xid, cookie in conn.adds():
        if cookie in cookies:
            h.engine.switch_error(conn.dpid, xid, "type=4 code=4")


def test_rejected_flow_is_held_back_with_backoff_and_the_rest_applies(h: Harness) -> None:
    c1 = FakeConn(1)
    _synced(h, c1)
    all_adds = c1.cookies(OFPFC_ADD)
    bad = next(iter(all_adds))
    _reject_adds(h, c1, {bad})
    h.engine.barrier_reply(1, c1.barriers()[-1])
    assert h.engine.wait_applied(1, 0.01), "the rest of the batch is applied"
    assert h.engine.held_cookies(1) == {bad}
    assert bad not in h.engine.installed_cookies(1)
    assert h.engine.switches()[0].rejected_flows == 1
    assert [d["cookie"] for k, d in h.events if k == "switch.flow_rejected"] == [f"{bad:016x}"]
    sent = len(c1.msgs)
    for _ in range(50):  # a pass (a write, a poll) in the backoff resends nothing
        h.sync()
    assert len(c1.msgs) == sent and c1.dumps == 1, "no resend loop, no dump loop"
    h.now += 1.0  # first backoff over: one retry, rejected again -> twice as long
    h.sync()
    assert [c for _, c in c1.adds()].count(bad) == 2
    _reject_adds(h, c1, {bad})
    h.now += 1.5
    h.sync()
    assert [c for _, c in c1.adds()].count(bad) == 2, "second backoff is 2 s"
    h.now += 0.5
    h.sync()
    assert [c for _, c in c1.adds()].count(bad) == 3
    h.engine.barrier_reply(1, c1.barriers()[-1])  # accepted this time
    assert h.engine.held_cookies(1) == set()
    assert bad in h.engine.installed_cookies(1)


def test_held_flow_no_longer_wanted_is_forgotten(h: Harness) -> None:
    c1 = FakeConn(1)
    _synced(h, c1)
    _reject_adds(h, c1, c1.cookies(OFPFC_ADD))
    h.snap = snapshot(2, a_port=6)  # the endpoint moved to another port: other flows
    h.sync()
    wanted = {f.cookie for f in desired_flows(h.snap, "h1")}
    assert h.engine.held_cookies(1) <= wanted


def test_rejected_replacement_deletes_the_flow_it_would_have_replaced(h: Harness) -> None:
    c1 = FakeConn(1)
    _synced(h, c1)
    h.engine.barrier_reply(1, c1.barriers()[-1])
    before = h.engine.installed_cookies(1)
    h.snap = snapshot(2, a_port=65280)  # an ofport OVS refuses
    h.sync()
    new = c1.cookies(OFPFC_ADD) - before
    _reject_adds(h, c1, new)
    h.engine.barrier_reply(1, c1.barriers()[-1])
    h.sync()
    installed = h.engine.installed_cookies(1)
    assert not installed & new
    gone = before - {f.cookie for f in desired_flows(h.snap, "h1")}
    assert gone and gone <= c1.cookies(OFPFC_DELETE), "no flow for the old port is left behind"


def test_worker_retries_a_held_flow_when_its_time_comes_without_a_write() -> None:
    h = Harness(poll=60)
    c1 = FakeConn(1)
    _synced(h, c1)
    bad = next(iter(c1.cookies(OFPFC_ADD)))
    h.engine.start()
    try:
        _reject_adds(h, c1, {bad})
        h.now += 1.0
        for _ in range(150):
            if [c for _, c in c1.adds()].count(bad) == 2:
                break
            threading.Event().wait(0.02)
    finally:
        h.engine.stop()
    assert [c for _, c in c1.adds()].count(bad) == 2, "retried once, without a database change"


def test_held_connections_are_capped_and_expire(h: Harness) -> None:
    from controller import engine as engmod

    held = [FakeConn(0x100 + i) for i in range(engmod.MAX_HELD)]
    assert all(h.engine.switch_connected(c) for c in held)
    extra = FakeConn(0x9999)
    assert not h.engine.switch_connected(extra) and extra.closed, "over the cap: refused"
    c1 = FakeConn(1)
    assert h.engine.switch_connected(c1) and c1.dumps == 1, "a registered dpid still gets in"
    h.now += engmod.HOLD_TIMEOUT + 1
    assert h.engine.expire_held() == engmod.MAX_HELD
    assert all(c.closed and c.dumps == 0 for c in held) and not c1.closed
    late = FakeConn(0x9998)
    assert h.engine.switch_connected(late) and not late.closed, "room again"


def test_before_the_first_read_a_whole_fleet_is_held_then_admitted_not_refused() -> None:
    """A restarted controller's fleet reconnects before the intent is read: every dpid is
    unknown then. Up to MAX_HELD plus the hosts registered at start are held (sent
    nothing), the first read admits the registered ones and dumps each once; past it,
    unknown dpids are capped at MAX_HELD again."""
    from controller import engine as engmod

    fleet = 2 * engmod.MAX_HELD  # more than MAX_HELD, as at 1,000 switches
    h = Harness(hosts_at_start=fleet, read=False)
    hosts = {f"f{i}": Host(f"f{i}", IPv4Address(f"198.18.{i // 250}.{i % 250 + 1}"), dpid=i)
             for i in range(1, fleet + 1)}  # fmt: skip
    h.snap = Snapshot(1, hosts=hosts)  # dpids 1..fleet registered
    conns = [FakeConn(i + 1) for i in range(fleet)]
    strangers = [FakeConn(0x100000 + i) for i in range(engmod.MAX_HELD)]
    assert all(h.engine.switch_connected(c) for c in conns + strangers), "held, not refused"
    assert all(not c.closed and c.dumps == 0 and not c.msgs for c in conns + strangers)
    assert h.engine.refused == 0 and h.engine.switches() == [], "held ones are not switches yet"
    over = FakeConn(0x200000)
    assert not h.engine.switch_connected(over) and over.closed, "the bound still holds"
    h.sync()  # the first read admits the registered dpids: dumped MAX_DUMPS at a time
    answered: set[int] = set()
    while len(answered) < len(conns):
        asked = [c for c in conns if c.dumps and c.dpid not in answered]
        assert 0 < len(asked) <= engmod.MAX_DUMPS
        for c in asked:
            h.engine.switch_dump(c.dpid, [], more=False)
            answered.add(c.dpid)
    assert all(c.dumps == 1 and not c.closed for c in conns), "each dumped once"
    assert all(c.dumps == 0 and not c.msgs and not c.closed for c in strangers), "still held"
    late = FakeConn(0x300000)
    assert not h.engine.switch_connected(late) and late.closed, "past the read: MAX_HELD"
    h.now += engmod.HOLD_TIMEOUT + 1
    assert h.engine.expire_held() == len(strangers)
    assert all(c.closed for c in strangers) and not any(c.closed for c in conns)


def test_without_hosts_at_start_the_cap_is_max_held_before_the_first_read_too() -> None:
    from controller import engine as engmod

    h = Harness(read=False)
    held = [FakeConn(0x100 + i) for i in range(engmod.MAX_HELD)]
    assert all(h.engine.switch_connected(c) for c in held)
    extra = FakeConn(0x9999)
    assert not h.engine.switch_connected(extra) and extra.closed


def test_each_worker_pass_is_told_to_on_pass() -> None:
    h = Harness(poll=60)
    seen: list[float] = []
    passed = threading.Event()

    def on_pass(seconds: float) -> None:
        seen.append(seconds)
        passed.set()

    h.engine.on_pass = on_pass
    before = h.engine.passes
    h.engine.start()
    try:
        h.engine.notify(2)
        assert passed.wait(10), "the worker's pass was not reported"
    finally:
        h.engine.stop()
    assert h.engine.passes > before and len(seen) >= 1 and all(s >= 0 for s in seen)


def test_a_congested_switch_gets_no_batch_until_drained_then_the_difference(h: Harness) -> None:
    c1, c2 = FakeConn(1), FakeConn(2)
    for c in (c1, c2):
        _synced(h, c)
        h.engine.barrier_reply(c.dpid, c.barriers()[-1])
    c2.busy = True
    sent = len(c2.msgs)
    h.snap = snapshot(2, with_b=True)  # b on h2
    h.sync()
    h.snap = snapshot(3, with_b=True, a_port=6)
    h.sync()
    assert len(c2.msgs) == sent, "nothing more for a congested switch"
    assert not h.engine.wait_applied(3, 0.01, hosts=["h2"])
    c2.busy = False
    h.engine.switch_drained(2)
    h.sync()
    assert len(c2.barriers()) == 2, "one batch: the difference to the latest revision"
    h.engine.barrier_reply(2, c2.barriers()[-1])
    assert {f.cookie for f in desired_flows(h.snap, "h2")} == h.engine.installed_cookies(2)
