"""Flow sync engine: intent -> desired flows per switch -> diff -> ordered batch -> barrier.

One worker thread owns all sending. It wakes on ``notify`` (an in-process event from the
API), on switch events, and every ``poll_interval`` seconds (which also picks up revisions
committed by another controller process sharing a PostgreSQL database). Each pass reads one
snapshot, and for every connected, synced switch computes ``pipeline.desired_flows``, diffs it
against the installed model (``reconcile.diff``) and sends only the changes, in one buffer,
followed by a barrier. The barrier reply moves the switch's applied revision; API requests
wait on that to call an endpoint ready: ``until_applied`` from the event loop, holding no
thread (each waiter is an asyncio future that the barrier's thread resolves through
``call_soon_threadsafe``), or ``wait_applied``, blocking, from a thread.

A switch is synced after its first flow dump at connect: its installed model is then exactly
the cookies it holds, so a controller restart replays nothing that is already there and
deletes only stale flows. A failed database read changes nothing.

Admission: a connection is only *held* until its datapath id belongs to a registered host
(and, with TLS, until its certificate's CN names that host); only then is it asked for a
flow dump and sent flows. A connection for a dpid that is already connected replaces the
first only when the first has missed an echo or the new one presents the host's
certificate; otherwise the new one is refused, closed and reported (``switch.refused``).

A flow the switch rejects (an error carrying a flow-mod's xid) is held back on that switch
with exponential backoff (``QUARANTINE_BASE`` doubling up to ``QUARANTINE_MAX`` seconds),
reported (``switch.flow_rejected``, ``SwitchStatus.rejected_flows``) and retried only when
its time comes; the rest of the batch is applied as usual. A rejected add that replaced a
flow puts the replaced one back in the installed model, so the next pass deletes it.

A batch that must apply as a whole goes as one ONF bundle (``bundles``: "auto", the
default, bundles a batch that replaces or removes flows while it adds others; "always";
"never"): open, every flow-mod as a bundle-add, then a barrier. OVS refuses a bad message
at add time and would still commit the rest, so the engine commits only when that barrier
comes back without an error for any of the bundle's messages; otherwise it discards the
bundle. The rejected flows are held back as above; since the switch applied none of the
batch, the switch is asked for a flow dump again (as at connect) and the next pass sends the
rest. A commit that fails (the switch refused a message at commit time: overlap, table full)
does the same. A switch that answers the open with an error gets plain flow-mods from then on.

Backpressure: a switch whose connection reports ``congested`` (more queued for it than it
has read, see ``controller/ofconn.py``) is left out of passes until ``switch_drained``; the
next pass after that sends it the difference, computed afresh, so nothing is lost by waiting.

No os-ken import here: switches are reached through the small ``SwitchConn`` protocol that
``ofapp`` implements.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy.orm import Session

from controller import ofmsg
from controller.flows import Flow
from controller.model import Host, Snapshot
from controller.pipeline import SnapshotIndex, desired_flows, index
from controller.reconcile import Changes, apply, diff
from controller.sync import SwitchStatus

log = logging.getLogger(__name__)

SEND_CHUNK = 64 * 1024
FIRST_XID = 0x80000000
QUARANTINE_BASE = 1.0  # s before a rejected flow is tried again; doubles on every rejection
QUARANTINE_MAX = 300.0
MAX_HELD = 256  # connections waiting for their dpid to become a registered host's
HOLD_TIMEOUT = 120.0  # s a connection may wait for that before it is closed
MAX_DUMP_FLOWS = 500_000  # a flow dump longer than this is not a vxplane switch's: closed
BUNDLE_MODES = ("auto", "always", "never")


class SwitchConn(Protocol):
    """A live OpenFlow connection to one switch."""

    dpid: int
    address: str
    peer_name: str | None  # CN of the switch's TLS certificate; None over plain TCP

    def send(self, data: bytes) -> bool:
        """Queue raw OpenFlow bytes (never blocks); False if the connection is closing."""

    def congested(self) -> bool:
        """True while more is queued for the switch than it should be sent before it has
        read some (``switch_drained`` tells when that is over)."""

    def request_flow_dump(self) -> None:
        """Ask the switch for all its flows (answered through ``Engine.switch_dump``)."""

    def missed_echo(self) -> bool:
        """True if the switch left an echo request unanswered for a whole probe period."""

    def close(self) -> None:
        """Close the connection (a refused or replaced switch)."""


class WriteGate(Protocol):
    """Who may write to which switch (``controller.roles.Roles``: lease, mastership, role)."""

    def may_write(self, dpid: int, conn: object) -> bool:
        """A batch may go to switch ``dpid`` over ``conn`` now."""

    def masters(self, dpid: int) -> bool:
        """This controller is assigned switch ``dpid`` (its readiness counts here)."""


@dataclass
class _Held:
    """A flow the switch rejected: not sent again before ``until``."""

    until: float
    attempts: int
    error: str
    sent: bool = False  # included again in a batch after ``until``


@dataclass(frozen=True, slots=True)
class _Sent:
    """An add in flight: its cookie and the installed flow it replaces (if any)."""

    cookie: int
    replaced: tuple[int, Flow] | None = None


@dataclass(eq=False)
class _Bundle:
    """A batch sent as an ONF bundle: open, its messages, then the ``prepare`` barrier; the
    commit (``commit_xid``) and the batch's own barrier (``final_xid``) follow if no message
    was refused."""

    bundle_id: int
    open_xid: int
    prepare_xid: int
    commit_xid: int
    final_xid: int
    xids: frozenset[int]  # its messages' xids (the bundle-adds carry the inner ones)
    failed: str | None = None  # why it must not be committed
    refused: bool = False  # the switch refused the open: it has no such bundle
    committing: bool = False


@dataclass
class _Switch:
    conn: SwitchConn
    since: float = 0.0  # when it connected (the engine's clock)
    connected: bool = True
    admitted: bool = False  # its dpid is a registered host's (and its certificate names it)
    dumping: bool = False  # a flow dump was asked for and is not complete
    synced: bool = False
    dump: set[int] = field(default_factory=set)
    installed: dict[int, Flow | None] = field(default_factory=dict)
    host: str | None = None
    sent_rev: int = 0
    applied_rev: int = 0
    pending: dict[int, int] = field(default_factory=dict)  # barrier xid -> revision
    batches: dict[int, dict[int, _Sent]] = field(default_factory=dict)  # barrier xid -> adds
    held: dict[int, _Held] = field(default_factory=dict)  # rejected cookie -> backoff
    next_xid: int = FIRST_XID
    errors: int = 0
    bundles_ok: bool = True  # False once it refused to open a bundle: plain flow-mods
    bundles: list[_Bundle] = field(default_factory=list)  # in flight, oldest first

    def forget_inflight(self) -> None:
        self.pending.clear()
        self.batches.clear()
        for b in self.bundles:  # still open on the switch: discarded at their prepare barrier
            b.failed = b.failed or "the switch is dumped again"
        self.bundles = [b for b in self.bundles if not b.committing]

    def bundle_of(self, xid: int) -> _Bundle | None:
        return next(
            (b for b in self.bundles if xid in b.xids or xid in (b.open_xid, b.commit_xid)),
            None,
        )

    def xid(self) -> int:
        self.next_xid = FIRST_XID if self.next_xid >= 0xFFFFFFFF else self.next_xid + 1
        return self.next_xid


@dataclass(eq=False)
class _Waiter:
    """An asyncio wait for ``revision`` (and ``hosts`` connected); ``wake`` from any thread."""

    revision: int
    hosts: tuple[str, ...]
    wake: Callable[[], None]


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


SnapshotLoader = Callable[[Session], Snapshot]
ReadyMarker = Callable[[Session, int, Collection[str]], int]
EventSink = Callable[..., Any]  # on_event(type, **data): see controller.events.EVENT_TYPES


class Engine:
    """The OpenFlow side of the controller; implements ``controller.sync.FlowSync``."""

    def __init__(
        self,
        session_factory: Callable[[], Session],
        load_snapshot: SnapshotLoader,
        load_revision: Callable[[Session], int],
        mark_ready: ReadyMarker,
        *,
        poll_interval: float = 2.0,
        on_event: EventSink | None = None,
        require_cert: bool = False,
        clock: Callable[[], float] = time.monotonic,
        bundles: str = "auto",
        gate: WriteGate | None = None,
    ) -> None:
        if bundles not in BUNDLE_MODES:
            raise ValueError(f"bundles must be one of {', '.join(BUNDLE_MODES)}, not {bundles!r}")
        self._sessions = session_factory
        self._load_snapshot = load_snapshot
        self._load_revision = load_revision
        self._mark_ready = mark_ready
        self._poll = poll_interval
        self._on_event = on_event
        self._require_cert = require_cert  # TLS: a switch's certificate CN must be its host
        self._clock = clock
        self._bundles = bundles
        self._gate = gate  # None: the only controller, every admitted switch is ours
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._switches: dict[int, _Switch] = {}
        self._waiters: set[_Waiter] = set()
        self._snapshot: Snapshot | None = None
        self._remote: dict[int, int] = {}  # dpid -> revision its master (elsewhere) applied
        self._marked: tuple[int, list[str]] = (-1, [])
        self._dirty = True
        self._thread: threading.Thread | None = None
        self.passes = 0
        self.refused = 0
        self.bundles_committed = 0  # commits the switches confirmed (tests, diagnostics)
        self.bundles_discarded = 0
        self.on_pass: Callable[[float], None] | None = None  # seconds of each pass (metrics)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker thread."""
        self._thread = threading.Thread(target=self._run, name="vxplane-engine", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the worker thread (our own flag: os-ken's hub.kill is a no-op)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    # -- FlowSync --------------------------------------------------------------------------
    def notify(self, revision: int) -> None:
        """Intent changed at ``revision``: wake the worker."""
        self._set_dirty()

    def _set_dirty(self) -> None:
        with self._lock:
            self._dirty = True
        self._wake.set()

    def wait_applied(self, revision: int, timeout: float, hosts: Collection[str] = ()) -> bool:
        """Wait until every connected switch applied ``revision`` and ``hosts`` are connected."""
        with self._changed:
            return self._changed.wait_for(lambda: self._applied(revision, hosts), timeout)

    async def until_applied(
        self, revision: int, timeout: float, hosts: Collection[str] = ()
    ) -> bool:
        """``wait_applied`` for the event loop: awaits a future, holds no thread."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            try:
                loop.call_soon_threadsafe(_settle, done)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

        waiter = _Waiter(revision, tuple(hosts), wake)
        with self._lock:
            if self._applied(revision, hosts):
                return True
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(done, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                self._waiters.discard(waiter)

    @property
    def waiting(self) -> int:
        """How many ``until_applied`` calls are waiting (tests, diagnostics)."""
        with self._lock:
            return len(self._waiters)

    def _signal(self) -> None:
        """(Lock held.) Applied revisions or connections changed: wake the waiters done."""
        self._changed.notify_all()
        for waiter in [w for w in self._waiters if self._applied(w.revision, w.hosts)]:
            self._waiters.discard(waiter)
            waiter.wake()

    def switches(self) -> list[SwitchStatus]:
        """Status of every admitted switch seen since start (held connections are not)."""
        with self._lock:
            return [
                SwitchStatus(
                    dpid=dpid,
                    connected=sw.connected,
                    address=sw.conn.address,
                    applied_revision=sw.applied_rev,
                    flow_count=len(sw.installed),
                    host=sw.host,
                    rejected_flows=len(sw.held),
                )
                for dpid, sw in sorted(self._switches.items())
                if sw.admitted
            ]

    def installed_cookies(self, dpid: int) -> set[int]:
        """The cookies the engine believes switch ``dpid`` holds (tests, diagnostics)."""
        with self._lock:
            sw = self._switches.get(dpid)
            return set(sw.installed) if sw else set()

    def held_cookies(self, dpid: int) -> set[int]:
        """Cookies switch ``dpid`` rejected and that are held back (tests, diagnostics)."""
        with self._lock:
            sw = self._switches.get(dpid)
            return set(sw.held) if sw else set()

    def _applied(self, revision: int, hosts: Collection[str]) -> bool:
        live = [
            sw
            for sw in self._switches.values()
            if sw.connected and sw.host is not None and self._ours(sw)
        ]
        if any(sw.applied_rev < revision for sw in live):
            return False
        present = {sw.host for sw in live}
        return all(h in present or self._remote_applied(h) >= revision for h in hosts)

    def _remote_applied(self, host: str) -> int:
        """(Lock held.) The revision another controller, master of ``host``'s switch, last
        published as applied there (-1: unknown, or we are its master)."""
        snap = self._snapshot
        found = snap.hosts.get(host) if snap is not None and self._gate is not None else None
        if found is None or found.dpid is None or self._gate is None:
            return -1
        if self._gate.masters(found.dpid):
            return -1
        return self._remote.get(found.dpid, -1)

    def remote_applied(self, applied: dict[int, int]) -> None:
        """Every switch's applied revision as its master published it (the membership's
        tick): waits for hosts whose switch another controller masters end on it."""
        with self._lock:
            self._remote = dict(applied)
            self._signal()

    def applied_revisions(self) -> dict[int, int]:
        """dpid -> applied revision of the connected switches we master (to publish)."""
        with self._lock:
            return {
                dpid: sw.applied_rev
                for dpid, sw in self._switches.items()
                if sw.connected and sw.host is not None and self._ours(sw) and sw.applied_rev > 0
            }

    # -- switch events (called from os-ken's threads) --------------------------------------
    def switch_connected(self, conn: SwitchConn) -> bool:
        """A switch completed the handshake. Returns False if it was refused (and closed).

        A second connection for a connected dpid replaces the first only if the first has
        missed an echo or the new one's certificate names the dpid's host. The connection is
        admitted (flow dump, then flows) once its dpid is a registered host's; until then it
        is held and sent nothing.
        """
        replaced: SwitchConn | None = None
        with self._lock:
            old = self._switches.get(conn.dpid)
            host = self._host_of(conn.dpid)
            if host is not None and not self._cert_ok(conn, host):
                self._refuse(conn, self._cert_reason(conn, host))
                return False
            if old is not None and old.connected and old.conn is not conn:
                if old.conn.missed_echo():
                    why = "the connection it replaces missed an echo"
                elif host is not None and conn.peer_name == host:
                    why = f"it presents {host}'s certificate"
                else:
                    reason = f"dpid already connected from {old.conn.address}"
                    self._refuse(conn, reason)
                    return False
                log.warning(
                    "switch %016x: new connection from %s replaces %s (%s)",
                    conn.dpid, conn.address, old.conn.address, why,
                )  # fmt: skip
                replaced = old.conn
            if host is None and replaced is None and self._held() >= MAX_HELD:
                self._refuse(conn, f"{MAX_HELD} connections already wait for admission")
                return False
            sw = _Switch(conn=conn, since=self._clock())
            self._switches[conn.dpid] = sw
            admit = host is not None and self._admit(sw, host)
            self._signal()
        if replaced is not None:
            replaced.close()
        if admit:
            self._connected(sw)
        else:
            log.info(
                "switch %016x from %s held: its dpid is no registered host's", conn.dpid,
                conn.address,
            )  # fmt: skip
        return True

    def _held(self) -> int:
        return sum(1 for sw in self._switches.values() if sw.connected and not sw.admitted)

    def expire_held(self) -> int:
        """Close connections that waited over ``HOLD_TIMEOUT`` s for admission; how many."""
        now = self._clock()
        with self._lock:
            late = [
                sw
                for sw in self._switches.values()
                if sw.connected and not sw.admitted and now - sw.since > HOLD_TIMEOUT
            ]
            for sw in late:
                del self._switches[sw.conn.dpid]
                self._refuse(
                    sw.conn, f"its dpid is no registered host's after {HOLD_TIMEOUT:.0f} s"
                )
        return len(late)

    def _host_of(self, dpid: int) -> str | None:
        snap = self._snapshot
        if snap is None:
            return None
        host = snap.host_by_dpid(dpid)
        return host.name if host is not None else None

    def _cert_ok(self, conn: SwitchConn, host: str) -> bool:
        return not self._require_cert or conn.peer_name == host

    @staticmethod
    def _cert_reason(conn: SwitchConn, host: str) -> str:
        if conn.peer_name is None:
            return f"no certificate; the dpid is {host}'s"
        return f"its certificate names {conn.peer_name!r}, the dpid is {host}'s"

    def _refuse(self, conn: SwitchConn, reason: str) -> None:
        """Close ``conn`` and report why (called with the lock held)."""
        self.refused += 1
        log.warning("switch %016x from %s refused: %s", conn.dpid, conn.address, reason)
        self._emit("switch.refused", dpid=f"{conn.dpid:016x}", address=conn.address, reason=reason)
        conn.close()

    def _admit(self, sw: _Switch, host: str) -> bool:
        """Mark ``sw`` admitted for ``host`` (lock held); the caller asks for its dump."""
        sw.admitted = True
        sw.host = host
        sw.dumping = True
        return True

    def _connected(self, sw: _Switch) -> None:
        conn = sw.conn
        log.info("switch %016x (%s) connected from %s", conn.dpid, sw.host, conn.address)
        self._emit("switch.connected", dpid=f"{conn.dpid:016x}", host=sw.host, address=conn.address)
        if self._gate is not None and not self._gate.may_write(conn.dpid, conn):
            with self._lock:  # not its master (yet): ``resync`` dumps it once it is
                sw.dumping = False
            return
        conn.request_flow_dump()

    def switch_dump(self, dpid: int, cookies: Iterable[int], more: bool) -> None:
        """Part of a flow dump arrived; the last part makes the switch synced."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or not sw.connected or not sw.dumping:
                return  # not asked for (a held switch, or an unsolicited reply)
            sw.dump.update(cookies)
            too_long = len(sw.dump) > MAX_DUMP_FLOWS
            if too_long:
                sw.dump = set()
                sw.dumping = False
            elif more:
                return
            else:
                sw.installed = {c: None for c in sw.dump}
                sw.dump = set()
                sw.dumping = False
                sw.synced = True
                sw.forget_inflight()
        if too_long:
            log.error("switch %016x (%s): flow dump over %d flows, closing", dpid, sw.host,
                      MAX_DUMP_FLOWS)  # fmt: skip
            sw.conn.close()
            return
        log.info("switch %016x synced: %d flows installed", dpid, len(sw.installed))
        self._set_dirty()

    def switch_drained(self, dpid: int) -> None:
        """A congested switch has read what was queued for it: bring it up to date."""
        log.info("switch %016x: send queue drained", dpid)
        self._set_dirty()

    def switch_disconnected(self, dpid: int, conn: SwitchConn | None = None) -> None:
        """The connection closed (a newer connection of the same dpid is left alone)."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or (conn is not None and sw.conn is not conn):
                return
            sw.connected = False
            sw.synced = False
            sw.dumping = False
            sw.forget_inflight()
            sw.bundles.clear()  # a switch drops its open bundles with the connection
            self._signal()
            if not sw.admitted:
                del self._switches[dpid]
                return
        log.warning("switch %016x (%s) disconnected", dpid, sw.host or "unknown host")
        self._emit("switch.disconnected", dpid=f"{dpid:016x}", host=sw.host)

    def _ours(self, sw: _Switch) -> bool:
        """(Lock held.) Switch ``sw``'s readiness is this controller's to report."""
        return self._gate is None or self._gate.masters(sw.conn.dpid)

    def resync(self, dpid: int, conn: object) -> None:
        """We just became master of ``dpid`` over ``conn``: read its flows again (another
        master may have written), so the next pass sends only the difference."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or sw.conn is not conn or not sw.connected or not sw.admitted:
                return
            sw.synced, sw.dumping, sw.dump = False, True, set()
            sw.forget_inflight()
        log.info("switch %016x (%s): master now, reading its flows", dpid, sw.host)
        sw.conn.request_flow_dump()

    def step_down(self, dpid: int, conn: object) -> None:
        """We are no longer ``dpid``'s master: batches in flight prove nothing (their barrier
        replies must not count as applied) and nothing more is sent until ``resync``."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or sw.conn is not conn:
                return
            sw.synced, sw.dumping, sw.dump = False, False, set()
            sw.forget_inflight()
            self._signal()

    def barrier_reply(self, dpid: int, xid: int) -> None:
        """A barrier came back: everything sent before it is applied (or, for a bundle's
        prepare barrier, every message of the bundle was answered: commit or discard it)."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None:
                return
            bundle = next((b for b in sw.bundles if b.prepare_xid == xid), None)
            if bundle is not None:
                out = self._prepared(sw, bundle)
            elif xid not in sw.pending:
                return
        if bundle is not None:
            self._send_after(sw, out)
            return
        with self._lock:
            rev = sw.pending.pop(xid, None)
            if rev is None:
                return
            sw.applied_rev = max(sw.applied_rev, sw.sent_rev if not sw.pending else rev)
            for bx in list(sw.batches):  # batches before this barrier are done too
                for sent in sw.batches.pop(bx).values():
                    held = sw.held.get(sent.cookie)
                    if held is not None and held.sent:
                        del sw.held[sent.cookie]  # accepted this time
                if bx == xid:
                    break
            self._signal()
            converged, applied, host = not sw.pending, sw.applied_rev, sw.host
        if converged:
            self._emit("switch.converged", dpid=f"{dpid:016x}", host=host, revision=applied)

    def _prepared(self, sw: _Switch, b: _Bundle) -> tuple[bytes, bool]:
        """(Lock held.) ``b``'s messages were all answered: the bytes that commit it (and
        its batch's barrier) or discard it, and whether the switch must be dumped again."""
        if b.failed is None and sw.synced and sw.connected:
            b.committing = True
            data = ofmsg.bundle_ctrl_bytes(b.bundle_id, ofmsg.BUNDLE_COMMIT, b.commit_xid)
            return data + ofmsg.barrier_bytes(b.final_xid), False
        sw.bundles.remove(b)
        self.bundles_discarded += 1
        resync = sw.synced  # not yet asked for a dump (a failure of this bundle)
        log.warning("switch %016x (%s): bundle %#x not committed: %s", sw.conn.dpid, sw.host,
                    b.bundle_id, b.failed or "the switch is not synced")  # fmt: skip
        if resync:
            self._redump(sw)
        if b.refused:
            return b"", resync
        return ofmsg.bundle_ctrl_bytes(b.bundle_id, ofmsg.BUNDLE_DISCARD, sw.xid()), resync

    def _redump(self, sw: _Switch) -> None:
        """(Lock held.) The installed model is no longer known: dump the switch again."""
        sw.synced = False
        sw.dumping = True
        sw.dump = set()
        sw.forget_inflight()
        self._signal()

    def _send_after(self, sw: _Switch, out: tuple[bytes, bool]) -> None:
        data, redump = out
        if data and not sw.conn.send(data):
            log.warning("switch %016x closed while sending", sw.conn.dpid)
            return
        if redump:
            sw.conn.request_flow_dump()

    def bundle_reply(self, dpid: int, xid: int, kind: int) -> None:
        """A bundle control reply (open, commit or discard) came back."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None:
                return
            b = sw.bundle_of(xid)
            if kind != ofmsg.BUNDLE_COMMIT_REPLY or b is None or b.commit_xid != xid:
                return
            sw.bundles.remove(b)
            self.bundles_committed += 1
        log.info("switch %016x (%s): bundle %#x committed (%d messages)", dpid, sw.host,
                 b.bundle_id, len(b.xids))  # fmt: skip

    def _emit(self, kind: str, **data: Any) -> None:
        """Tell ``on_event`` (the event hub) what happened; its failure never reaches a switch."""
        if self._on_event is None:
            return
        try:
            self._on_event(kind, **data)
        except Exception:
            log.exception("event sink failed on %s", kind)

    def switch_error(self, dpid: int, xid: int, text: str) -> None:
        """The switch rejected a message. A rejected add is held back with backoff (never
        resent in a loop); the rest of its batch stands (in a bundle: is sent again in the
        next one). Anything else is logged."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None:
                return
            sw.errors += 1
            bundle = sw.bundle_of(xid)
            outcome = self._bundle_error(sw, bundle, xid, text) if bundle is not None else None
            sent = None
            if outcome is None:
                sent = next((b.pop(xid) for b in sw.batches.values() if xid in b), None)
            if sent is not None:
                sw.installed.pop(sent.cookie, None)
                if sent.replaced is not None:  # the switch kept the flow it would replace
                    sw.installed[sent.replaced[0]] = sent.replaced[1]
                before = sw.held.get(sent.cookie)
                attempts = before.attempts + 1 if before is not None else 1
                delay = min(QUARANTINE_BASE * 2 ** (attempts - 1), QUARANTINE_MAX)
                sw.held[sent.cookie] = _Held(self._clock() + delay, attempts, text)
            host = sw.host
        if outcome == "redump":
            sw.conn.request_flow_dump()
        if sent is None:
            if outcome is None:
                log.error("switch %016x (%s) error for xid %#x: %s", dpid, host, xid, text)
            return
        log.error(
            "switch %016x (%s) rejected flow %016x (%s): held back, retry in %.0f s "
            "(rejection %d)", dpid, host, sent.cookie, text, delay, attempts,
        )  # fmt: skip
        self._emit(
            "switch.flow_rejected", dpid=f"{dpid:016x}", host=host,
            cookie=f"{sent.cookie:016x}", error=text, retry_in=delay, attempts=attempts,
        )  # fmt: skip
        self._wake.set()  # the worker's timer learns the new retry time

    def _bundle_error(self, sw: _Switch, b: _Bundle, xid: int, text: str) -> str | None:
        """(Lock held.) An error about bundle ``b``: None if it refused one of the bundle's
        messages (held back by the caller as without bundles), "done", or "redump" (the
        caller asks for a flow dump)."""
        if xid == b.open_xid:
            b.failed, b.refused, sw.bundles_ok = f"open refused ({text})", True, False
            log.warning("switch %016x (%s) refused a bundle (%s): plain flow-mods from now on",
                        sw.conn.dpid, sw.host, text)  # fmt: skip
            return "done"
        if b.refused:
            return "done"  # a message for the bundle it never opened
        if xid == b.commit_xid:  # nothing of the batch was applied
            b.failed = f"commit failed ({text})"
            if b in sw.bundles:
                sw.bundles.remove(b)
            self.bundles_discarded += 1
            log.warning("switch %016x (%s): bundle %#x commit failed (%s): dumping it again",
                        sw.conn.dpid, sw.host, b.bundle_id, text)  # fmt: skip
            if not sw.synced:
                return "done"
            self._redump(sw)
            return "redump"
        b.failed = b.failed or f"message {xid:#x} refused ({text})"
        return None

    # -- worker ----------------------------------------------------------------------------
    def _next_retry(self) -> float | None:
        """When the earliest held flow may be tried again (None: nothing waits)."""
        with self._lock:
            times = [
                h.until
                for sw in self._switches.values()
                if sw.connected
                for h in sw.held.values()
                if not h.sent
            ]
        return min(times) if times else None

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            wait = self._poll
            retry = self._next_retry()
            if retry is not None:
                wait = max(0.0, min(wait, retry - self._clock()))
            woken = self._wake.wait(wait)
            self._wake.clear()
            if self._stop.is_set():
                break
            self.expire_held()
            with self._lock:
                dirty, self._dirty = self._dirty, False
                have = self._snapshot.revision if self._snapshot else -1
                snap = self._snapshot
            try:
                synced = False
                if dirty or not woken or have < 0:
                    with self._sessions() as session:
                        if dirty or have < 0 or self._load_revision(session) != have:
                            self._timed_pass(self._load_snapshot(session))
                            synced = True
                retry = self._next_retry()
                if not synced and snap is not None and retry is not None:
                    if retry <= self._clock():
                        self._timed_pass(snap)  # held flows whose time came
                if not woken:
                    # Waiting requests mark their own endpoints; this catches the rest, on the
                    # poll tick, so it never contends for the database with a request.
                    self._mark()
            except Exception:
                log.exception("reading intent failed; flows left as they are")
                with self._lock:
                    self._dirty = True
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                self._wake.set()
                continue
            backoff = 0.1

    def _timed_pass(self, snap: Snapshot) -> None:
        """``sync_all``, its duration told to ``on_pass``."""
        start = time.perf_counter()
        self.sync_all(snap)
        if self.on_pass is not None:
            self.on_pass(time.perf_counter() - start)

    def sync_all(self, snap: Snapshot) -> None:
        """One pass: admit held switches whose host is now known, then bring every
        connected, synced switch to ``snap``."""
        self.passes += 1
        admitted: list[_Switch] = []
        by_dpid = {h.dpid: h for h in snap.hosts.values() if h.dpid is not None}
        with self._lock:
            self._snapshot = snap
            for sw in list(self._switches.values()):
                if not sw.connected or sw.admitted or sw.conn.dpid not in by_dpid:
                    continue
                host = by_dpid[sw.conn.dpid].name
                if not self._cert_ok(sw.conn, host):
                    del self._switches[sw.conn.dpid]
                    self._refuse(sw.conn, self._cert_reason(sw.conn, host))
                    continue
                self._admit(sw, host)
                admitted.append(sw)
            todo = [
                sw
                for sw in self._switches.values()
                if sw.connected and sw.synced and not sw.conn.congested()  # drained: a pass
            ]
        for sw in admitted:
            self._connected(sw)
        if not todo:
            return
        idx = index(snap)
        for sw in todo:
            self._sync_switch(sw, snap, idx, by_dpid.get(sw.conn.dpid))

    def _sync_switch(
        self, sw: _Switch, snap: Snapshot, idx: SnapshotIndex, host: Host | None
    ) -> None:
        if host is None:
            return
        desired = desired_flows(snap, host.name, idx)
        with self._lock:
            if sw.host != host.name:  # a wait for this host's switch may be over
                sw.host = host.name
                self._signal()
            if self._gate is not None and not self._gate.may_write(sw.conn.dpid, sw.conn):
                return  # not (or no longer) this switch's confirmed master: write nothing
            if sw.held:
                desired = self._without_held(sw, desired)
            changes = diff(desired, sw.installed)
            if not changes:
                sw.sent_rev = snap.revision
                if not sw.pending:
                    sw.applied_rev = max(sw.applied_rev, snap.revision)
                    self._signal()
                return
            data, barrier_xid, sent = self._encode(sw, changes)
            sw.installed = apply(sw.installed, changes)
            sw.sent_rev = snap.revision
            sw.pending[barrier_xid] = snap.revision
            sw.batches[barrier_xid] = sent
        log.info(
            "switch %016x (%s): rev %d, +%d -%d flows",
            sw.conn.dpid,
            host.name,
            snap.revision,
            len(changes.adds),
            len(changes.deletes),
        )
        for chunk in data:
            if not sw.conn.send(chunk):
                log.warning("switch %016x closed while sending", sw.conn.dpid)
                return

    def _without_held(self, sw: _Switch, desired: frozenset[Flow]) -> frozenset[Flow]:
        """``desired`` less the flows held back (lock held); entries no longer desired go,
        and those whose time came are marked as sent again."""
        now = self._clock()
        wanted = {f.cookie for f in desired}
        for cookie in [c for c in sw.held if c not in wanted]:
            del sw.held[cookie]
        hold = set()
        for cookie, held in sw.held.items():
            if held.until > now:
                hold.add(cookie)
            elif cookie not in sw.installed:
                held.sent = True
        return frozenset(f for f in desired if f.cookie not in hold) if hold else desired

    def _bundled(self, sw: _Switch, changes: Changes, replaces: bool) -> bool:
        """Whether this batch goes as one bundle (see the module docstring)."""
        if self._bundles == "never" or not sw.bundles_ok:
            return False
        if self._bundles == "always":
            return True
        return bool(changes.adds) and (bool(changes.deletes) or replaces)

    def _encode(self, sw: _Switch, changes: Changes) -> tuple[list[bytes], int, dict[int, _Sent]]:
        """(Lock held.) The batch's wire bytes in chunks of about ``SEND_CHUNK``, the xid of
        the barrier that confirms it, and its adds by xid; a bundle is registered on ``sw``."""
        chunks: list[bytes] = []
        buf = bytearray()
        sent: dict[int, _Sent] = {}
        by_key = {f.key(): (c, f) for c, f in sw.installed.items() if f is not None}
        msgs: list[bytes] = []
        for f in changes.adds:
            xid = sw.xid()
            sent[xid] = _Sent(f.cookie, by_key.get(f.key()))
            msgs.append(ofmsg.add_bytes(f, xid))
        msgs.extend(ofmsg.delete_bytes(cookie, sw.xid()) for cookie in changes.deletes)
        bundle = None
        if self._bundled(sw, changes, any(s.replaced for s in sent.values())):
            open_xid = sw.xid()
            xids = frozenset(ofmsg.xid_of(m) for m in msgs)
            buf += ofmsg.bundle_ctrl_bytes(open_xid, ofmsg.BUNDLE_OPEN, open_xid)
            msgs = [ofmsg.bundle_add_bytes(open_xid, m) for m in msgs]
            bundle = _Bundle(open_xid, open_xid, sw.xid(), sw.xid(), sw.xid(), xids)
        for m in msgs:
            buf += m
            if len(buf) >= SEND_CHUNK:
                chunks.append(bytes(buf))
                buf = bytearray()
        if bundle is not None:
            sw.bundles.append(bundle)
            barrier_xid = bundle.final_xid  # sent with the commit
            buf += ofmsg.barrier_bytes(bundle.prepare_xid)
        else:
            barrier_xid = sw.xid()
            buf += ofmsg.barrier_bytes(barrier_xid)
        chunks.append(bytes(buf))
        return chunks, barrier_xid, sent

    def _mark(self) -> None:
        """Record readiness in the database for endpoints whose flows every switch confirmed."""
        with self._lock:
            live = [
                sw for sw in self._switches.values() if sw.connected and sw.host and self._ours(sw)
            ]
            if not live:
                return
            upto = min(sw.applied_rev for sw in live)
            hosts = sorted({sw.host for sw in live if sw.host})
        if upto <= 0 or (upto, hosts) == self._marked:
            return
        with self._sessions() as session:
            self._mark_ready(session, upto, hosts)
            session.commit()
        self._marked = (upto, hosts)
