"""A bind's patch sent as the switch's batch (``Engine._sync_switch`` with ``diff_patch``)
against a diff of every flow (``reconcile.diff``): the same flow-mods, in the same order, and
the same table in the in-memory OpenFlow switch (``oftable.Switch``).

Two engines get the same random walk of binds, moves to another port (an add that replaces
a flow under the same key), unbinds and a block claim (a recomputation), as change-log
records, several between passes; in one the hosts' patches are dropped before every pass, so
it always diffs in full. After every pass both switches hold exactly the desired flows of a
full computation.
"""

from __future__ import annotations

import random
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network

import pytest

from controller.engine import Engine
from controller.flows import Flow
from controller.intent import BLOCKS, ENDPOINT, Change, endpoint_key
from controller.model import Block, Endpoint, EndpointState, Host, Network, Snapshot, mac_for_ip
from controller.pipeline import desired_flows
from controller.reconcile import Shared, apply, apply_patch, diff, diff_patch
from tests.unit.test_engine import OFPFC_ADD, FakeConn, TableConn

NET = Network("blue", 7, IPv4Network("10.0.0.0/24"), IPv4Address("10.0.0.1"))
HOSTS = {f"h{i}": Host(f"h{i}", IPv4Address(f"198.18.0.{i}"), dpid=i) for i in (1, 2)}
OWN = (
    Block("blue", IPv4Network("10.0.0.0/26"), "h1"),
    Block("blue", IPv4Network("10.0.0.64/26"), "h2"),
)
CLAIM = Block("blue", IPv4Network("10.0.0.128/26"), "h1")
NAMES = [f"e{i}" for i in range(6)]


def _ep(i: int, host: str, port: int, rev: int) -> Endpoint:
    ip = IPv4Address(f"10.0.0.{2 + i}" if host == "h1" else f"10.0.0.{66 + i}")
    return Endpoint("blue", NAMES[i], ip, mac_for_ip(ip), host, port, EndpointState.PENDING, rev)


class Side:
    """An engine with a connected, synced switch per host (plain flow-mods)."""

    def __init__(self, snap: Snapshot, catalog: dict[int, Flow]) -> None:
        self.engine = Engine(
            lambda: None,  # type: ignore[arg-type,return-value]
            lambda s: snap,
            lambda s: 1,
            lambda s, r: 0,
            bundles="never",  # plain flow-mods, which this table decodes (bundles: test_bundles)
        )
        self.engine.sync_all(snap)
        self.conns = {h: TableConn(HOSTS[h].dpid or 0, catalog) for h in HOSTS}
        for conn in self.conns.values():
            assert self.engine.switch_connected(conn)
            self.engine.switch_dump(conn.dpid, [], more=False)
        self.push()

    def push(self) -> None:
        self.engine.push()
        for conn in self.conns.values():
            for xid in conn.barriers():
                self.engine.barrier_reply(conn.dpid, xid)


def _walk(seed: int) -> tuple[int, int]:
    rng = random.Random(seed)
    eps: dict[int, Endpoint] = {}
    blocks = OWN
    snaps = []
    steps: list[list[tuple[int, list[Change]]]] = []
    rev = 1
    for _ in range(60):
        group = []
        for _ in range(rng.choice([1, 1, 2, 3])):
            rev += 1
            i = rng.randrange(len(NAMES))
            roll = rng.random()
            if roll < 0.04 and blocks == OWN:
                blocks = (*OWN, CLAIM)
                change = Change(BLOCKS, "blue", blocks)
            elif i in eps and roll < 0.45:
                del eps[i]
                change = Change(ENDPOINT, endpoint_key("blue", NAMES[i]), None)
            else:  # bind, or move to another port of its host
                host = "h1" if i % 3 else "h2"
                eps[i] = _ep(i, host, 2 + 4 * i + rng.randrange(4), rev)  # ports its own
                change = Change(ENDPOINT, endpoint_key("blue", NAMES[i]), eps[i])
            group.append((rev, [change]))
            snaps.append(Snapshot(rev, {"blue": NET}, dict(HOSTS), blocks, tuple(eps.values())))
        steps.append(group)
    first = Snapshot(1, {"blue": NET}, dict(HOSTS), OWN, ())
    catalog = {f.cookie: f for s in (first, *snaps) for h in HOSTS for f in desired_flows(s, h)}
    patched, full = Side(first, catalog), Side(first, catalog)
    at = 0
    for group in steps:
        for side in (patched, full):
            side.engine.apply(group[-1][0], group)
        for gen in full.engine._gens.values():
            gen.base, gen.delta = -1, None  # this one always diffs every flow
        patched.push()
        full.push()
        at += len(group)
        snap = snaps[at - 1]
        for h in HOSTS:
            want = {f.key(): f for f in desired_flows(snap, h)}
            assert patched.conns[h].table.flows == want, f"seed {seed} rev {snap.revision} {h}"
            assert full.conns[h].table.flows == want
            assert patched.conns[h].flow_mods() == full.conns[h].flow_mods(), "the same batches"
            assert patched.engine.installed_cookies(h == "h1" and 1 or 2) == {
                f.cookie for f in want.values()
            }
        for side in (patched, full):  # either way the model is the desired tuple, shared
            for sw in side.engine._switches.values():
                model, gen = sw.installed, side.engine._gens[sw.host or ""]
                assert isinstance(model, Shared) and model.flows is gen.desired
    assert full.engine.patch_batches == 0
    return patched.engine.patch_batches, patched.engine.recomputed


@pytest.mark.parametrize("seed", range(30))
def test_a_patch_sent_as_the_batch_equals_a_full_diff(seed: int) -> None:
    _walk(seed)


def test_the_walks_send_patches_and_recompute() -> None:
    """The walks above take both paths: patches as batches, and full diffs after a claim."""
    got = [_walk(seed) for seed in range(10)]
    assert sum(p for p, _ in got) >= 100
    assert any(r > 2 for _, r in got), "a claim recomputes (a full diff follows)"


def _flows(seed: int, n: int) -> list[Flow]:
    """``n`` flows over a few keys (some share table, priority and match: replacements)."""
    from controller.flows import Output, flow

    rng = random.Random(seed)
    return [
        flow(
            rng.choice([0, 10, 20]),
            rng.choice([10, 20]),
            {"in_port": rng.randrange(6)},
            [Output(rng.randrange(1, 9))],
        )  # fmt: skip
        for _ in range(n)
    ]


@pytest.mark.parametrize("seed", range(200))
def test_diff_patch_equals_diff_and_apply_patch_equals_apply(seed: int) -> None:
    """In the pure core: for any desired set with distinct keys, installed holding exactly
    its cookies (some known only by cookie, as after a dump), and any patch keeping keys
    distinct, ``diff_patch`` gives ``diff``'s changes and ``apply_patch`` ``apply``'s model."""
    rng = random.Random(seed)
    pool = _flows(seed, 40)
    desired: dict[tuple[object, ...], Flow] = {}
    for f in pool[:20]:
        desired.setdefault(f.key(), f)
    installed: dict[int, Flow | None] = {
        f.cookie: (None if rng.random() < 0.2 else f) for f in desired.values()
    }
    after = dict(desired)
    for f in rng.sample(list(desired.values()), rng.randrange(len(desired) + 1)):
        del after[f.key()]
    for f in pool[20:]:
        if rng.random() < 0.5:
            after[f.key()] = f  # may replace a flow under the same key
    old, new = set(desired.values()), set(after.values())
    gone, given = old - new, new - old
    want = diff(list(after.values()), installed)
    got, replaced = diff_patch(installed, gone, given)
    assert got == want
    model = dict(installed)
    apply_patch(model, got, replaced)
    assert model == apply(installed, want)
    assert set(model) == {f.cookie for f in after.values()}


def test_a_move_to_another_port_replaces_the_flow_under_its_key() -> None:
    """Binding an endpoint on another port of its host keeps the keys of some of its flows:
    the patch's adds overwrite them (no delete of the old cookie is sent)."""
    base = Snapshot(1, {"blue": NET}, dict(HOSTS), OWN, (_ep(1, "h1", 2, 1),))
    moved = replace(base, revision=2, endpoints=(_ep(1, "h1", 3, 2),))
    old, new = desired_flows(base, "h1"), desired_flows(moved, "h1")
    installed: dict[int, Flow | None] = {f.cookie: f for f in old}
    changes, replaced = diff_patch(installed, old - new, new - old)
    assert replaced and changes == diff(new, installed)
    assert len(changes.deletes) < len(old - new), "replaced flows are not deleted"


def test_a_pass_finds_queued_hosts_switches_and_a_re_registered_dpid_follows_its_host() -> None:
    """``push`` looks up only the queued hosts' switches while the hosts' dpids are as at its
    last scan; when they change (h1's dpid re-registered as h9's), every switch is checked
    again and the one at that dpid gets h9's flows."""
    from tests.unit.test_engine import Harness, snapshot

    h = Harness()
    conns = {d: FakeConn(d) for d in (1, 2)}
    for c in conns.values():
        assert h.engine.switch_connected(c)
        h.engine.switch_dump(c.dpid, [], more=False)
    h.engine.push()
    assert conns[1].cookies(OFPFC_ADD) == {f.cookie for f in desired_flows(h.snap, "h1")}
    seen = h.engine._dpids_seen
    assert seen is not None
    h.snap = snapshot(2, a_port=6)  # an endpoint of h1 moves: h1 queued, dpids unchanged
    before = len(conns[2].msgs)
    (moved,) = h.snap.endpoints
    h.engine.apply(2, [(2, [Change(ENDPOINT, endpoint_key("blue", "a"), moved)])])
    h.engine.push()
    assert h.engine._dpids_seen is seen
    assert conns[1].cookies(OFPFC_ADD) >= {f.cookie for f in desired_flows(h.snap, "h1")}
    assert len(conns[2].msgs) == before, "h2 was not queued: nothing sent to it"
    hosts = dict(snapshot(3, h9=True).hosts)
    hosts["h9"] = replace(hosts["h9"], dpid=1)
    del hosts["h1"]
    h.snap = replace(snapshot(3), hosts=hosts, endpoints=())
    h.sync()
    assert h.engine._dpids_seen is not seen
    want = {f.cookie for f in desired_flows(h.snap, "h9")}
    assert h.engine.installed_cookies(1) == want, "dpid 1 now holds h9's flows"
    assert {s.host for s in h.engine.switches() if s.dpid == 1} == {"h9"}
