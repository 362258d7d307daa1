"""Flow dumps in flight are bounded (``Engine(max_dumps=L)``): a restarted controller's
whole fleet reconnects at once, and every switch dumping together was its memory peak. With
N switches admitted, at most L dumps are outstanding at any moment (counted on the
switches' side: asked and not answered in full), every switch is dumped exactly once, a
switch that disconnects, steps down or never answers frees its slot for the next, and
converged switches get no flow-mod. Switches answer in parts, interleaved, in an order the
test draws (seeded)."""

from __future__ import annotations

import random
from ipaddress import IPv4Address, IPv4Network

import pytest

from controller import engine as engmod
from controller.engine import Engine
from controller.flows import Flow
from controller.model import Block, Endpoint, EndpointState, Host, Network, Snapshot, mac_for_ip
from controller.pipeline import desired_flows
from tests.unit.test_engine import Harness, TableConn
from tests.unit.test_roles import Bridge, Controller
from tests.unit.test_roles import Conn as RoleConn


def fleet(n: int, rev: int = 1) -> Snapshot:
    """``n`` hosts f1..fn (dpid i), one network, a block and one bound endpoint on each."""
    net = Network("blue", 7, IPv4Network("10.0.0.0/16"), IPv4Address("10.0.0.1"))
    hosts, blocks, eps = {}, [], []
    for i in range(1, n + 1):
        name = f"f{i}"
        hosts[name] = Host(name, IPv4Address(f"198.18.0.{i}"), dpid=i)
        block = IPv4Network(f"10.0.{i}.0/26")
        blocks.append(Block("blue", block, name))
        ip = block.network_address + 2
        eps.append(Endpoint("blue", f"e{i}", ip, mac_for_ip(ip), name, 5, EndpointState.READY, 1))
    return Snapshot(rev, {"blue": net}, hosts, tuple(blocks), tuple(eps))


class DumpingConn(TableConn):
    """A switch holding a flow table, that answers a dump request in two parts when told
    (``answer``), from its table at that moment; ``outstanding``: asked, not answered."""

    def __init__(self, dpid: int, catalog: dict[int, Flow], engine: Engine) -> None:
        super().__init__(dpid, catalog)
        self.engine = engine
        self.parts_sent = 0  # parts of the current request sent (0, 1)
        self.answered = 0  # requests answered in full

    @property
    def outstanding(self) -> int:
        return self.dumps - self.answered

    def answer_part(self) -> None:
        """The next part of the oldest unanswered request's reply."""
        assert self.outstanding > 0
        cookies = sorted(self.table.cookies())
        half = len(cookies) // 2
        if self.parts_sent == 0:
            self.engine.switch_dump(self.dpid, cookies[:half], more=True)
            self.parts_sent = 1
        else:
            self.answered += 1  # counted before the call: the last part frees the slot
            self.parts_sent = 0
            self.engine.switch_dump(self.dpid, cookies[half:], more=False)


def _catalog(snap: Snapshot) -> dict[int, Flow]:
    return {f.cookie: f for h in snap.hosts for f in desired_flows(snap, h)}


def _converged_fleet(h: Harness, snap: Snapshot) -> list[DumpingConn]:
    """Switches already holding exactly their hosts' desired flows (a restart's fleet)."""
    catalog = _catalog(snap)
    conns = []
    for name, host in snap.hosts.items():
        assert host.dpid is not None
        c = DumpingConn(host.dpid, catalog, h.engine)
        c.table.load(desired_flows(snap, name))
        conns.append(c)
    return conns


def _two_connected() -> tuple[Harness, DumpingConn, DumpingConn]:
    """A limit of one dump, two converged switches connected in turn: c1's dump under way,
    c2's queued."""
    h = Harness(max_dumps=1)
    h.snap = fleet(2)
    h.sync()
    c1, c2 = _converged_fleet(h, h.snap)
    h.engine.switch_connected(c1)
    h.engine.switch_connected(c2)
    return h, c1, c2


def _drain(h: Harness, conns: list[DumpingConn], limit: int, seed: int) -> int:
    """Answer every dump asked for, one part at a time in a drawn order, checking after each
    part that at most ``limit`` are outstanding; returns the most seen outstanding."""
    rnd = random.Random(seed)
    most = 0
    while True:
        out = [c for c in conns if c.outstanding > 0 and not c.closed]
        outstanding = sum(c.outstanding for c in conns if not c.closed)
        assert outstanding <= limit, f"{outstanding} dumps outstanding, limit {limit}"
        assert h.engine.dumps_under_way <= limit
        most = max(most, outstanding)
        if not out:
            return most
        rnd.choice(out).answer_part()


def test_a_restarted_fleet_is_dumped_at_most_the_limit_at_a_time_each_once_no_flow_mod() -> None:
    n, limit = 12, 3
    h = Harness(read=False, hosts_at_start=n, max_dumps=limit)
    h.snap = fleet(n)
    conns = _converged_fleet(h, h.snap)
    for c in conns:  # the whole fleet reconnects before the first read: held
        assert h.engine.switch_connected(c)
    assert all(c.dumps == 0 for c in conns)
    h.sync()  # the first read admits every switch; only ``limit`` are asked
    assert sum(c.dumps for c in conns) == limit
    assert h.engine.dumps_queued == n - limit
    states = [s.flow_dump for s in h.engine.switches()]  # what /metrics counts
    assert (states.count("under_way"), states.count("queued")) == (limit, n - limit)
    assert _drain(h, conns, limit, seed=1) == limit, "the slots were used"
    assert [c.dumps for c in conns] == [1] * n, "every switch dumped exactly once"
    h.sync()
    assert all(c.flow_mods() == [] for c in conns), "converged: 0 flow-mods"
    assert all(c.table.cookies() == {f.cookie for f in desired_flows(h.snap, f"f{c.dpid}")}
               for c in conns)  # fmt: skip
    assert h.engine.dumps_under_way == 0 and h.engine.dumps_queued == 0
    assert h.engine.dumps_asked == n and h.engine.dumps_peak == limit
    assert {s.flow_dump for s in h.engine.switches()} == {None}
    assert all(s.flow_count > 0 for s in h.engine.switches())


def test_switches_connecting_after_the_first_read_wait_for_a_slot_too() -> None:
    n, limit = 7, 2
    h = Harness(max_dumps=limit)
    h.snap = fleet(n)
    h.sync()
    conns = _converged_fleet(h, h.snap)
    for c in conns:
        assert h.engine.switch_connected(c)
    assert [c.dumps for c in conns] == [1, 1, 0, 0, 0, 0, 0], "first come, first served"
    _drain(h, conns, limit, seed=2)
    assert [c.dumps for c in conns] == [1] * n
    h.sync()
    assert all(c.flow_mods() == [] for c in conns)


def test_a_switch_that_disconnects_mid_dump_frees_its_slot() -> None:
    n, limit = 5, 2
    h = Harness(read=False, hosts_at_start=n, max_dumps=limit)
    h.snap = fleet(n)
    conns = _converged_fleet(h, h.snap)
    for c in conns:
        h.engine.switch_connected(c)
    h.sync()
    c1, c2, c3 = conns[:3]
    assert (c1.dumps, c2.dumps, c3.dumps) == (1, 1, 0)
    c1.answer_part()  # half its dump, then the connection drops
    assert c3.dumps == 0, "no slot before the disconnect"
    h.engine.switch_disconnected(c1.dpid, c1)
    assert c3.dumps == 1, "the slot went to the next switch at once"
    assert h.engine.dumps_under_way == limit
    c1.answer_part()  # the rest of the dead connection's reply: not taken
    again = DumpingConn(c1.dpid, c1.catalog, h.engine)  # it reconnects, same table
    again.table.load(c1.table.table())
    assert h.engine.switch_connected(again)
    assert again.dumps == 0, "queued behind the switches that waited"
    rest = [c for c in conns if c is not c1] + [again]
    _drain(h, rest, limit, seed=3)
    assert [c.dumps for c in rest] == [1] * n
    h.sync()
    assert all(c.flow_mods() == [] for c in rest), "converged: 0 flow-mods"
    assert h.engine.installed_cookies(c1.dpid) == again.table.cookies()


def test_a_step_down_frees_the_slot_and_its_late_reply_is_dropped() -> None:
    h, c1, c2 = _two_connected()
    assert (c1.dumps, c2.dumps) == (1, 0)
    stale = 0xDEAD
    c1.table.load([Flow(0, 1, (), (), cookie=stale)])  # another master's flow, for now
    h.engine.step_down(c1.dpid, c1)  # another controller took it: the dump stops counting
    assert c2.dumps == 1, "the slot went to the next switch at once"
    h.engine.resync(c1.dpid, c1)  # master again: its flows must be read anew, after c2
    assert c1.dumps == 1
    c2.answer_part()
    c2.answer_part()
    assert c1.dumps == 2, "asked again once c2's slot freed"
    c1.answer_part()  # the reply to the request that stopped counting (with the stale
    c1.answer_part()  # flow): dropped
    c1.table.delete_cookie(stale)  # gone before the new request was answered
    c1.answer_part()
    c1.answer_part()
    h.sync()
    assert c1.flow_mods() == [] and c2.flow_mods() == [], "the fresh dump was taken"


def test_resync_while_a_dump_is_under_way_takes_the_newer_reply() -> None:
    h, c1, c2 = _two_connected()
    stale = 0xDEAD
    c1.table.load([Flow(0, 1, (), (), cookie=stale)])
    c1.answer_part()  # half a reply with the stale flow in it, then we become master
    h.engine.resync(c1.dpid, c1)
    assert (c1.dumps, c2.dumps) == (2, 0), "asked again at once, in its own slot"
    c1.answer_part()  # the end of the first reply: dropped with its first half
    c1.table.delete_cookie(stale)
    c1.answer_part()
    c1.answer_part()
    assert c2.dumps == 1
    c2.answer_part()
    c2.answer_part()
    h.sync()
    assert c1.flow_mods() == [], "a delete of the stale flow would mean the old reply counted"


def test_a_switch_that_never_answers_its_dump_is_closed_and_frees_its_slot() -> None:
    h, c1, c2 = _two_connected()
    h.now += engmod.DUMP_TIMEOUT / 2
    c1.answer_part()  # a reply part restarts its clock
    h.now += engmod.DUMP_TIMEOUT / 2 + 1
    assert h.engine.expire_dumps() == 0 and not c1.closed
    h.now += engmod.DUMP_TIMEOUT
    assert h.engine.expire_dumps() == 1 and c1.closed
    assert c2.dumps == 1, "its slot went to the next switch"


def test_a_dump_too_long_closes_its_switch_and_frees_its_slot(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(engmod, "MAX_DUMP_FLOWS", 3)
    h, c1, c2 = _two_connected()
    h.engine.switch_dump(c1.dpid, [1, 2, 3, 4], more=True)
    assert c1.closed and c2.dumps == 1


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_dumps"):
        Harness(max_dumps=0)


class _CountingConn(RoleConn):
    """test_roles' switch connection, counting dump replies delivered (``pump``)."""

    def __init__(self, bridge: Bridge, name: str, dpid: int) -> None:
        super().__init__(bridge, name, dpid)
        self.answered = 0

    def request_flow_dump(self) -> None:
        super().request_flow_dump()
        deliver = self.inbox.pop()

        def counted() -> None:
            self.answered += 1
            deliver()

        self.inbox.append(counted)


def test_a_restart_behind_roles_dumps_each_switch_once_within_the_limit() -> None:
    """The restarted controller reads a switch's flows once it made us master (``resync``
    from the MASTER answer): those dumps wait for slots as well."""
    n, limit = 8, 3
    a = Controller("a")
    a.snap = fleet(n)
    a.engine = Engine(
        a._session, lambda s: a.snap, lambda s: a.snap.revision,
        lambda s, r: 0, clock=lambda: a.now, gate=a.roles, max_dumps=limit,
    )  # fmt: skip
    a.engine.sync_all(a.snap)
    conns = []
    for name, host in a.snap.hosts.items():
        bridge = Bridge()
        bridge.flows = {f.cookie for f in desired_flows(a.snap, name)}  # converged
        assert host.dpid is not None
        conn = _CountingConn(bridge, "a", host.dpid)
        conn.engine, conn.roles = a.engine, a.roles
        assert a.engine.switch_connected(conn)
        a.roles.connected(conn)
        conns.append(conn)
    assert all(c.dumps == 0 for c in conns), "not master yet: nothing read"
    a.assign({c.dpid: 7 for c in conns}, {c.dpid: 7 for c in conns})
    rnd = random.Random(4)
    while any(c.inbox for c in conns):
        assert sum(c.dumps - c.answered for c in conns) <= limit
        c = rnd.choice([c for c in conns if c.inbox])
        c.inbox.pop(0)()  # one answer (role or dump) at a time
    assert all(c.role == "master" for c in conns)
    assert [c.dumps for c in conns] == [1] * n
    assert a.engine.dumps_peak == limit
    a.sync()
    for c in conns:
        c.pump()
    assert all(c.written == [] for c in conns), "converged: 0 flow-mods"
    assert all(a.engine.wait_applied(1, 0.01, hosts=[f"f{c.dpid}"]) for c in conns)
