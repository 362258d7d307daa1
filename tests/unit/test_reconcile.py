"""diff/apply: installed flows converge on the desired ones, in any order, without leaks.

Changes are applied to the in-memory OpenFlow interpreter (``oftable.Switch``), which
behaves like a switch: an add with an existing (table, priority, match) replaces the old
entry, a delete by cookie removes whatever still carries it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from controller.flows import Flow, Output, flow
from controller.model import Block, Endpoint, Host, Snapshot, mac_for_ip
from controller.oftable import (
    Fabric,
    Operation,
    Switch,
    ipv4_packet,
    operations,
    tunnelled,
)
from controller.pipeline import desired_flows
from controller.reconcile import Changes, Shared, apply, diff, editable, holds_exactly, settled
from tests.unit.conftest import TUNNEL_PORT, Lab, endpoint

Installed = dict[int, Flow | None]


def model_of(flows: frozenset[Flow]) -> Installed:
    """The installed model of a switch that holds exactly ``flows``."""
    return {f.cookie: f for f in flows}


def dumped(switch: Switch) -> Installed:
    """The installed model as a flow dump at reconnect knows it: cookies only."""
    return dict.fromkeys(switch.cookies())


# -- transitions the tests run through ---------------------------------------------------------


def migrate(lab: Lab) -> Snapshot:
    """r1b (red 10.0.0.3, h1:3) moves to h2:7, where blue 10.0.0.3 already lives on port 8."""
    return lab.rebind("r1b", "h2", 7)


def renumber(lab: Lab) -> Snapshot:
    """rmv keeps its host but comes back on another port."""
    return lab.rebind("rmv", "h2", 9)


def readdress(lab: Lab) -> Snapshot:
    """h3's underlay address changes: routes keep their match, change their actions."""
    hosts = dict(lab.snap.hosts)
    hosts["h3"] = replace(hosts["h3"], underlay_ip=IPv4Address("198.18.0.33"))
    return replace(lab.snap, revision=2, hosts=hosts)


def churn(lab: Lab) -> Snapshot:
    """Many things at once: a migration, an unbind, new endpoints and blocks, a host gone."""
    snap = lab.rebind("r1b", "h3", 11)
    eps = tuple(e for e in snap.endpoints if e.name not in ("b2b", "r3a"))
    eps += (
        endpoint("red", "n1", "10.0.0.20", "h1", 20),
        endpoint("blue", "n2", "10.0.0.200", "h3", 21),
        endpoint("blue", "n3", "10.0.0.71", "h1", 22),  # moved from birth
    )
    blocks = snap.blocks + (Block("blue", IPv4Network("10.0.0.192/26"), "h3"),)
    hosts = {**snap.hosts, "h4": Host("h4", IPv4Address("198.18.0.4"), dpid=4)}
    return replace(snap, revision=5, endpoints=eps, blocks=blocks, hosts=hosts)


def drop_network(lab: Lab) -> Snapshot:
    """The blue network is deleted with all its endpoints and blocks."""
    return replace(
        lab.snap,
        revision=3,
        networks={"red": lab.snap.networks["red"]},
        blocks=tuple(b for b in lab.snap.blocks if b.network == "red"),
        endpoints=tuple(e for e in lab.snap.endpoints if e.network == "red"),
    )


TRANSITIONS: dict[str, Callable[[Lab], Snapshot]] = {
    "migrate": migrate,
    "renumber": renumber,
    "readdress": readdress,
    "churn": churn,
    "drop_network": drop_network,
}


def cases(lab: Lab, name: str) -> Iterator[tuple[str, frozenset[Flow], frozenset[Flow]]]:
    """(host, flows before, flows after) for every host of the transition ``name``."""
    after = TRANSITIONS[name](lab)
    for host in sorted(set(lab.snap.hosts) | set(after.hosts)):
        yield host, desired_flows(lab.snap, host), desired_flows(after, host)


# -- convergence -------------------------------------------------------------------------------


@pytest.mark.parametrize("host", ["h1", "h2", "h3"])
def test_from_empty_to_desired(lab: Lab, host: str) -> None:
    desired = desired_flows(lab.snap, host)
    changes = diff(desired, {})
    assert changes.deletes == ()
    installed = apply({}, changes)
    assert set(installed) == {f.cookie for f in desired}
    assert not diff(desired, installed)
    sw = Switch(host)
    sw.apply(changes)
    assert sw.table() == desired and sw.cookies() == set(installed)


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_transition_converges_and_second_diff_is_empty(lab: Lab, name: str) -> None:
    for host, before, after in cases(lab, name):
        installed = model_of(before)
        changes = diff(after, installed)
        new = apply(installed, changes)
        assert set(new) == {f.cookie for f in after}, host
        assert not diff(after, new), host
        sw = Switch(host).load(before)
        sw.apply(changes)
        assert sw.snapshot() == {(f.cookie, f) for f in after}, host


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_applying_twice_or_shuffled_converges_to_the_same_table(lab: Lab, name: str) -> None:
    for host, before, after in cases(lab, name):
        changes = diff(after, model_of(before))
        want = {(f.cookie, f) for f in after}
        twice = Switch(host).load(before)
        twice.apply(changes)
        twice.apply(changes)
        assert twice.snapshot() == want, host
        ops = operations(changes)
        for seed in range(25):
            rng = random.Random(seed)
            order = ops + ops if seed % 2 else list(ops)
            rng.shuffle(order)
            sw = Switch(host).load(before)
            for op in order:
                sw.apply_one(op)
            assert sw.snapshot() == want, (host, seed)


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_installed_known_only_by_cookies_converges(lab: Lab, name: str) -> None:
    """After a reconnect the dump gives cookies only, and may hold leftovers of old code."""
    leftover = flow(0, 50, {"in_port": 42}, [Output(43)])
    for host, before, after in cases(lab, name):
        sw = Switch(host).load(before)
        sw.add(leftover)
        installed = dumped(sw)
        changes = diff(after, installed)
        assert leftover.cookie in changes.deletes
        new = apply(installed, changes)
        assert set(new) == {f.cookie for f in after}, host
        assert not diff(after, new), host
        want = {(f.cookie, f) for f in after}
        ops = operations(changes)
        for seed in range(10):
            trial = Switch(host).load(before)
            trial.add(leftover)
            order = list(ops)
            random.Random(seed).shuffle(order)
            for op in order:
                trial.apply_one(op)
            assert trial.snapshot() == want, (host, seed)


def test_a_modified_flow_is_replaced_by_an_add_not_deleted(lab: Lab) -> None:
    r1a = lab.ep("r1a")
    for snap, host, probe, port in [
        # h3 readdressed: h1's routes to h3's blocks keep their match, change tun_ipv4_dst
        (readdress(lab), "h1", (ipv4_packet(r1a.mac, "10.0.0.2", "10.0.0.130"), 2), TUNNEL_PORT),
        # rmv renumbered on h2: its delivery flow keeps its match, changes its output port
        (
            renumber(lab),
            "h2",
            (
                tunnelled(
                    ipv4_packet(r1a.mac, "10.0.0.2", "10.0.0.10"), "198.18.0.1", "198.18.0.2", 100
                ),
                TUNNEL_PORT,
            ),
            9,
        ),
    ]:
        before, after = desired_flows(lab.snap, host), desired_flows(snap, host)
        old_by_key = {f.key(): f for f in before}
        modified = [f for f in after if f.key() in old_by_key and f not in before]
        assert modified, "the transition must modify some flow in place"
        changes = diff(after, model_of(before))
        for f in modified:
            assert f in changes.adds
            assert old_by_key[f.key()].cookie not in changes.deletes
        sw = Switch(host).load(before)
        sw.apply(changes)
        assert sw.snapshot() == {(f.cookie, f) for f in after}
        out = sw.process(*probe)
        assert [e.port for e in out] == [port]
    out = (
        lab.fabric(readdress(lab))
        .nodes["h1"]
        .switch.process(ipv4_packet(r1a.mac, "10.0.0.2", "10.0.0.130"), 2)
    )
    assert out[0].packet["tun_ipv4_dst"] == "198.18.0.33"


def test_no_change_means_no_changes(lab: Lab) -> None:
    for host in lab.snap.hosts:
        desired = desired_flows(lab.snap, host)
        assert not diff(desired, model_of(desired))
        assert len(diff(desired, model_of(desired))) == 0


def test_never_empties_a_switch_on_an_empty_read_by_itself(lab: Lab) -> None:
    """desired_flows of a host missing from the snapshot is empty: diff would delete all.

    The guard is the caller's (never reconcile against a failed or empty read); this pins
    what diff does so that the guard stays necessary and visible.
    """
    desired = desired_flows(lab.snap, "h1")
    changes = diff(desired_flows(Snapshot(revision=9), "h1"), model_of(desired))
    assert set(changes.deletes) == {f.cookie for f in desired}


# -- ordering ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_make_before_break_order(lab: Lab, name: str) -> None:
    """Adds go deepest table first; deletes go classifier first (cookie-only ones last)."""
    for host, before, after in cases(lab, name):
        for installed in (model_of(before), dict.fromkeys(f.cookie for f in before)):
            changes = diff(after, installed)
            add_tables = [f.table for f in changes.adds]
            assert add_tables == sorted(add_tables, reverse=True), host
            known = [installed[c] for c in changes.deletes]
            tables = [f.table if f is not None else 256 for f in known]
            assert tables == sorted(tables), host


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_traffic_unaffected_by_a_transition_keeps_flowing_at_every_step(
    lab: Lab, name: str
) -> None:
    """Make before break: what a switch forwards alike before and after, it forwards so
    at every step in between. (Steps may transiently forward more, the union of both
    tables; that it never crosses networks is checked end to end below.)
    """
    after_snap = TRANSITIONS[name](lab)
    for host, before, after in cases(lab, name):
        probes = list(_probes(lab, after_snap, host))
        old, new = Switch(host).load(before), Switch(host).load(after)
        stable = [
            (pkt, port)
            for pkt, port in probes
            if _result(old, pkt, port) == _result(new, pkt, port) != []
        ]
        assert stable or not (before & after), host
        sw = Switch(host).load(before)
        for op in operations(diff(after, model_of(before))):
            sw.apply_one(op)
            for pkt, port in stable:
                assert _result(sw, pkt, port) == _result(new, pkt, port), (host, op, pkt)


def _result(sw: Switch, pkt: dict, port: int) -> list[tuple[int, tuple]]:
    return [(e.port, tuple(sorted(e.packet.items()))) for e in sw.process(pkt, port)]


def _probes(lab: Lab, after: Snapshot, host: str) -> Iterator[tuple[dict, int]]:
    """IPv4 from every local port (before or after) and from every peer, to every address."""
    ips = sorted({str(e.ip) for e in lab.snap.endpoints + after.endpoints})
    locals_ = {
        (e.ofport, e.mac, str(e.ip))
        for e in lab.snap.endpoints + after.endpoints
        if e.host == host and e.ofport is not None
    }
    for port, mac, src in sorted(locals_):
        for dst in ips:
            yield ipv4_packet(mac, src, dst, mac_for_ip(IPv4Address(dst))), port
    for snap in (lab.snap, after):
        me = snap.hosts.get(host)
        for peer in snap.hosts.values():
            if me is None or peer.name == host:
                continue
            for vni in (100, 200):
                for dst in ips:
                    inner = ipv4_packet(mac_for_ip(IPv4Address("10.0.0.99")), "10.0.0.99", dst)
                    pkt = tunnelled(inner, str(peer.underlay_ip), str(me.underlay_ip), vni)
                    yield pkt, me.tunnel_port


# -- a migration across the whole fabric, one operation at a time ------------------------------


def _interleavings(per_host: dict[str, list[Operation]]) -> Iterator[list[tuple[str, Operation]]]:
    """Orders in which the switches could apply their batches, each batch kept in order."""
    hosts = sorted(per_host)
    for first in (["h1", "h2", "h3"], ["h3", "h2", "h1"], ["h2", "h1", "h3"]):
        yield [(h, op) for h in first for op in per_host[h]]
    queues = {h: list(per_host[h]) for h in hosts}
    robin: list[tuple[str, Operation]] = []
    while any(queues.values()):
        for h in hosts:
            if queues[h]:
                robin.append((h, queues[h].pop(0)))
    yield robin
    for seed in range(4):
        rng = random.Random(seed)
        queues = {h: list(per_host[h]) for h in hosts}
        mixed: list[tuple[str, Operation]] = []
        while any(queues.values()):
            h = rng.choice([h for h in hosts if queues[h]])
            mixed.append((h, queues[h].pop(0)))
        yield mixed


def _ports(*snaps: Snapshot) -> dict[tuple[str, int], Endpoint]:
    """(host, port) -> the endpoint on it, in any of ``snaps`` (ports are not reused here)."""
    found: dict[tuple[str, int], Endpoint] = {}
    for snap in snaps:
        for e in snap.endpoints:
            if e.host is not None and e.ofport is not None:
                assert found.setdefault((e.host, e.ofport), e).name == e.name
    return found


def _assert_no_wrong_delivery(
    lab: Lab, fabric: Fabric, ports: dict[tuple[str, int], Endpoint], where: object
) -> None:
    vni_of = {n.name: n.vni for n in lab.snap.networks.values()}
    targets = ("10.0.0.3", "10.0.0.2", "10.0.0.66", "10.0.0.10")
    for src in {(e.host, e.ofport, e.network, e.mac, str(e.ip)) for e in ports.values()}:
        host, port, network, mac, ip = src
        assert host is not None and port is not None
        for dst in targets:
            pkt = ipv4_packet(mac, ip, dst, mac_for_ip(IPv4Address(dst)))
            for d in fabric.send(host, pkt, port):
                got = ports.get((d.host, d.port))
                assert got is not None, (where, src, dst, d)
                assert (got.network, str(got.ip)) == (network, dst), (where, src, dst, d)
    for peer in lab.snap.hosts.values():
        for host, node in fabric.nodes.items():
            if host == peer.name:
                continue
            for vni in vni_of.values():
                for dst in targets:
                    inner = ipv4_packet(mac_for_ip(IPv4Address("10.0.0.99")), "10.0.0.99", dst)
                    pkt = tunnelled(inner, str(peer.underlay_ip), node.underlay_ip, vni)
                    for e in node.switch.process(pkt, node.tunnel_port):
                        got = ports.get((host, e.port))
                        assert got is not None, (where, peer.name, vni, dst, e)
                        assert vni_of[got.network] == vni and str(got.ip) == dst, (where, e)


def test_migration_end_to_end_never_leaks_between_networks(lab: Lab) -> None:
    """r1b (red 10.0.0.3) moves h1 -> h2, next to blue's 10.0.0.3; every step is checked."""
    before, after = lab.snap, migrate(lab)
    ports = _ports(before, after)
    per_host = {
        h: operations(diff(desired_flows(after, h), model_of(desired_flows(before, h))))
        for h in lab.snap.hosts
    }
    assert all(per_host.values())
    for order in _interleavings(per_host):
        fabric = lab.fabric(before)
        _assert_no_wrong_delivery(lab, fabric, ports, "start")
        for step, (host, op) in enumerate(order):
            fabric.nodes[host].switch.apply_one(op)
            _assert_no_wrong_delivery(lab, fabric, ports, (step, host, op))
        for host, node in fabric.nodes.items():
            assert node.switch.snapshot() == {(f.cookie, f) for f in desired_flows(after, host)}
        moved = lab.ep("r1b", after)
        for src, hops in [("r3a", [("h3", "h2", 100)]), ("r1a", [("h1", "h2", 100)])]:
            e = lab.ep(src)
            assert e.host is not None and e.ofport is not None
            pkt = ipv4_packet(e.mac, str(e.ip), "10.0.0.3", moved.mac)
            got = fabric.send(e.host, pkt, e.ofport)
            assert [(d.host, d.port) for d in got] == [("h2", 7)]
            assert got[0].packet["eth_dst"] == moved.mac
            assert fabric.hops == hops
        b3a = lab.ep("b3a")
        pkt = ipv4_packet(b3a.mac, "10.0.0.130", "10.0.0.3", moved.mac)
        assert [(d.host, d.port) for d in fabric.send("h3", pkt, 3)] == [("h2", 8)]
        r2a = lab.ep("r2a")
        pkt = ipv4_packet(r2a.mac, "10.0.0.66", "10.0.0.3", moved.mac)
        assert [(d.host, d.port) for d in fabric.send("h2", pkt, 2)] == [("h2", 7)]
        assert fabric.hops == []
        # and from the moved endpoint itself, on its new port
        pkt = ipv4_packet(moved.mac, "10.0.0.3", "10.0.0.130")
        assert [(d.host, d.port) for d in fabric.send("h2", pkt, 7)] == [("h3", 2)]


def test_changes_value() -> None:
    assert not Changes()
    assert len(Changes((flow(0, 0),), (1, 2))) == 3


# -- the installed model as a view of the desired tuple (``Shared``) ---------------------------


def packed(flows: frozenset[Flow]) -> tuple[Flow, ...]:
    """Desired flows as the engine keeps them: a tuple in cookie order."""
    return tuple(sorted(flows, key=lambda f: f.cookie))


@pytest.mark.parametrize("name", sorted(TRANSITIONS))
def test_a_shared_model_diffs_as_its_dict_and_settles_on_the_new_tuple(lab: Lab, name: str) -> None:
    for host, before, after in cases(lab, name):
        old, new = packed(before), packed(after)
        shared = Shared(old)
        assert dict(shared.items()) == model_of(before) == {c: shared[c] for c in shared}
        assert len(shared) == len(before) and all(f.cookie in shared for f in before)
        assert 0x1234 not in shared and "x" not in shared and shared.get(0x1234) is None
        assert not diff(old, shared), "its own tuple: nothing to do"
        changes = diff(new, shared)
        assert changes == diff(new, model_of(before)), host
        applied = apply(shared, changes)
        assert applied == apply(model_of(before), changes), host
        kept = settled(new, applied)
        assert isinstance(kept, Shared) and kept.flows is new, host
        assert not diff(new, kept)
        sw = Switch(host).load(before)
        sw.apply(changes)
        assert sw.snapshot() == {(f.cookie, f) for f in after}, host
        edit = editable(shared)
        assert isinstance(edit, dict) and edit == model_of(before)
        edit.clear()
        assert len(shared) == len(before), "editing the copy leaves the tuple alone"


def test_settled_keeps_a_model_that_is_not_exactly_the_desired_flows(lab: Lab) -> None:
    desired = packed(desired_flows(lab.snap, "h1"))
    exact = model_of(frozenset(desired))
    assert isinstance(settled(desired, exact), Shared)
    missing = dict(exact)
    missing.pop(desired[0].cookie)
    extra = {**exact, 0x1234: None}
    for model in (missing, extra, {}):
        assert settled(desired, model) is model
    assert holds_exactly(desired, set(exact)) and not holds_exactly(desired, set(extra))
