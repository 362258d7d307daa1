"""The engine tells the membership when the set of switches changed (a host came, went or
got another dpid), so mastership is rebalanced at once; an endpoint's bind or unbind does
not (at 1,000 switches a renewal reads every switch's row: a tick per write cost a quarter
of a core under churn)."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address

from controller.engine import Engine
from controller.intent import ENDPOINT, HOST, Change, endpoint_key
from controller.model import Host
from tests.unit.test_readiness import HOME, HOSTS, _engine, _snap


def _watched() -> tuple[Engine, list[str]]:
    engine = _engine()
    calls: list[str] = []
    engine.on_switches = lambda: calls.append("poke")
    return engine, calls


def test_a_full_read_with_new_switches_pokes_the_membership_once() -> None:
    engine, calls = _watched()
    engine.sync_all(_snap(1))
    assert calls == ["poke"]
    engine.sync_all(_snap(1))  # the same switches: nothing
    assert calls == ["poke"]


def test_host_changes_poke_and_endpoint_changes_do_not() -> None:
    engine, calls = _watched()
    engine.sync_all(_snap(1))
    calls.clear()
    engine.apply(2, [(2, [Change(ENDPOINT, endpoint_key("blue", "home"), HOME)])])
    assert calls == [], "a bind moves no switch"
    renamed = replace(HOSTS["h1"], underlay_ip=IPv4Address("198.18.0.99"))
    engine.apply(3, [(3, [Change(HOST, "h1", renamed)])])
    assert calls == [], "a host record changed, its switch did not"
    h4 = Host("h4", IPv4Address("198.18.0.4"), dpid=4)
    engine.apply(4, [(4, [Change(HOST, "h4", h4)])])
    assert calls == ["poke"], "a new switch"
    engine.apply(5, [(5, [Change(HOST, "h4", replace(h4, dpid=44))])])
    engine.apply(6, [(6, [Change(HOST, "h4", None)])])
    assert calls == ["poke"] * 3, "a dpid changed, then the host went"
