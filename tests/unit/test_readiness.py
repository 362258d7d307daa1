"""Readiness from the switches that must know, with a silent switch.

Three hosts, each with its own block of ``blue``. Every switch's connection applies what the
engine sends to an in-memory flow table (``oftable.Switch``); h3's switch then goes silent
(it takes flow-mods but never answers a barrier). Changes come in as change-log records (the
engine's incremental path). An endpoint bound inside its own host's block needs only that
host: it becomes ready although h3 never answered, and traffic to it flows. An endpoint
living away from its block's host is routed by every host: it waits, names h3 in
``waiting_on``, and becomes ready when h3 answers; a disconnected h3 keeps it waiting.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from controller.engine import Engine
from controller.flows import Flow
from controller.intent import ENDPOINT, Change, endpoint_key
from controller.model import Block, Endpoint, EndpointState, Host, Network, Snapshot, mac_for_ip
from controller.oftable import Fabric, Node, ipv4_packet
from controller.pipeline import desired_flows
from tests.unit.test_engine import OFPFC_ADD, FakeConn, TableConn

NET = Network("blue", 7, IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))
HOSTS = {f"h{i}": Host(f"h{i}", IPv4Address(f"198.18.0.{i}"), dpid=i) for i in (1, 2, 3)}
BLOCKS = tuple(Block("blue", IPv4Network(f"10.0.0.{64 * (i - 1)}/26"), f"h{i}") for i in (1, 2, 3))


def _ep(name: str, ip: str, host: str, port: int, rev: int) -> Endpoint:
    addr = IPv4Address(ip)
    return Endpoint("blue", name, addr, mac_for_ip(addr), host, port, EndpointState.PENDING, rev)


SRC = _ep("src", "10.0.0.70", "h2", 4, 1)  # in h2's block, on h2
HOME = _ep("home", "10.0.0.5", "h1", 5, 2)  # in h1's block, on h1: h1 must know
AWAY = _ep("away", "10.0.0.6", "h2", 6, 3)  # in h1's block, on h2: every host routes it


def _snap(rev: int, *eps: Endpoint) -> Snapshot:
    return Snapshot(rev, {"blue": NET}, dict(HOSTS), BLOCKS, eps)


CATALOG: dict[int, Flow] = {
    f.cookie: f
    for snap in (_snap(1, SRC), _snap(2, SRC, HOME), _snap(3, SRC, HOME, AWAY))
    for h in HOSTS
    for f in desired_flows(snap, h)
}


def _answer(engine: Engine, conn: TableConn) -> None:
    for xid in conn.barriers():
        engine.barrier_reply(conn.dpid, xid)


def _engine() -> Engine:
    return Engine(lambda: None, lambda s: _snap(1), lambda s: 1, lambda s, r: 0)  # type: ignore[arg-type,return-value]


def test_a_silent_switch_delays_only_the_endpoints_that_need_it() -> None:
    engine = _engine()
    engine.sync_all(_snap(1, SRC))
    conns = {h: TableConn(HOSTS[h].dpid or 0, CATALOG) for h in HOSTS}
    for conn in conns.values():
        assert engine.switch_connected(conn)
        engine.switch_dump(conn.dpid, [], more=False)
    engine.push()
    for conn in conns.values():
        _answer(engine, conn)
    assert engine.wait_applied(1, 0.01) and engine.waiting_on(1) == []
    silent = conns["h3"]  # from now on h3 answers no barrier
    sent_to_h3 = len(silent.msgs)

    engine.apply(2, [(2, [Change(ENDPOINT, endpoint_key("blue", "home"), HOME)])])
    engine.push()
    assert len(silent.msgs) == sent_to_h3, "h3's flows do not depend on an endpoint at home"
    assert engine.waiting_on(2) == ["h1"]
    _answer(engine, conns["h1"])
    assert engine.waiting_on(2) == []
    assert asyncio.run(engine.until_applied(2, 0.5, hosts=["h1"])), "ready, h3 still silent"
    fabric = Fabric({h: Node(c.table, str(HOSTS[h].underlay_ip), 1) for h, c in conns.items()})
    (got,) = fabric.send("h2", ipv4_packet(SRC.mac, str(SRC.ip), str(HOME.ip)), in_port=4)
    assert (got.host, got.port) == ("h1", 5)

    engine.apply(3, [(3, [Change(ENDPOINT, endpoint_key("blue", "away"), AWAY)])])
    engine.push()
    assert len(silent.msgs) > sent_to_h3, "every host routes an endpoint away from its block"
    assert engine.waiting_on(3) == ["h1", "h2", "h3"]
    _answer(engine, conns["h1"])
    _answer(engine, conns["h2"])
    assert engine.waiting_on(3) == ["h3"]
    assert not asyncio.run(engine.until_applied(3, 0.05))
    assert engine.wait_applied(2, 0.01), "the endpoint at home stays ready"
    engine.switch_disconnected(3, silent)
    assert engine.waiting_on(3) == ["h3"], "a disconnected switch still has to learn it"
    status = {s.host: s for s in engine.switches()}
    assert status["h3"].applied_generation < status["h3"].wanted_generation
    assert status["h1"].applied_generation == status["h1"].wanted_generation

    back = TableConn(3, CATALOG)  # h3 comes back holding every flow it took: nothing to send
    assert engine.switch_connected(back)
    engine.switch_dump(3, sorted(silent.table.cookies()), more=False)
    engine.push()
    assert back.msgs == [] and engine.waiting_on(3) == []
    assert engine.wait_applied(3, 0.01)


def test_a_switch_back_without_its_flows_confirms_after_its_barrier() -> None:
    engine = _engine()
    engine.sync_all(_snap(1, SRC))
    conns = {h: TableConn(HOSTS[h].dpid or 0, CATALOG) for h in ("h1", "h2")}  # h3 is down
    for conn in conns.values():
        assert engine.switch_connected(conn)
        engine.switch_dump(conn.dpid, [], more=False)
    engine.push()
    for conn in conns.values():
        _answer(engine, conn)
    engine.apply(3, [(3, [Change(ENDPOINT, endpoint_key("blue", "away"), AWAY)])])
    engine.push()
    for conn in conns.values():
        _answer(engine, conn)
    assert engine.waiting_on(3) == ["h3"], "h3 never connected: it must still learn the route"
    h3 = TableConn(3, CATALOG)
    assert engine.switch_connected(h3)
    engine.switch_dump(3, [], more=False)
    engine.push()
    assert h3.cookies(OFPFC_ADD) == {f.cookie for f in desired_flows(_snap(3, SRC, AWAY), "h3")}
    assert engine.waiting_on(3) == ["h3"]
    _answer(engine, h3)
    assert engine.waiting_on(3) == [] and engine.wait_applied(3, 0.01)


def test_what_waits_for_switches_is_kept_per_host_not_per_revision_and_host() -> None:
    """A cold fill: 40 hosts, no switch connected, 120 block claims, each changing every
    host's routes. What the engine keeps for readiness stays O(hosts + revisions) (each
    host at most ``MAX_STEPS`` generations; a claim keeps no host list), each claim names
    every host in ``waiting_on``; once the switches connect and confirm, all are ready."""
    from controller.engine import MAX_STEPS
    from controller.intent import BLOCKS

    net = Network("big", 9, IPv4Network("10.8.0.0/16"), IPv4Address("10.8.0.1"))
    hosts = {f"n{i:02d}": Host(f"n{i:02d}", IPv4Address(f"198.18.1.{i + 1}"), dpid=100 + i)
             for i in range(40)}  # fmt: skip
    engine = Engine(lambda: None, lambda s: None, lambda s: 1, lambda s, r: 0)  # type: ignore[arg-type,return-value]
    engine.sync_all(Snapshot(1, {"big": net}, hosts, (), ()))
    names = sorted(hosts)
    blocks: list[Block] = []
    for k in range(120):
        blocks.append(Block("big", IPv4Network(f"10.8.{k}.0/26"), names[k % 40]))
        engine.apply(2 + k, [(2 + k, [Change(BLOCKS, "big", tuple(blocks))])])
    last = 121
    assert engine.waiting_on(2) == names and engine.waiting_on(last) == names
    assert all(v is None for v in engine._needs.values()) and not engine._needs_by_host
    assert sum(len(n.steps) for n in engine._host_needs.values()) <= 40 * MAX_STEPS
    conns = {}
    for name in names[:39]:  # every switch but the last one connects and confirms
        conn = conns[name] = FakeConn(hosts[name].dpid or 0)
        assert engine.switch_connected(conn)
        engine.switch_dump(conn.dpid, [], more=False)
    engine.push()
    for conn in conns.values():
        for xid in conn.barriers():
            engine.barrier_reply(conn.dpid, xid)
    assert engine.waiting_on(2) == [names[39]] and engine.waiting_on(last) == [names[39]]
    assert not engine.wait_applied(2, 0.01)
    late = FakeConn(hosts[names[39]].dpid or 0)
    assert engine.switch_connected(late)
    engine.switch_dump(late.dpid, [], more=False)
    engine.push()
    for xid in late.barriers():
        engine.barrier_reply(late.dpid, xid)
    assert all(engine.wait_applied(r, 0.01) for r in range(2, last + 1))
    assert engine.waiting_on(last) == [] and not engine._needs and not engine._host_needs


def test_a_bind_at_home_patches_its_hosts_flows_without_recomputing_them() -> None:
    engine = _engine()
    engine.sync_all(_snap(1, SRC))
    recomputed = engine.recomputed
    engine.apply(2, [(2, [Change(ENDPOINT, endpoint_key("blue", "home"), HOME)])])
    assert engine.recomputed == recomputed and engine.patched == 1
    for h in HOSTS:
        assert frozenset(engine._gens[h].desired or ()) == desired_flows(_snap(2, SRC, HOME), h), h
    wanted = engine._gens["h1"].wanted
    relabeled = replace(HOME, labels=(("app", "db"),))  # the same flows: nothing to send
    engine.apply(3, [(3, [Change(ENDPOINT, endpoint_key("blue", "home"), relabeled)])])
    assert engine._gens["h1"].wanted == wanted and engine.patched == 2
    assert frozenset(engine._gens["h1"].desired or ()) == desired_flows(_snap(2, SRC, HOME), "h1")
    assert len(engine._gens["h1"].desired or ()) == len(desired_flows(_snap(2, SRC, HOME), "h1"))
    engine.apply(3, [(3, [Change(ENDPOINT, endpoint_key("blue", "away"), AWAY)])])
    assert engine.recomputed == recomputed + 3, "an endpoint away from its block: every host"
    engine.apply(4, [(4, [Change(ENDPOINT, endpoint_key("blue", "home"), None)])])
    assert engine.patched == 3
    for h in HOSTS:
        assert frozenset(engine._gens[h].desired or ()) == desired_flows(_snap(4, SRC, AWAY), h), h
