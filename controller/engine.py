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
deletes only stale flows. A switch whose bridge is not (yet) a known host is never touched,
and a failed database read changes nothing.

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


class SwitchConn(Protocol):
    """A live OpenFlow connection to one switch."""

    dpid: int
    address: str

    def send(self, data: bytes) -> bool:
        """Queue raw OpenFlow bytes; False if the connection is closing."""

    def request_flow_dump(self) -> None:
        """Ask the switch for all its flows (answered through ``Engine.switch_dump``)."""


@dataclass
class _Switch:
    conn: SwitchConn
    connected: bool = True
    synced: bool = False
    dump: set[int] = field(default_factory=set)
    installed: dict[int, Flow | None] = field(default_factory=dict)
    host: str | None = None
    sent_rev: int = 0
    applied_rev: int = 0
    pending: dict[int, int] = field(default_factory=dict)
    next_xid: int = FIRST_XID
    errors: int = 0

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
    ) -> None:
        self._sessions = session_factory
        self._load_snapshot = load_snapshot
        self._load_revision = load_revision
        self._mark_ready = mark_ready
        self._poll = poll_interval
        self._on_event = on_event
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._switches: dict[int, _Switch] = {}
        self._waiters: set[_Waiter] = set()
        self._snapshot: Snapshot | None = None
        self._marked: tuple[int, list[str]] = (-1, [])
        self._dirty = True
        self._thread: threading.Thread | None = None
        self.passes = 0

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
        """Status of every switch seen since start."""
        with self._lock:
            return [
                SwitchStatus(
                    dpid=dpid,
                    connected=sw.connected,
                    address=sw.conn.address,
                    applied_revision=sw.applied_rev,
                    flow_count=len(sw.installed),
                    host=sw.host,
                )
                for dpid, sw in sorted(self._switches.items())
            ]

    def installed_cookies(self, dpid: int) -> set[int]:
        """The cookies the engine believes switch ``dpid`` holds (tests, diagnostics)."""
        with self._lock:
            sw = self._switches.get(dpid)
            return set(sw.installed) if sw else set()

    def _applied(self, revision: int, hosts: Collection[str]) -> bool:
        live = [sw for sw in self._switches.values() if sw.connected and sw.host is not None]
        if any(sw.applied_rev < revision for sw in live):
            return False
        present = {sw.host for sw in live}
        return all(h in present for h in hosts)

    # -- switch events (called from os-ken's threads) --------------------------------------
    def switch_connected(self, conn: SwitchConn) -> None:
        """A switch completed the handshake: forget what we knew and dump its flows."""
        with self._lock:
            old = self._switches.get(conn.dpid)
            host = old.host if old else None
            self._switches[conn.dpid] = _Switch(conn=conn, host=host)
            self._signal()
        log.info("switch %016x connected from %s", conn.dpid, conn.address)
        self._emit("switch.connected", dpid=f"{conn.dpid:016x}", host=host, address=conn.address)
        conn.request_flow_dump()

    def switch_dump(self, dpid: int, cookies: Iterable[int], more: bool) -> None:
        """Part of a flow dump arrived; the last part makes the switch synced."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or not sw.connected:
                return
            sw.dump.update(cookies)
            if more:
                return
            sw.installed = {c: None for c in sw.dump}
            sw.dump = set()
            sw.synced = True
            sw.pending.clear()
        log.info("switch %016x synced: %d flows installed", dpid, len(sw.installed))
        self._set_dirty()

    def switch_disconnected(self, dpid: int, conn: SwitchConn | None = None) -> None:
        """The connection closed (a newer connection of the same dpid is left alone)."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or (conn is not None and sw.conn is not conn):
                return
            sw.connected = False
            sw.synced = False
            sw.pending.clear()
            self._signal()
        log.warning("switch %016x (%s) disconnected", dpid, sw.host or "unknown host")
        self._emit("switch.disconnected", dpid=f"{dpid:016x}", host=sw.host)

    def barrier_reply(self, dpid: int, xid: int) -> None:
        """A barrier came back: everything sent before it is applied."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None or xid not in sw.pending:
                return
            rev = sw.pending.pop(xid)
            sw.applied_rev = max(sw.applied_rev, sw.sent_rev if not sw.pending else rev)
            self._signal()
            converged, applied, host = not sw.pending, sw.applied_rev, sw.host
        if converged:
            self._emit("switch.converged", dpid=f"{dpid:016x}", host=host, revision=applied)

    def _emit(self, kind: str, **data: Any) -> None:
        """Tell ``on_event`` (the event hub) what happened; its failure never reaches a switch."""
        if self._on_event is None:
            return
        try:
            self._on_event(kind, **data)
        except Exception:
            log.exception("event sink failed on %s", kind)

    def switch_error(self, dpid: int, xid: int, text: str) -> None:
        """The switch rejected a message: log it and resync the switch from a fresh dump."""
        with self._lock:
            sw = self._switches.get(dpid)
            if sw is None:
                return
            sw.errors += 1
            sw.synced = False
            sw.pending.clear()
            conn = sw.conn
        log.error("switch %016x rejected xid %#x: %s; resyncing", dpid, xid, text)
        conn.request_flow_dump()

    # -- worker ----------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            woken = self._wake.wait(self._poll)
            self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                dirty, self._dirty = self._dirty, False
                have = self._snapshot.revision if self._snapshot else -1
            try:
                if dirty or not woken or have < 0:
                    with self._sessions() as session:
                        if dirty or have < 0 or self._load_revision(session) != have:
                            self.sync_all(self._load_snapshot(session))
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

    def sync_all(self, snap: Snapshot) -> None:
        """One pass: bring every connected, synced switch to ``snap``."""
        self.passes += 1
        with self._lock:
            self._snapshot = snap
            todo = [sw for sw in self._switches.values() if sw.connected and sw.synced]
        if not todo:
            return
        idx = index(snap)
        by_dpid = {h.dpid: h for h in snap.hosts.values() if h.dpid is not None}
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
            changes = diff(desired, sw.installed)
            if not changes:
                sw.sent_rev = snap.revision
                if not sw.pending:
                    sw.applied_rev = max(sw.applied_rev, snap.revision)
                    self._signal()
                return
            data, barrier_xid = self._encode(sw, changes)
            sw.installed = apply(sw.installed, changes)
            sw.sent_rev = snap.revision
            sw.pending[barrier_xid] = snap.revision
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

    @staticmethod
    def _encode(sw: _Switch, changes: Changes) -> tuple[list[bytes], int]:
        chunks: list[bytes] = []
        buf = bytearray()
        for f in changes.adds:
            buf += ofmsg.add_bytes(f, sw.xid())
            if len(buf) >= SEND_CHUNK:
                chunks.append(bytes(buf))
                buf = bytearray()
        for cookie in changes.deletes:
            buf += ofmsg.delete_bytes(cookie, sw.xid())
            if len(buf) >= SEND_CHUNK:
                chunks.append(bytes(buf))
                buf = bytearray()
        barrier_xid = sw.xid()
        buf += ofmsg.barrier_bytes(barrier_xid)
        chunks.append(bytes(buf))
        return chunks, barrier_xid

    def _mark(self) -> None:
        """Record readiness in the database for endpoints whose flows every switch confirmed."""
        with self._lock:
            live = [sw for sw in self._switches.values() if sw.connected and sw.host]
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
