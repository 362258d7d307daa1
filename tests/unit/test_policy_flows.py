"""Network policy flows, packet by packet through the in-memory switches (conjunctions and
conntrack modelled as OVS runs them): allowed and denied ports both ways, replies of allowed
connections, unselected endpoints open, a removed rule cuts a live connection, and the flow
count of N sources x M destinations growing as N + M.

The shared lab's network red (see ``conftest``): r1a (10.0.0.2) and r1b (10.0.0.3) on h1,
r2a (10.0.0.66) on h2, r3a (10.0.0.130) on h3. Here r1a is labelled app=web, r1b app=other,
r2a app=db; r3a has no labels.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

from controller.model import (
    Endpoint,
    EndpointState,
    Policy,
    PolicyPeer,
    PolicyPort,
    PolicyRule,
    Snapshot,
    mac_for_ip,
)
from controller.oftable import Fabric, tcp_packet
from controller.pipeline import T_POL_IN_CT, T_POL_OUT_CT, desired_flows
from controller.policy import CT_MARK_BLOCKED, CT_MARK_POLICY, policy_zone
from controller.reconcile import diff
from tests.unit.conftest import Lab

LABELS = {"r1a": (("app", "web"),), "r1b": (("app", "other"),), "r2a": (("app", "db"),)}
WEB = (("app", "web"),)
DB = (("app", "db"),)
DB_FROM_WEB = Policy(
    "db-from-web",
    selector=DB,
    ingress=(PolicyRule(peers=(PolicyPeer(selector=WEB),), ports=(PolicyPort("tcp", 5432),)),),
)


def labelled(lab: Lab, *policies: Policy, snap: Snapshot | None = None) -> Snapshot:
    base = snap or lab.snap
    eps = tuple(replace(e, labels=LABELS.get(e.name, e.labels)) for e in base.endpoints)
    nets = dict(base.networks)
    nets["red"] = replace(nets["red"], policies=policies)
    return replace(base, revision=base.revision + 1, endpoints=eps, networks=nets)


def send(fab: Fabric, lab: Lab, src: str, dst: str, sport: int, dport: int) -> list[str]:
    """Where a TCP segment from endpoint ``src`` to ``dst`` ends up: endpoint names."""
    a, b = lab.ep(src), lab.ep(dst)
    assert a.host is not None and a.ofport is not None
    pkt = tcp_packet(a.mac, str(a.ip), str(b.ip), sport, dport)
    got = fab.send(a.host, pkt, a.ofport)
    by_place = {(e.host, e.ofport): e.name for e in lab.snap.endpoints if e.network == "red"}
    return [by_place.get((d.host, d.port), f"{d.host}:{d.port}") for d in got]


def test_ingress_allows_only_the_rule(lab: Lab) -> None:
    fab = lab.fabric(labelled(lab, DB_FROM_WEB))
    assert send(fab, lab, "r1a", "r2a", 40000, 5432) == ["r2a"]  # web -> db:5432
    assert send(fab, lab, "r1b", "r2a", 40001, 5432) == []  # other -> db
    assert send(fab, lab, "r1a", "r2a", 40002, 80) == []  # web -> db, another port
    assert send(fab, lab, "r3a", "r2a", 40003, 5432) == []  # unlabelled -> db
    # unselected endpoints stay open, both ways
    assert send(fab, lab, "r1b", "r3a", 40004, 80) == ["r3a"]
    assert send(fab, lab, "r2a", "r3a", 40005, 80) == ["r3a"]  # db's egress is not isolated
    assert send(fab, lab, "r3a", "r1a", 40006, 22) == ["r1a"]


def test_replies_pass_new_connections_the_other_way_do_not(lab: Lab) -> None:
    web_closed = Policy("web-closed", selector=WEB)  # web accepts nothing
    fab = lab.fabric(labelled(lab, DB_FROM_WEB, web_closed))
    assert send(fab, lab, "r3a", "r1a", 40000, 80) == []  # web is closed
    assert send(fab, lab, "r1a", "r2a", 40010, 5432) == ["r2a"]
    assert send(fab, lab, "r2a", "r1a", 5432, 40010) == ["r1a"]  # the reply
    assert send(fab, lab, "r1a", "r2a", 40010, 5432) == ["r2a"]  # and on
    assert send(fab, lab, "r2a", "r1a", 5432, 40011) == []  # not a reply: web is closed
    assert send(fab, lab, "r2a", "r1a", 40012, 80) == []


def test_egress_and_cidr_peers(lab: Lab) -> None:
    web_out = Policy(
        "web-out",
        selector=WEB,
        ingress=None,
        egress=(
            PolicyRule(peers=(PolicyPeer(selector=DB),), ports=(PolicyPort("tcp", 5432),)),
            PolicyRule(peers=(PolicyPeer(cidr=IPv4Network("10.0.0.128/25")),)),
        ),
    )
    fab = lab.fabric(labelled(lab, web_out))
    assert send(fab, lab, "r1a", "r2a", 40000, 5432) == ["r2a"]
    assert send(fab, lab, "r2a", "r1a", 5432, 40000) == ["r1a"]  # reply (ingress is open)
    assert send(fab, lab, "r1a", "r2a", 40001, 80) == []  # not that port
    assert send(fab, lab, "r1a", "r1b", 40002, 80) == []  # not that peer (same host)
    assert send(fab, lab, "r1a", "r3a", 40003, 9999) == ["r3a"]  # 10.0.0.130 in the CIDR
    assert send(fab, lab, "r1b", "r1a", 40004, 80) == ["r1a"]  # web's ingress is open


def test_same_host_both_stages(lab: Lab) -> None:
    other_from_web = Policy(
        "other-from-web",
        selector=(("app", "other"),),
        ingress=(PolicyRule(peers=(PolicyPeer(selector=WEB),)),),
    )
    fab = lab.fabric(labelled(lab, other_from_web))
    assert send(fab, lab, "r1a", "r1b", 40000, 80) == ["r1b"]  # web -> other, both on h1
    assert send(fab, lab, "r1b", "r1a", 80, 40000) == ["r1a"]  # reply
    assert send(fab, lab, "r2a", "r1b", 40001, 80) == []


def test_removing_the_rule_cuts_a_live_connection(lab: Lab) -> None:
    before = labelled(lab, DB_FROM_WEB)
    fab = lab.fabric(before)
    assert send(fab, lab, "r1a", "r2a", 40000, 5432) == ["r2a"]
    assert send(fab, lab, "r2a", "r1a", 5432, 40000) == ["r1a"]  # established
    after = labelled(lab, replace(DB_FROM_WEB, ingress=()), snap=before)  # no rule left
    for name, node in fab.nodes.items():  # the engine's reconcile, conntrack kept
        node.switch.apply(
            diff(desired_flows(after, name), {f.cookie: f for f in node.switch.table()})
        )
    # until the original direction sends again, the connection is not known to be cut
    assert send(fab, lab, "r2a", "r1a", 5432, 40000) == ["r1a"]
    assert send(fab, lab, "r1a", "r2a", 40000, 5432) == []  # the next packet is dropped
    (conn,) = fab.nodes["h2"].switch.conntrack.in_zone(policy_zone(lab.snap.networks["red"].vni))
    assert conn.mark == CT_MARK_POLICY | CT_MARK_BLOCKED
    assert send(fab, lab, "r2a", "r1a", 5432, 40000) == []  # and the replies from then on
    assert send(fab, lab, "r2a", "r1a", 5432, 40000) == []
    relabelled = labelled(lab, DB_FROM_WEB, snap=before)
    for name, node in fab.nodes.items():
        node.switch.apply(
            diff(desired_flows(relabelled, name), {f.cookie: f for f in node.switch.table()})
        )
    assert send(fab, lab, "r1a", "r2a", 40000, 5432) == ["r2a"]  # allowed again: unblocked
    assert conn.mark == CT_MARK_POLICY
    assert send(fab, lab, "r2a", "r1a", 5432, 40000) == ["r1a"]


def test_a_cut_on_the_senders_side_blocks_its_replies_there(lab: Lab) -> None:
    """Egress: web's own host cuts web's connection and drops the replies coming back."""
    web_out = Policy("web-out", selector=WEB, ingress=None, egress=(PolicyRule(),))
    before = labelled(lab, web_out)
    fab = lab.fabric(before)
    assert send(fab, lab, "r1a", "r2a", 40000, 80) == ["r2a"]
    assert send(fab, lab, "r2a", "r1a", 80, 40000) == ["r1a"]
    after = labelled(lab, replace(web_out, egress=()), snap=before)
    for name, node in fab.nodes.items():
        node.switch.apply(
            diff(desired_flows(after, name), {f.cookie: f for f in node.switch.table()})
        )
    assert send(fab, lab, "r1a", "r2a", 40000, 80) == []
    assert send(fab, lab, "r2a", "r1a", 80, 40000) == []


def _ep(
    name: str, ip: str, host: str, ofport: int, labels: tuple[tuple[str, str], ...]
) -> Endpoint:
    addr = IPv4Address(ip)
    return Endpoint(
        "red", name, addr, mac_for_ip(addr), host, ofport, EndpointState.READY, labels=labels
    )


def _many(lab: Lab, n: int, m: int) -> Snapshot:
    """n web endpoints on h1 (10.0.0.20+), m db endpoints on h2 (10.0.0.80+)."""
    extra = [_ep(f"w{i}", f"10.0.0.{20 + i}", "h1", 100 + i, WEB) for i in range(n)]
    extra += [_ep(f"d{i}", f"10.0.0.{80 + i}", "h2", 100 + i, DB) for i in range(m)]
    return labelled(lab, DB_FROM_WEB, snap=lab.with_endpoints(*extra))


def _policy_flows(snap: Snapshot, host: str) -> int:
    return sum(1 for f in desired_flows(snap, host) if f.table in (T_POL_IN_CT, T_POL_OUT_CT))


def test_flows_grow_as_sources_plus_destinations(lab: Lab) -> None:
    # db (r2a) is selected too, web (r1a) is a source: n + 1 sources, m + 1 destinations
    counts = {(n, m): _policy_flows(_many(lab, n, m), "h2") for n in (0, 5, 20) for m in (0, 5, 20)}
    base = counts[(0, 0)]
    for (n, m), count in counts.items():
        # each source one clause flow, each destination one clause flow and an open egress
        assert count == base + n + 2 * m, (n, m, count)
    fab = lab.fabric(_many(lab, 20, 20))
    assert send(fab, lab, "r1a", "r2a", 40000, 5432) == ["r2a"]
    # 21 destinations + 21 sources + 1 port + 1 conj_id flow (a product would be 441)
    assert fab.nodes["h2"].switch.conj_flows() == 21 + 21 + 1 + 1
