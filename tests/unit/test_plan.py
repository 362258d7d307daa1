"""hostagent.plan: reconciling local ports with the controller after an agent restart."""

from __future__ import annotations

import random
from ipaddress import IPv4Address

from hostagent.plan import (
    Bind,
    Conflict,
    DropStale,
    LocalPort,
    Recreate,
    RemoteEndpoint,
    RemoveLocal,
    Unbind,
    plan,
)

HOST = "h1"


def port(name: str, ofport: int | None = 5, ip: str | None = "10.0.0.5", net: str = "n1"):
    return LocalPort(net, name, f"vx-{name}", ofport, IPv4Address(ip) if ip else None)


def remote(name: str, host: str | None = HOST, ofport: int | None = 5, ip: str = "10.0.0.5"):
    return RemoteEndpoint("n1", name, IPv4Address(ip), host, ofport)


def test_in_agreement_needs_nothing():
    assert plan(HOST, [remote("a")], [port("a")]) == []


def test_nothing_anywhere_needs_nothing():
    assert plan(HOST, [], []) == []


def test_controller_lost_endpoint_is_recreated_with_its_ip_then_bound():
    p = port("a", ip="10.0.0.9")
    assert plan(HOST, [], [p]) == [Recreate(p)]


def test_port_without_recorded_ip_is_not_recreated():
    assert plan(HOST, [], [port("a", ip=None)]) == []


def test_unbound_at_controller_is_bound_again():
    p = port("a")
    assert plan(HOST, [remote("a", host=None, ofport=None)], [p]) == [Bind(p)]


def test_ofport_changed_is_bound_again():
    p = port("a", ofport=7)
    assert plan(HOST, [remote("a", ofport=5)], [p]) == [Bind(p)]


def test_bound_here_without_port_is_unbound():
    assert plan(HOST, [remote("a")], []) == [Unbind("n1", "a")]


def test_moved_elsewhere_removes_local_port_only():
    p = port("a")
    assert plan(HOST, [remote("a", host="h2", ofport=3)], [p]) == [RemoveLocal(p, now_on="h2")]


def test_stale_port_is_dropped_and_unbound():
    p = port("a", ofport=None)
    assert plan(HOST, [remote("a")], [p]) == [DropStale(p), Unbind("n1", "a")]


def test_stale_port_of_unknown_endpoint_is_dropped_not_recreated():
    p = port("a", ofport=None)
    assert plan(HOST, [], [p]) == [DropStale(p)]


def test_address_conflict_is_reported_not_bound():
    p = port("a", ip="10.0.0.5")
    assert plan(HOST, [remote("a", ip="10.0.0.6")], [p]) == [
        Conflict(p, controller_ip=IPv4Address("10.0.0.6"))
    ]


def test_same_name_on_two_networks_are_distinct():
    p1 = port("a", net="n1")
    p2 = port("a", net="n2")
    actions = plan(HOST, [remote("a")], [p1, p2])
    assert actions == [Recreate(p2)]


def test_mixed_removals_come_first_and_result_is_order_independent():
    local = [port("keep"), port("lost"), port("moved"), port("unbound", ofport=9)]
    wanted = [
        remote("keep"),
        remote("moved", host="h2"),
        remote("unbound", host=None, ofport=None),
        remote("ghost"),
    ]
    expected = [
        RemoveLocal(port("moved"), now_on="h2"),
        Unbind("n1", "ghost"),
        Recreate(port("lost")),
        Bind(port("unbound", ofport=9)),
    ]
    assert plan(HOST, wanted, local) == expected
    rng = random.Random(7)
    for _ in range(20):
        rng.shuffle(local)
        rng.shuffle(wanted)
        assert plan(HOST, wanted, local) == expected


def test_applying_the_plan_converges():
    """Simulate the controller applying each action: a second plan is empty."""
    local = {p.key: p for p in [port("lost"), port("unbound", ofport=9), port("moved")]}
    ctrl = {
        r.key: r
        for r in [remote("unbound", host=None, ofport=None), remote("moved", host="h2"),
                  remote("ghost")]
    }  # fmt: skip
    for action in plan(HOST, ctrl.values(), local.values()):
        if isinstance(action, Recreate | Bind):
            p = action.port
            assert p.ip is not None
            ctrl[p.key] = RemoteEndpoint(p.network, p.name, p.ip, HOST, p.ofport)
        elif isinstance(action, Unbind):
            old = ctrl[(action.network, action.name)]
            ctrl[old.key] = RemoteEndpoint(old.network, old.name, old.ip, None, None)
        elif isinstance(action, RemoveLocal | DropStale):
            del local[action.port.key]
    assert plan(HOST, ctrl.values(), local.values()) == []
