"""The event hub: what just changed, for the dashboard's live log and `vxplane events`.

Publishers are the API routes (their writes' facts), the flow engine (switch connected,
disconnected, converged) and the host watch (heartbeat went stale, came back). They may run
on any thread. The hub keeps the last ``capacity`` events in a ring buffer with ids that
increase by one per event, so a client that reconnects with ``Last-Event-ID`` gets what it
missed.

Two modes. In memory (no ``store``: tests, tools): ids are the process's own, restart at 1
with it, and ``epoch`` is random per process; a client seeing a new epoch reloads its state.
Durable (``store``, the controller): ids come from the cluster-wide log in the database
(``controller.db.events``): a write's events are appended in the write's own transaction
(``stage``, then ``committed`` after the commit), the engine's and the host watch's go
through an outbox flushed in small transactions of their own, and one tail thread reads
every controller's events back in id order into the ring (woken by this process's commits,
by other controllers' revision notifications, else every ``poll`` seconds). ``epoch`` is the
cluster id. So every controller of a cluster serves the same ids for the same events: a
dashboard that fails over to another controller resumes with ``Last-Event-ID``, missing
nothing and seeing nothing twice, and a controller restart does not reset the ids.

Subscribers are asyncio tasks (the SSE responses): the hub only wakes them (through
``call_soon_threadsafe``) and they read the ring themselves, so a slow client never blocks a
publisher and never grows a queue; one that falls more than ``capacity`` events behind is
told to resynchronise. ``subscribe`` takes a limit (``Settings.max_event_subscribers``): past
it a new stream is refused with ``Busy`` (503 and Retry-After), so open streams cannot pile up.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from controller.errors import Busy

log = logging.getLogger(__name__)

DEFAULT_CAPACITY = 2000
TAIL_POLL = 0.5  # s between reads of the log when nothing woke the tail
TAIL_BATCH = 1000  # events per read of the log
SUBSCRIBER_RETRY_AFTER = 10  # seconds a refused stream client is told to wait

# Every event type, what its ``data`` holds, and its one-line summary.
EVENT_TYPES: dict[str, str] = {
    "network.created": "network, vni, subnet, external, subnet6 (null: IPv4 only)",
    "network.deleted": "network",
    "endpoint.created": "network, endpoint, ip (reserved, on no host yet)",
    "endpoint.bound": "network, endpoint, ip, host, ofport (plugged in on a host)",
    "endpoint.moved": "network, endpoint, ip, host, from_host, ofport",
    "endpoint.unbound": "network, endpoint, ip, host (the host it left)",
    "endpoint.deleted": "network, endpoint, ip, host (if it was bound)",
    "policy.created": "network, policy",
    "policy.deleted": "network, policy",
    "host.registered": "host, underlay_ip (new host)",
    "host.updated": "host, underlay_ip, dpid (its dataplane identity changed)",
    "host.lost": "host, last_seen (heartbeat older than host_dead_after)",
    "host.alive": "host, last_seen (heartbeat fresh again)",
    "host.deleted": "host, released (endpoints made reserved)",
    "switch.connected": "dpid, host, address",
    "switch.disconnected": "dpid, host",
    "switch.converged": "dpid, host, revision (every change sent was confirmed)",
    "switch.refused": "dpid, address, reason (connection closed: unknown certificate, or the "
    "dpid is already connected)",
    "switch.flow_rejected": "dpid, host, cookie, error, retry_in, attempts (the flow is held "
    "back and retried with backoff)",
    "engine.audit_mismatch": "revision, differences (the flow engine's in-memory intent "
    "differed from a full read of the database; the full read was adopted)",
}


@dataclass(frozen=True, slots=True)
class Event:
    """One thing that happened; ``data`` holds the type's fields (see ``EVENT_TYPES``)."""

    id: int
    time: datetime
    type: str
    summary: str
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (what the API and the stream send)."""
        return {
            "id": self.id,
            "time": self.time.isoformat(),
            "type": self.type,
            "summary": self.summary,
            "data": self.data,
        }


def summarize(kind: str, data: dict[str, Any]) -> str:
    """A short human sentence for an event ("blue/web moved from h1 to h2")."""
    ep = f"{data.get('network')}/{data.get('endpoint')}"
    host = data.get("host")
    match kind:
        case "network.created":
            six = f" {data['subnet6']}" if data.get("subnet6") else ""
            return (
                f"network {data.get('network')} created: {data.get('subnet')}{six} "
                f"vni {data.get('vni')}"
            )
        case "network.deleted":
            return f"network {data.get('network')} deleted"
        case "endpoint.created":
            return f"endpoint {ep} reserved {data.get('ip')}"
        case "endpoint.bound":
            return f"endpoint {ep} ({data.get('ip')}) added on {host}"
        case "endpoint.moved":
            return f"endpoint {ep} ({data.get('ip')}) moved from {data.get('from_host')} to {host}"
        case "endpoint.unbound":
            return f"endpoint {ep} ({data.get('ip')}) removed from {host}"
        case "endpoint.deleted":
            return f"endpoint {ep} ({data.get('ip')}) deleted"
        case "policy.created":
            return f"policy {data.get('policy')} of network {data.get('network')} created"
        case "policy.deleted":
            return f"policy {data.get('policy')} of network {data.get('network')} deleted"
        case "host.registered":
            return f"host {host} registered ({data.get('underlay_ip')})"
        case "host.updated":
            return f"host {host} re-registered with a new identity ({data.get('underlay_ip')})"
        case "host.lost":
            return f"host {host} lost: no heartbeat"
        case "host.alive":
            return f"host {host} is back"
        case "host.deleted":
            return f"host {host} deleted"
        case "switch.connected":
            return f"switch of {host or 'unknown host'} connected from {data.get('address')}"
        case "switch.disconnected":
            return f"switch of {host or 'unknown host'} disconnected"
        case "switch.converged":
            return (
                f"switch of {host or 'unknown host'} converged at revision {data.get('revision')}"
            )
        case "switch.refused":
            return (
                f"switch {data.get('dpid')} from {data.get('address')} refused: "
                f"{data.get('reason')}"
            )
        case "switch.flow_rejected":
            return (
                f"switch of {host or 'unknown host'} rejected flow {data.get('cookie')} "
                f"({data.get('error')}); retry in {data.get('retry_in')} s"
            )
        case "engine.audit_mismatch":
            found = data.get("differences") or []
            return f"flow engine audit at revision {data.get('revision')}: {'; '.join(found)}"
    return kind


Staged = tuple[datetime, str, str, dict[str, Any]]  # time, type, summary, data


class EventStore(Protocol):
    """The cluster-wide log (``controller.db.events.DbEventStore``)."""

    def epoch(self) -> str:
        """The cluster's id."""

    def append_in(self, session: Any, events: Sequence[Staged]) -> None:
        """Append ``events`` in the caller's transaction (committed by the caller)."""

    def append(self, events: Sequence[Staged]) -> None:
        """Append ``events`` in a transaction of its own."""

    def read_after(self, after: int, limit: int) -> list[Event]:
        """Events with id > ``after``, oldest first, at most ``limit``."""

    def last_id(self) -> int:
        """The newest id committed."""


class _Subscriber:
    """An asyncio waiter woken from any thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, owner: str | None = None) -> None:
        self.loop = loop
        self.owner = owner
        self.ready = asyncio.Event()

    def wake(self) -> None:
        try:
            self.loop.call_soon_threadsafe(self.ready.set)
        except RuntimeError:  # the loop is closed: the subscriber is gone
            pass


class EventHub:
    """Bounded ring buffer of recent events plus asyncio subscribers; thread-safe. With a
    ``store``, durable and cluster-wide (module docstring): call ``start`` and ``stop``."""

    def __init__(
        self,
        capacity: int = DEFAULT_CAPACITY,
        store: EventStore | None = None,
        origin: str | None = None,
        poll: float = TAIL_POLL,
    ) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.epoch = secrets.token_hex(4)
        self._ring: deque[Event] = deque(maxlen=capacity)
        self._lock = threading.Lock()
        self._last_id = 0
        self._subscribers: set[_Subscriber] = set()
        self._store = store
        self._origin = origin  # stamped on this process's own observations (``controller``)
        self._poll = poll
        self._outbox: deque[Staged] = deque(maxlen=capacity)  # own events not yet appended
        self._tail_lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing = False
        self.dropped = 0  # own events lost: the outbox overflowed while the log was away

    @property
    def durable(self) -> bool:
        """Events go through the database's cluster-wide log."""
        return self._store is not None

    def start(self) -> None:
        """Durable: read the cluster's epoch and newest events, start the tail thread."""
        if self._store is None:
            return
        self.epoch = self._store.epoch()
        newest = self._store.last_id()
        capacity = self._ring.maxlen or DEFAULT_CAPACITY
        with self._lock:
            self._last_id = max(0, newest - capacity)
        self.catch_up()
        with self._lock:
            self._last_id = max(self._last_id, newest)
        self._thread = threading.Thread(target=self._run, name="vxplane-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the tail thread after a last flush of the outbox."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def poke(self) -> None:
        """Something was appended to the log (here or by another controller): read it now."""
        self._wake.set()

    @property
    def last_id(self) -> int:
        """The id of the newest event (0 before the first)."""
        with self._lock:
            return self._last_id

    def publish(self, kind: str, **data: Any) -> Event | None:
        """Record an event of this process and wake every subscriber (durable: queue it for
        the log; the tail brings it back with its id). Never raises for a subscriber's sake."""
        clean = {k: v for k, v in data.items() if v is not None}
        if self._store is not None:
            if self._origin is not None:
                clean.setdefault("controller", self._origin)
            with self._lock:
                if len(self._outbox) == self._outbox.maxlen:
                    self.dropped += 1
                self._outbox.append((datetime.now(UTC), kind, summarize(kind, clean), clean))
            self._wake.set()
            return None
        with self._lock:
            self._last_id += 1
            event = Event(self._last_id, datetime.now(UTC), kind, summarize(kind, clean), clean)
            self._ring.append(event)
            subscribers = list(self._subscribers)
        for sub in subscribers:
            sub.wake()
        log.debug("event %d %s", event.id, event.summary)
        return event

    def publish_all(self, events: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Publish ``(type, data)`` pairs in order."""
        for kind, data in events:
            self.publish(kind, **data)

    def stage(self, session: Any, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """Before a write's commit: durable, append its events in its transaction (so they
        exist if and only if it commits); in memory nothing (``committed`` publishes)."""
        if self._store is None or not events:
            return
        now = datetime.now(UTC)
        staged = []
        for kind, data in events:
            clean = {k: v for k, v in data.items() if v is not None}
            staged.append((now, kind, summarize(kind, clean), clean))
        self._store.append_in(session, staged)

    def committed(self, events: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """After a write's commit: in memory, publish its events; durable, read the log now."""
        if self._store is None:
            self.publish_all(events)
        elif events:
            self._wake.set()

    def catch_up(self) -> None:
        """Durable: read what the log holds after the newest event known into the ring, and
        wake the subscribers (the tail thread, and a stream asked for an id not seen yet)."""
        store = self._store
        if store is None:
            return
        with self._tail_lock:
            while True:
                events = store.read_after(self.last_id, TAIL_BATCH)
                if not events:
                    return
                with self._lock:
                    self._ring.extend(events)
                    self._last_id = events[-1].id
                    subscribers = list(self._subscribers)
                for sub in subscribers:
                    sub.wake()
                if len(events) < TAIL_BATCH:
                    return

    def _flush(self) -> None:
        """Append the outbox in one transaction (put back in front if that fails)."""
        assert self._store is not None
        with self._lock:
            batch = list(self._outbox)
            self._outbox.clear()
        if not batch:
            return
        try:
            self._store.append(batch)
        except Exception:
            with self._lock:
                room = (self._outbox.maxlen or 0) - len(self._outbox)
                keep = batch[-room:] if room > 0 else []
                self.dropped += len(batch) - len(keep)
                self._outbox.extendleft(reversed(keep))
            raise

    def _run(self) -> None:
        while True:
            self._wake.wait(self._poll)
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                self._flush()
                self.catch_up()
                if self._failing:
                    log.info("event log readable again")
                self._failing = False
            except Exception as exc:  # the database is away: try again at the next wake
                if not self._failing:
                    log.warning("event log unavailable (%s): own events kept in memory", exc)
                self._failing = True
            if stopping:
                return

    def since(self, after: int, limit: int | None = None) -> tuple[list[Event], bool]:
        """Events with id > ``after`` (oldest first, at most ``limit``, the newest ones kept)
        and whether some were already dropped from the ring (the reader missed events)."""
        with self._lock:
            ring = list(self._ring)
            last = self._last_id
        after = max(after, 0)
        events = [e for e in ring if e.id > after]
        first_kept = ring[0].id if ring else last + 1
        missed = after < last and after + 1 < first_kept
        if limit is not None and len(events) > limit:
            events = events[-limit:] if limit > 0 else []
        return events, missed

    def recent(self, limit: int = 100) -> list[Event]:
        """The newest ``limit`` events, oldest first."""
        return self.since(0, limit)[0]

    def subscribe(
        self,
        limit: int | None = None,
        owner: str | None = None,
        owner_limit: int | None = None,
    ) -> _Subscriber:
        """A waiter for the running event loop; ``unsubscribe`` it when done. ``Busy`` if
        ``limit`` subscribers are already open, or ``owner_limit`` of ``owner``'s (one
        credential may not take every stream)."""
        sub = _Subscriber(asyncio.get_running_loop(), owner)
        with self._lock:
            if limit is not None and len(self._subscribers) >= limit:
                raise Busy(
                    f"too many event streams open ({limit}, the most this controller serves): "
                    "close one or retry later",
                    retry_after=SUBSCRIBER_RETRY_AFTER,
                )
            if owner is not None and owner_limit is not None:
                mine = sum(1 for other in self._subscribers if other.owner == owner)
                if mine >= owner_limit:
                    raise Busy(
                        f"this token already has {mine} event streams open (at most "
                        f"{owner_limit} per token): close one or retry later",
                        retry_after=SUBSCRIBER_RETRY_AFTER,
                    )
            self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: _Subscriber) -> None:
        """Stop waking ``sub``."""
        with self._lock:
            self._subscribers.discard(sub)

    @property
    def subscribers(self) -> int:
        """How many streams are open."""
        with self._lock:
            return len(self._subscribers)
