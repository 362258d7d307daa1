"""The engine's installed model shares the desired tuple once a switch holds exactly it
(``reconcile.Shared``): what a converged switch costs, and that later changes, restarts and
rejections still diff as against a dict of its own. Checked through the in-memory OpenFlow
table (``oftable.Switch``), which replaces a flow with the same key as OVS does."""

from __future__ import annotations

from controller.engine import FIRST_XID, Engine
from controller.flows import Flow
from controller.oftable import Switch
from controller.pipeline import desired_flows
from controller.reconcile import Shared
from tests.unit.test_engine import OFPFC_ADD, OFPFC_DELETE, FakeConn, Harness, play, snapshot


def _model(engine: Engine, dpid: int) -> object:
    return engine._switches[dpid].installed  # noqa: SLF001 - what the model is made of


def _desired(engine: Engine, host: str) -> tuple[Flow, ...] | None:
    return engine._gens[host].desired  # noqa: SLF001


def _flows(*snaps: object) -> dict[int, Flow]:
    return {f.cookie: f for s in snaps for f in desired_flows(s, "h1")}  # type: ignore[arg-type]


def test_converged_switch_shares_the_desired_tuple_and_a_change_diffs_against_it() -> None:
    h = Harness()
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    h.engine.switch_dump(1, [], more=False)
    h.sync()
    h.engine.barrier_reply(1, c1.barriers()[-1])
    model = _model(h.engine, 1)
    assert isinstance(model, Shared) and model.flows is _desired(h.engine, "h1")
    assert dict(model.items()) == {f.cookie: f for f in desired_flows(h.snap, "h1")}

    switch = Switch("h1").load(desired_flows(h.snap, "h1"))
    old = h.snap
    for rev, snap in enumerate([snapshot(2, a_port=6), snapshot(3, a_port=7)], 2):
        h.snap = snap
        start = len(c1.msgs)
        h.sync()
        assert len(c1.msgs) > start, f"revision {rev} changes h1's flows"
        play(switch, c1.msgs[start:], _flows(old, snap))
        assert switch.table() == desired_flows(snap, "h1"), rev
        h.engine.barrier_reply(1, c1.barriers()[-1])
        model = _model(h.engine, 1)
        assert isinstance(model, Shared) and model.flows is _desired(h.engine, "h1"), rev
        old = snap
    sent = len(c1.msgs)
    h.sync()
    assert len(c1.msgs) == sent, "converged: nothing more"


def test_a_modified_flow_is_replaced_by_its_add_alone() -> None:
    """The shared model knows every flow (not only its cookie): a flow whose match stays and
    whose actions change is overwritten by the add, with no delete of the old cookie."""
    h = Harness()
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    h.engine.switch_dump(1, [], more=False)
    h.sync()
    h.engine.barrier_reply(1, c1.barriers()[-1])
    before = desired_flows(h.snap, "h1")
    h.snap = snapshot(2, a_port=6)
    start = len(c1.msgs)
    h.sync()
    after = desired_flows(h.snap, "h1")
    keys = {f.key() for f in after}
    replaced = {f.cookie for f in before - after if f.key() in keys}
    assert replaced, "the port change keeps some matches"
    deleted = {c for t, _, cmd, c in c1.msgs[start:] if t == 14 and cmd == OFPFC_DELETE}
    assert not deleted & replaced
    switch = Switch("h1").load(before)
    play(switch, c1.msgs[start:], _flows(snapshot(1), h.snap))
    assert switch.table() == after


def test_restart_dump_of_exactly_the_desired_flows_is_shared_at_once_and_sends_nothing() -> None:
    h = Harness()
    want = [f.cookie for f in desired_flows(h.snap, "h1")]
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    # fresh int objects, as parsed from the wire, in two parts
    h.engine.switch_dump(1, [int(str(c)) for c in want[:3]], more=True)
    h.engine.switch_dump(1, [int(str(c)) for c in want[3:]], more=False)
    model = _model(h.engine, 1)
    assert isinstance(model, Shared) and model.flows is _desired(h.engine, "h1")
    h.sync()
    assert c1.cookies(OFPFC_ADD) == set() and c1.cookies(OFPFC_DELETE) == set()
    assert h.engine.wait_applied(1, 0.01, hosts=["h1"])


def test_restart_dump_with_a_stale_flow_deletes_it_then_shares() -> None:
    h = Harness()
    want = [f.cookie for f in desired_flows(h.snap, "h1")]
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    h.engine.switch_dump(1, [*want[1:], 0x1234], more=False)  # one missing, one stale
    assert not isinstance(_model(h.engine, 1), Shared)
    h.sync()
    assert c1.cookies(OFPFC_ADD) == {want[0]} and c1.cookies(OFPFC_DELETE) == {0x1234}
    h.engine.barrier_reply(1, c1.barriers()[-1])
    model = _model(h.engine, 1)
    assert isinstance(model, Shared) and model.flows is _desired(h.engine, "h1")


def test_a_rejected_add_leaves_a_model_of_its_own_without_it() -> None:
    h = Harness()
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    h.engine.switch_dump(1, [], more=False)
    h.sync()
    shared = _model(h.engine, 1)
    assert isinstance(shared, Shared)
    xid, bad = c1.adds()[1]
    h.engine.switch_error(1, xid, "type=5 code=0")
    model = _model(h.engine, 1)
    assert isinstance(model, dict) and bad not in model
    assert set(model) == set(shared) - {bad}
    assert shared.flows is _desired(h.engine, "h1"), "the desired tuple itself is untouched"
    h.engine.barrier_reply(1, c1.barriers()[-1])
    assert h.engine.held_cookies(1) == {bad}


def test_an_add_rejected_after_the_xids_wrapped_is_the_one_held_back() -> None:
    """A batch's adds are found by their xid's offset from the first, across the wrap."""
    h = Harness()
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    h.engine.switch_dump(1, [], more=False)
    h.engine._switches[1].next_xid = 0xFFFFFFFE  # noqa: SLF001 - two xids before the wrap
    h.sync()
    adds = c1.adds()
    assert [x for x, _ in adds[:3]] == [0xFFFFFFFF, FIRST_XID, FIRST_XID + 1]
    wrapped = adds[1][1]
    h.engine.switch_error(1, FIRST_XID, "type=5 code=0")
    h.engine.switch_error(1, FIRST_XID, "type=5 code=0")  # the same error twice: counted once
    h.engine.switch_error(1, 0x7FFFFFFF, "type=5 code=0")  # not an xid of ours
    h.engine.barrier_reply(1, c1.barriers()[-1])
    assert h.engine.held_cookies(1) == {wrapped}
    assert h.engine.installed_cookies(1) == {c for _, c in adds} - {wrapped}


def test_a_dump_is_kept_as_packed_cookies_and_a_repeated_cookie_counts_once() -> None:
    h = Harness()
    want = [f.cookie for f in desired_flows(h.snap, "h1")]
    c1 = FakeConn(1)
    h.engine.switch_connected(c1)
    h.engine.switch_dump(1, want[:2], more=True)
    dump = h.engine._switches[1].dump  # noqa: SLF001
    assert dump.itemsize == 8 and list(dump) == want[:2], "8 bytes a cookie, no int objects"
    h.engine.switch_dump(1, [*want[2:], want[0]], more=False)  # want[0] twice
    model = _model(h.engine, 1)
    assert not isinstance(model, Shared) and set(model) == set(want)
    h.sync()
    assert c1.cookies(OFPFC_ADD) == set() and c1.cookies(OFPFC_DELETE) == set()
    model = _model(h.engine, 1)
    assert isinstance(model, Shared) and model.flows is _desired(h.engine, "h1")
