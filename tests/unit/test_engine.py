"""The flow engine against fake switch connections: dump, diff, barrier, readiness, restarts."""

from __future__ import annotations

import struct
import threading
from ipaddress import IPv4Address, IPv4Network

import pytest

from controller.engine import Engine
from controller.model import Block, Endpoint, EndpointState, Host, Network, Snapshot, mac_for_ip
from controller.pipeline import desired_flows

OFPT_FLOW_MOD = 14
OFPT_BARRIER_REQUEST = 20
OFPFC_ADD, OFPFC_DELETE = 0, 3


class FakeConn:
    """Records what the engine sends; splits buffers into OpenFlow messages."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.address = "198.18.0.9:1234"
        self.msgs: list[tuple[int, int, int, int]] = []  # (type, xid, command, cookie)
        self.dumps = 0

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

    def barriers(self) -> list[int]:
        return [xid for t, xid, _, _ in self.msgs if t == OFPT_BARRIER_REQUEST]

    def cookies(self, command: int) -> set[int]:
        return {c for t, _, cmd, c in self.msgs if t == OFPT_FLOW_MOD and cmd == command}


def snapshot(rev: int, with_b: bool = False) -> Snapshot:
    net = Network("blue", 7, IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))
    a_ip, b_ip = IPv4Address("10.0.0.2"), IPv4Address("10.0.0.66")
    eps = [Endpoint("blue", "a", a_ip, mac_for_ip(a_ip), "h1", 5, EndpointState.PENDING, 1)]
    if with_b:
        eps.append(
            Endpoint("blue", "b", b_ip, mac_for_ip(b_ip), "h2", 6, EndpointState.PENDING, rev)
        )
    return Snapshot(
        rev,
        {"blue": net},
        {
            "h1": Host("h1", IPv4Address("198.18.0.1"), dpid=1),
            "h2": Host("h2", IPv4Address("198.18.0.2"), dpid=2),
        },
        (
            Block("blue", IPv4Network("10.0.0.0/26"), "h1"),
            Block("blue", IPv4Network("10.0.0.64/26"), "h2"),
        ),
        tuple(eps),
    )


class Harness:
    def __init__(self, poll: float = 60) -> None:
        self.snap = snapshot(1)
        self.fail_reads = False
        self.marked: list[tuple[int, list[str]]] = []
        self.engine = Engine(
            self._session, self._load, lambda s: self.snap.revision, self._mark, poll_interval=poll
        )

    class _S:
        def __enter__(self):  # noqa: ANN204
            return self

        def __exit__(self, *a: object) -> None:
            pass

        def commit(self) -> None:
            pass

    def _session(self):  # noqa: ANN202
        return self._S()

    def _load(self, _s: object) -> Snapshot:
        if self.fail_reads:
            raise RuntimeError("database is down")
        return self.snap

    def _mark(self, _s: object, rev: int, hosts: object) -> int:
        self.marked.append((rev, list(hosts)))  # type: ignore[call-overload]
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
    h.engine.switch_connected(c9)
    h.engine.switch_dump(9, [111, 222], more=False)
    h.sync()
    assert c9.msgs == []
    assert h.engine.wait_applied(1, 0.01), "an unmapped switch does not hold readiness back"


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
    assert h.marked and h.marked[-1] == (1, ["h1"])


def test_disconnect_excludes_switch_and_error_triggers_resync(h: Harness) -> None:
    c1, c2 = FakeConn(1), FakeConn(2)
    for c in (c1, c2):
        h.engine.switch_connected(c)
        h.engine.switch_dump(c.dpid, [], more=False)
    h.sync()
    h.engine.barrier_reply(1, c1.barriers()[-1])
    assert not h.engine.wait_applied(1, 0.01)
    h.engine.switch_disconnected(2, c2)
    assert h.engine.wait_applied(1, 0.01)
    h.engine.switch_error(1, 0x80000001, "type=5 code=0")
    assert c1.dumps == 2
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
