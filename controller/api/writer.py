"""Group commit: one writer thread runs the API's endpoint writes, many per transaction.

A write request hands its work, a function of a session, to ``Writer.run`` and awaits the
answer in the event loop (no thread held while it waits). The writer thread takes the first
waiting write and every other one already queued, up to ``batch_max``, runs each inside its
own SAVEPOINT, and commits them together. Each write is answered only after the commit of
the transaction that holds it; a write that fails (a conflict, an unknown name, a stale
``if_revision``) is rolled back to its savepoint and answered with its own error, and the
others commit. If the transaction itself fails (commit refused, the database gone), nothing
of it committed and each write of it is run again alone, so one bad write cannot fail its
neighbours.

Why: every write was its own transaction on FastAPI's thread pool; sixteen writers queued on
SQLite's write lock (its busy handler sleeps between tries: a p99 near a second) and each paid
a commit. One writer with a queue has no lock waits and one commit per batch
(docs/benchmarks.md, "Endpoint churn through the API").

Backpressure: the queue is bounded (``queue_max``). A write offered to a full queue is refused
at once with ``Busy`` (503 with ``Retry-After``), never queued without bound.

After the commit the writer notifies the flow sync once with the batch's highest revision and
publishes each write's change notes (``controller.db.changes``) with its principal.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from controller.auth import Principal
from controller.db import changes
from controller.errors import Busy
from controller.events import EventHub
from controller.sync import FlowSync

log = logging.getLogger(__name__)

T = TypeVar("T")

# A write: given the batch's session, do the work and return (answer, revision or None).
WriteFn = Callable[[Session], tuple[T, int | None]]


@dataclass
class _Write:
    fn: WriteFn[Any]
    by: Principal | None
    future: Future[Any] = field(default_factory=Future)


@dataclass
class _Done:
    write: _Write
    answer: Any = None
    revision: int | None = None
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: BaseException | None = None


_STOP = object()


class Writer:
    """The single writer of the API's endpoint writes (see the module docstring)."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        sync: FlowSync,
        events: EventHub | None,
        batch_max: int = 64,
        queue_max: int = 1024,
        retry_after: int = 1,
    ) -> None:
        self._factory = factory
        self._sync = sync
        self._events = events
        self.batch_max = max(1, batch_max)
        self.queue_max = queue_max
        self.retry_after = retry_after
        self._queue: queue.Queue[object] = queue.Queue(maxsize=queue_max)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._closed = False
        self.batches = 0  # transactions committed (for tests and benchmarks)
        self.writes = 0  # writes answered

    def submit(self, fn: WriteFn[T], by: Principal | None = None) -> Future[T]:
        """Queue ``fn``; its future holds the answer once committed, or the write's error.
        ``Busy`` at once when the queue is full or the writer is closed."""
        write = _Write(fn, by)
        with self._lock:
            if self._closed:
                raise Busy("the controller is shutting down: retry", self.retry_after)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="vx-writer", daemon=True)
                self._thread.start()
            try:
                self._queue.put_nowait(write)
            except queue.Full:
                raise Busy(
                    f"the write queue is full ({self.queue_max} writes waiting): retry after "
                    f"{self.retry_after} s",
                    self.retry_after,
                ) from None
        return write.future

    async def run(self, fn: WriteFn[T], by: Principal | None = None) -> T:
        """``submit`` and await the answer in the event loop."""
        return await asyncio.wrap_future(self.submit(fn, by))

    def close(self, timeout: float = 10.0) -> None:
        """Refuse new writes, finish those queued, stop the thread."""
        with self._lock:
            self._closed = True
            thread = self._thread
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is _STOP:
                return
            batch = [first]
            stop = False
            while len(batch) < self.batch_max:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._run_batch([w for w in batch if isinstance(w, _Write)])
            if stop:
                return

    def _run_batch(self, batch: list[_Write]) -> None:
        try:
            done = self._transaction(batch)
        except Exception as exc:  # nothing of the batch committed
            if len(batch) > 1:
                log.warning("group commit of %d writes failed (%s): each alone", len(batch), exc)
                for write in batch:
                    self._run_batch([write])
                return
            done = [_Done(batch[0], error=exc)]
        else:
            self.batches += 1
        self._answer(done)

    def _transaction(self, batch: list[_Write]) -> list[_Done]:
        done: list[_Done] = []
        with self._factory() as session:
            for write in batch:
                try:
                    with session.begin_nested():
                        answer, revision = write.fn(session)
                except Exception as exc:
                    changes.take(session)  # the notes of the rolled-back write
                    done.append(_Done(write, error=exc))
                else:
                    done.append(_Done(write, answer, revision, changes.take(session)))
            session.commit()
        return done

    def _answer(self, done: list[_Done]) -> None:
        revisions = [d.revision for d in done if d.error is None and d.revision is not None]
        if revisions:
            self._sync.notify(max(revisions))
        for d in done:
            self.writes += 1
            if d.error is not None:
                d.write.future.set_exception(d.error)
                continue
            if self._events is not None and d.notes:
                by = d.write.by
                notes = d.notes if by is None else [(k, {**v, "by": by.name}) for k, v in d.notes]
                self._events.publish_all(notes)
            d.write.future.set_result(d.answer)
