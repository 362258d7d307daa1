"""Per-switch send queue bounded in bytes, and one echo prober for every switch connection.

os-ken gives each connection a queue of 16 buffers whose ``send`` blocks when full: the
engine's one worker thread then waits on the slowest switch, and every other switch waits
with it. Its socket timeout (5 s) ends a connection whose switch has not read for 5 s, even
one that is only slow to read a large batch: the switch reconnects and is sent its whole
table again. And it probes each switch from a thread of its own.

Here instead (``ofapp.VxDatapath`` puts these under os-ken's Datapath):

- ``SendQueue``: ``put`` never blocks. Over ``high`` bytes queued the switch is *congested*:
  the engine sends it no new batch (``SwitchConn.congested``) until the queue has drained
  under ``low``, when ``on_drained`` tells the engine. Over ``cap`` bytes (a switch that
  stopped reading while flows kept coming) the connection is closed instead; the switch
  reconnects and is resynced from a flow dump, as after any reconnection. The writer
  retries a write that times out while the switch reads slowly; only the prober decides
  that a switch is gone.
- ``Budget``: the sum over every switch's queue. Over ``high`` (64 MiB) every switch counts
  as congested, so no switch gets a new batch, until the sum is under ``low``, when
  ``on_drained`` wakes the engine. Each queue alone stays under 1 MiB before it is congested,
  but one engine pass of a cold fill could otherwise queue every switch's batch at once
  (1,000 switches x about 240 KB), and the controller's peak RSS with it.
- ``Prober``: one thread ticks every ``interval`` s over all connections. Any sign of life
  since the last tick counts (a message received, bytes of ours the switch's TCP has
  acknowledged, bytes it sent that wait unread in our own receive buffer: a controller too
  busy to read is not a dead switch); only a connection idle for a whole tick is sent an
  echo request, and one idle for more than ``misses`` ticks is closed, or for more than
  ``misses * BUSY_FACTOR`` ticks while bytes for it wait in our queue or unacknowledged in
  the kernel's: a switch still reading a large batch is slow, not dead (its echo reply is
  queued behind the batch), and closing it would cost a reconnection and a flow dump.

No os-ken import.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

HIGH_WATER = 1 << 20  # bytes queued over which a switch gets no new batch
LOW_WATER = 256 << 10  # ... until its queue is under this
HARD_CAP = 16 << 20  # bytes queued over which the connection is closed
BUSY_FACTOR = 4  # a switch with bytes waiting for it may stay silent this many times longer
TOTAL_HIGH = 64 << 20  # bytes queued for all switches together over which none gets a batch
TOTAL_LOW = 48 << 20  # ... until the sum is under this


class Budget:
    """Bytes queued for every switch together (``SendQueue``s share one); thread-safe."""

    def __init__(
        self,
        high: int = TOTAL_HIGH,
        low: int = TOTAL_LOW,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        self.high, self.low = high, low
        self.on_drained = on_drained
        self._lock = threading.Lock()
        self.queued = 0
        self.peak = 0  # the most bytes ever queued at once (tests, diagnostics)
        self.over = False  # no switch gets a new batch while True
        self.overs = 0  # times the sum went over ``high``

    def add(self, n: int) -> None:
        with self._lock:
            self.queued += n
            self.peak = max(self.peak, self.queued)
            if not self.over and self.queued > self.high:
                self.over = True
                self.overs += 1

    def sub(self, n: int) -> None:
        drained = False
        with self._lock:
            self.queued -= n
            if self.over and self.queued <= self.low:
                self.over = False
                drained = True
        if drained and self.on_drained is not None:
            self.on_drained()


class SendQueue:
    """The bytes waiting to be written to one switch; thread-safe."""

    def __init__(
        self,
        high: int = HIGH_WATER,
        low: int = LOW_WATER,
        cap: int = HARD_CAP,
        on_drained: Callable[[], None] | None = None,
        budget: Budget | None = None,
    ) -> None:
        self.high, self.low, self.cap = high, low, cap
        self.on_drained = on_drained
        self.budget = budget
        self._cond = threading.Condition()
        self._bufs: deque[tuple[bytes, bool]] = deque()
        self.queued = 0  # bytes put and not yet written
        self.written = 0  # bytes written to the socket so far
        self.peak = 0  # the most bytes ever queued at once
        self.congested = False
        self.closed = False

    def put(self, data: bytes, close_after: bool = False) -> str:
        """Queue ``data``: "ok", "closed" (nothing more is sent) or "overflow" (over
        ``cap``: not queued; the caller closes the connection)."""
        with self._cond:
            if self.closed:
                return "closed"
            if self.queued + len(data) > self.cap:
                return "overflow"
            self._bufs.append((data, close_after))
            self.queued += len(data)
            self.peak = max(self.peak, self.queued)
            if self.queued > self.high:
                self.congested = True
            self._cond.notify()
        if self.budget is not None:
            self.budget.add(len(data))
        return "ok"

    def blocked(self) -> bool:
        """No new batch now: this queue is congested, or the sum of all queues is over."""
        return self.congested or (self.budget is not None and self.budget.over)

    def get(self) -> tuple[bytes, bool] | None:
        """The next buffer to write (blocks); None once closed."""
        with self._cond:
            while not self._bufs and not self.closed:
                self._cond.wait()
            if self.closed:
                return None
            return self._bufs.popleft()

    def done(self, n: int) -> None:
        """``n`` bytes of a buffer from ``get`` were written."""
        drained = False
        with self._cond:
            self.written += n  # counted even after a close: these bytes did go out
            if self.closed:  # ``close`` gave the budget back already
                return
            self.queued -= n
            if self.congested and self.queued <= self.low:
                self.congested = False
                drained = True
        if self.budget is not None:
            self.budget.sub(n)
        if drained and self.on_drained is not None:
            self.on_drained()

    def close(self) -> None:
        """Drop what is queued; ``get`` returns None, ``put`` "closed"."""
        with self._cond:
            gone = 0 if self.closed else self.queued
            self.closed = True
            self._bufs.clear()
            self.queued = 0
            self._cond.notify_all()
        if gone and self.budget is not None:
            self.budget.sub(gone)


class Probed(Protocol):
    """A connection the prober watches."""

    idle: int  # ticks in a row without a sign of life (the prober's own count)

    def activity(self) -> int:
        """A number that changes whenever the switch shows life (messages, bytes read)."""

    def unread(self) -> int:
        """Bytes the switch sent that are still waiting in our receive buffer."""

    def backlogged(self) -> bool:
        """Bytes for the switch wait in our queue or unacknowledged in the kernel's."""

    def send_echo(self) -> None:
        """Queue an echo request."""

    def expire(self, reason: str) -> None:
        """Close the connection: the switch is gone."""


class Prober:
    """One thread probing every connection (``add``/``discard``)."""

    def __init__(self, interval: float = 2.0, misses: int = 3) -> None:
        self.interval, self.misses = interval, misses
        self._lock = threading.Lock()
        self._conns: dict[int, tuple[Probed, list[int]]] = {}  # id -> (conn, [last activity])
        self._thread: threading.Thread | None = None
        self.echoes = 0
        self.expired = 0

    def add(self, conn: Probed) -> None:
        with self._lock:
            conn.idle = 0
            self._conns[id(conn)] = (conn, [conn.activity()])
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="of-prober", daemon=True)
                self._thread.start()

    def discard(self, conn: Probed) -> None:
        with self._lock:
            self._conns.pop(id(conn), None)

    def __len__(self) -> int:
        with self._lock:
            return len(self._conns)

    def _run(self) -> None:
        while True:
            time.sleep(self.interval)
            try:
                self.tick()
            except Exception:
                log.exception("echo prober tick failed")

    def tick(self) -> None:
        """One probe period over every connection."""
        with self._lock:
            conns = list(self._conns.values())
        for conn, last in conns:
            now = conn.activity()
            if now != last[0] or conn.unread() > 0:
                last[0] = now
                conn.idle = 0
                continue
            conn.idle += 1
            limit = self.misses * (BUSY_FACTOR if conn.backlogged() else 1)
            if conn.idle > limit:
                self.discard(conn)
                self.expired += 1
                conn.expire(f"no sign of life for {conn.idle * self.interval:.0f} s")
            else:
                self.echoes += 1
                conn.send_echo()
