"""ONF bundles end to end in the pure core: the engine's wire bytes decoded into the in-memory
table (controller/oftable.py), which keeps bundles as OVS 3.1 does. A replacing batch applies
as a whole (no state between the old table and the new one is ever seen), a flow refused at
add time or a commit that fails applies nothing and the rest follows without the refused
flow, and a switch that refuses bundles gets plain flow-mods."""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Callable
from dataclasses import replace

import pytest

from controller import ofmsg, oftable
from controller.flows import Flow
from controller.pipeline import desired_flows
from tests.unit.test_engine import Harness, snapshot

FLOW_MOD, EXPERIMENTER, BARRIER = 14, 4, 20
OFPFC_ADD = 0
BAD_EXPERIMENTER = "type=1 code=3"


class TableConn:
    """A ``SwitchConn`` whose switch is an ``oftable.Switch``: it applies what the engine
    sends as it arrives and queues its answers (errors, bundle and barrier replies, dumps)
    until ``pump``."""

    def __init__(self, h: Harness, dpid: int, flows: dict[int, Flow]) -> None:
        self.h, self.dpid = h, dpid
        self.address, self.peer_name = "198.18.0.9:1234", None
        self.switch = oftable.Switch()
        self.flows = flows  # cookie -> Flow, to decode adds
        self.answers: deque[Callable[[], None]] = deque()
        self.history: list[frozenset[int]] = []  # the table's cookies after every message
        self.refuse_bundles = False
        self.refuse_at_add: set[int] = set()  # cookies refused when added (as a bad action)
        self.bundle_xids: dict[int, list[int]] = {}
        self.plain_adds = self.bundle_adds = 0

    # SwitchConn
    def send(self, data: bytes) -> bool:
        off = 0
        while off < len(data):
            _, mtype, length, xid = struct.unpack_from("!BBHI", data, off)
            self._message(mtype, xid, data[off : off + length])
            self.history.append(self.switch.cookies())
            off += length
        return True

    def request_flow_dump(self) -> None:
        cookies = list(self.switch.cookies())
        self.answers.append(lambda: self.h.engine.switch_dump(self.dpid, cookies, more=False))

    def missed_echo(self) -> bool:
        return False

    def congested(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def pump(self) -> None:
        while self.answers:
            self.answers.popleft()()

    def _error(self, xid: int, text: str) -> None:
        self.answers.append(lambda: self.h.engine.switch_error(self.dpid, xid, text))

    def _op(self, msg: bytes) -> oftable.Operation:
        (cookie,) = struct.unpack_from("!Q", msg, 8)
        return ("add", self.flows[cookie]) if msg[25] == OFPFC_ADD else ("delete", cookie)

    def _message(self, mtype: int, xid: int, msg: bytes) -> None:
        if mtype == BARRIER:
            self.answers.append(lambda: self.h.engine.barrier_reply(self.dpid, xid))
        elif mtype == FLOW_MOD:
            self.plain_adds += msg[25] == OFPFC_ADD
            op = self._op(msg)
            if op[0] == "add" and op[1].cookie in self.refuse_at_add:  # type: ignore[union-attr]
                self._error(xid, "type=4 code=4")
            else:
                try:
                    self.switch.apply_one(op)
                except oftable.FlowRejected:
                    self._error(xid, "type=5 code=1")
        elif mtype == EXPERIMENTER:
            experimenter, exp_type, bid = struct.unpack_from("!III", msg, 8)
            assert experimenter == ofmsg.ONF_EXPERIMENTER
            if self.refuse_bundles:
                self._error(xid, BAD_EXPERIMENTER)
            elif exp_type == ofmsg.BUNDLE_ADD:
                self._bundle_add(bid, xid, msg[24:])
            else:
                self._control(bid, struct.unpack_from("!H", msg, 20)[0], xid)

    def _bundle_add(self, bid: int, xid: int, inner: bytes) -> None:
        assert ofmsg.xid_of(inner) == xid, "the inner message carries the bundle-add's xid"
        self.bundle_adds += 1
        op = self._op(inner)
        if op[0] == "add" and op[1].cookie in self.refuse_at_add:  # type: ignore[union-attr]
            self._error(xid, "type=4 code=4")  # refused now; OVS still commits the rest
            return
        self.switch.bundle_add(bid, op)
        self.bundle_xids.setdefault(bid, []).append(xid)

    def _control(self, bid: int, kind: int, xid: int) -> None:
        if kind == ofmsg.BUNDLE_OPEN:
            self.switch.open_bundle(bid)
            reply = ofmsg.BUNDLE_OPEN_REPLY
        elif kind == ofmsg.BUNDLE_COMMIT:
            xids = self.bundle_xids.pop(bid, [])
            try:
                self.switch.commit(bid)
            except oftable.CommitFailed as exc:
                self._error(xids[exc.index], "type=5 code=1")  # TABLE_FULL, the add's xid
                self._error(xid, f"type=65535 code={ofmsg.BUNDLE_FAILED}")
                return
            reply = ofmsg.BUNDLE_COMMIT_REPLY
        else:
            assert kind == ofmsg.BUNDLE_DISCARD
            self.bundle_xids.pop(bid, None)
            self.switch.discard(bid)
            reply = ofmsg.BUNDLE_DISCARD_REPLY
        self.answers.append(lambda: self.h.engine.bundle_reply(self.dpid, xid, reply))


def _cookies(snap_flows: frozenset[Flow]) -> frozenset[int]:
    return frozenset(f.cookie for f in snap_flows)


def _setup(bundles: str = "auto") -> tuple[Harness, TableConn, frozenset[int]]:
    """h1's switch converged on revision 1; its flows for revision 2 (a_port moved) known."""
    h = Harness(bundles=bundles)
    flows = {f.cookie: f for f in desired_flows(h.snap, "h1")}
    flows.update({f.cookie: f for f in desired_flows(snapshot(2, a_port=6), "h1")})
    conn = TableConn(h, 1, flows)
    assert h.engine.switch_connected(conn)
    conn.pump()  # the dump of the empty switch
    h.sync()
    conn.pump()
    old = conn.switch.cookies()
    assert old == _cookies(desired_flows(h.snap, "h1")) and h.engine.wait_applied(1, 0)
    conn.history.clear()
    return h, conn, old


def _move(h: Harness, conn: TableConn) -> frozenset[int]:
    """Revision 2: the endpoint moves to another port (adds and deletes); its table."""
    h.snap = snapshot(2, a_port=6)
    h.sync()
    return _cookies(desired_flows(h.snap, "h1"))


def test_a_replacing_batch_applies_as_one_bundle_and_nothing_in_between_is_seen() -> None:
    h, conn, old = _setup()
    assert conn.plain_adds > 0 and conn.bundle_adds == 0, "a cold fill goes plain (auto)"
    new = _move(h, conn)
    assert old - new and new - old, "the move replaces flows"
    assert conn.switch.cookies() == old, "nothing applied before the commit"
    assert not h.engine.wait_applied(2, 0)
    conn.pump()
    assert conn.switch.cookies() == new and conn.switch.commits == 1
    assert set(conn.history) == {old, new}, "the table went from old to new in one step"
    assert h.engine.wait_applied(2, 0) and h.engine.bundles_committed == 1
    assert conn.switch.bundles == {}, "no bundle left open"


def test_a_flow_refused_at_add_time_discards_the_bundle_and_the_rest_follows() -> None:
    h, conn, old = _setup()
    bad = next(iter(_cookies(desired_flows(snapshot(2, a_port=6), "h1")) - old))
    conn.refuse_at_add = {bad}
    new = _move(h, conn)
    conn.pump()  # refused -> discarded -> dumped again
    assert h.engine.bundles_discarded == 1 and conn.switch.commits == 0
    assert h.engine.held_cookies(1) == {bad}
    h.sync()  # the next pass: the rest, in a bundle again
    conn.pump()
    assert conn.switch.cookies() == new - {bad}
    assert set(conn.history) <= {old, new - {bad}}, "never half a batch"
    assert h.engine.installed_cookies(1) == new - {bad}
    assert h.engine.wait_applied(2, 0), "the rest is applied; the refused flow is held back"
    assert conn.switch.bundles == {}


def test_a_commit_that_fails_applies_nothing_and_the_switch_is_dumped_again() -> None:
    h, conn, old = _setup()
    keys = {f.key() for f in desired_flows(snapshot(2, a_port=6), "h1")} - set(conn.switch.flows)
    assert keys, "the move adds flows under new keys"
    conn.switch.capacity = len(old) + len(keys) - 1  # the last of them does not fit
    new = _move(h, conn)
    conn.pump()
    assert conn.switch.cookies() == old and conn.switch.commits == 0
    (held,) = h.engine.held_cookies(1)
    assert held in new - old
    h.sync()
    conn.pump()
    assert conn.switch.cookies() == new - {held}
    assert set(conn.history) <= {old, new - {held}}
    assert h.engine.wait_applied(2, 0)


def test_a_switch_that_refuses_bundles_gets_plain_flow_mods_and_nothing_held() -> None:
    h, conn, _old = _setup()
    conn.refuse_bundles = True
    plain = conn.plain_adds
    new = _move(h, conn)
    conn.pump()  # open refused: no quarantine for its messages, dumped again
    assert h.engine.held_cookies(1) == set()
    h.sync()
    conn.pump()
    assert conn.switch.cookies() == new and conn.plain_adds > plain
    assert h.engine.wait_applied(2, 0)
    h.snap = snapshot(3, a_port=5)
    h.sync()
    conn.pump()
    assert conn.switch.cookies() == _cookies(desired_flows(h.snap, "h1")), "plain from now on"


@pytest.mark.parametrize(("mode", "bundled"), [("always", True), ("never", False)])
def test_bundle_mode_always_or_never(mode: str, bundled: bool) -> None:
    h, conn, old = _setup(mode)
    assert (conn.bundle_adds > 0) is bundled and (conn.plain_adds > 0) is not bundled
    new = _move(h, conn)
    conn.pump()
    assert conn.switch.cookies() == new
    if not bundled:
        assert len(set(conn.history)) > 2, "plain flow-mods pass through mixed tables"


def test_unknown_bundle_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="bundles must be one of"):
        Harness(bundles="sometimes")


def test_a_batch_after_an_uncommitted_bundle_waits_for_its_commit() -> None:
    # Churn found it (bench.scale: switches converged yet missing flows the controller
    # counted): a plain batch sent while a bundle waited for its prepare barrier reached the
    # switch before that bundle's commit, so the commit undid it. Here the move's bundle
    # adds a's flows at port 6; a is gone before it commits (plain deletes of those flows).
    h, conn, _old = _setup()
    _move(h, conn)
    assert conn.switch.commits == 0 and conn.switch.bundles, "the move's bundle is open"
    h.snap = replace(snapshot(3, a_port=6), endpoints=())
    h.sync()
    conn.pump()  # the bundle's barrier: commit; then what waited for it
    h.engine.push()  # the engine's next pass (the commit woke it)
    conn.pump()
    gone = _cookies(desired_flows(h.snap, "h1"))
    assert conn.switch.cookies() == gone == h.engine.installed_cookies(1)
    assert h.engine.wait_applied(3, 0)
