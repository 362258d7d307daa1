"""Group commit: one writer runs the API's endpoint writes, many per transaction.

A write request hands its work, a function of a session, to ``Writer.run`` and awaits the
answer in the event loop (no thread held while it waits). The writer, a task of the event
loop, takes the first waiting write and every other one already queued, up to ``batch_max``,
and runs them in its one worker thread, each inside its own SAVEPOINT, committed together (a
write alone in its transaction runs without one: its failure rolls the transaction back).
The queue and the answers stay in the event loop: one thread handoff per batch, not per write
(per-write handoffs, a thread-safe queue and a future per request crossing threads, were about
a fifth of the controller's CPU under churn, measured with py-spy). Each write is answered
only after the commit of the transaction that holds it; a write that fails (a conflict, an
unknown name, a stale ``if_revision``) is rolled back to its savepoint and answered with its
own error, and the others commit. If the transaction itself fails (commit refused, the
database gone), nothing of it committed and each write of it is run again alone, so one bad
write cannot fail its neighbours.

Why: every write was its own transaction on FastAPI's thread pool; sixteen writers queued on
SQLite's write lock (its busy handler sleeps between tries: a p99 near a second) and each paid
a commit. One writer with a queue has no lock waits and one commit per batch
(docs/benchmarks.md, "Endpoint churn through the API").

Workers: with ``workers`` > 1 that many transactions run side by side, each in its own
thread (PostgreSQL: its round trips overlap). Use it with ``batch_max`` 1 only: two
transactions of several writes each hold the revision row from their first write to their
commit and lock endpoint rows in request order, so they can deadlock. That is the PostgreSQL
default (16 workers of one write each): measured, the single writer made PostgreSQL slower
(docs/benchmarks.md), since a PostgreSQL write is mostly waiting for the server.

Backpressure: the queue is bounded (``queue_max``). A write offered to a full queue is refused
at once with ``Busy`` (503 with ``Retry-After``), never queued without bound.

The change notes (``controller.db.changes``) of each write, with its principal, go to a
durable event hub in the batch's transaction (``EventHub.stage``); after the commit the writer
notifies the flow sync once with the batch's highest revision and tells the hub
(``committed``: it publishes them, in memory, or reads the log).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
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
    future: asyncio.Future[Any]


@dataclass
class _Done:
    write: _Write
    answer: Any = None
    revision: int | None = None
    notes: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    error: BaseException | None = None


class Writer:
    """The single writer of the API's endpoint writes (see the module docstring). Its
    methods are called in the event loop."""

    def __init__(
        self,
        factory: sessionmaker[Session],
        sync: FlowSync,
        events: EventHub | None,
        batch_max: int = 64,
        queue_max: int = 1024,
        retry_after: int = 1,
        workers: int = 1,
    ) -> None:
        self._factory = factory
        self._sync = sync
        self._events = events
        self.batch_max = max(1, batch_max)
        self.queue_max = queue_max
        self.retry_after = retry_after
        self._queue: asyncio.Queue[_Write] | None = None
        self._task: asyncio.Task[None] | None = None
        self.workers = max(1, workers)
        self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="vx-writer")
        self._closed = False
        self._home: asyncio.AbstractEventLoop | None = None
        self.batches = 0  # transactions committed (for tests and benchmarks)
        self.writes = 0  # writes answered

    def submit(self, fn: WriteFn[T], by: Principal | None = None) -> asyncio.Future[T]:
        """Queue ``fn`` (call in the event loop); its future holds the answer once committed,
        or the write's error. ``Busy`` at once when the queue is full or the writer closed."""
        if self._closed:
            raise Busy("the controller is shutting down: retry", self.retry_after)
        loop = asyncio.get_running_loop()
        task = self._task
        if self._queue is None or task is None or task.done() or task.get_loop() is not loop:
            # first use, or another event loop than before (an ASGI test client may run
            # each request in its own loop): a queue and a task of this loop
            self._queue = asyncio.Queue(maxsize=self.queue_max)
            self._task = loop.create_task(self._loop(self._queue))
        future: asyncio.Future[T] = loop.create_future()
        try:
            self._queue.put_nowait(_Write(fn, by, future))
        except asyncio.QueueFull:
            raise Busy(
                f"the write queue is full ({self.queue_max} writes waiting): retry after "
                f"{self.retry_after} s",
                self.retry_after,
            ) from None
        return future

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the writer lives in (the app's lifespan), for ``submit_threadsafe``."""
        self._home = loop

    def submit_threadsafe(self, fn: WriteFn[Any]) -> bool:
        """From another thread (the flow engine's ready marks): queue ``fn`` with the next
        batch, fire and forget; dropped when the queue is full. False when the writer has no
        loop (not started, or closed): then the caller writes itself."""
        loop = self._home
        if loop is None or self._closed or loop.is_closed():
            return False

        def submit() -> None:
            try:
                self.submit(fn).add_done_callback(_quiet)
            except Busy:
                log.info("write queue full: a background write was dropped")

        loop.call_soon_threadsafe(submit)
        return True

    async def run(self, fn: WriteFn[T], by: Principal | None = None) -> T:
        """``submit`` and await the answer."""
        return await self.submit(fn, by)

    async def close(self) -> None:
        """Refuse new writes, finish those queued, stop."""
        self._closed = True
        task, queue = self._task, self._queue
        here = asyncio.get_running_loop()
        if queue is not None and task is not None and not task.done() and task.get_loop() is here:
            await queue.join()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._executor.shutdown(wait=True)

    async def _loop(self, queue: asyncio.Queue[_Write]) -> None:
        free = asyncio.Semaphore(self.workers)
        running: set[asyncio.Task[None]] = set()
        while True:
            await free.acquire()
            batch = [await queue.get()]
            while len(batch) < self.batch_max and not queue.empty():
                batch.append(queue.get_nowait())
            task = asyncio.create_task(self._batch(queue, batch, free))
            running.add(task)
            task.add_done_callback(running.discard)

    async def _batch(
        self, queue: asyncio.Queue[_Write], batch: list[_Write], free: asyncio.Semaphore
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            done = await loop.run_in_executor(self._executor, self._run_batch, batch)
            self._answer(done)
        finally:
            free.release()
            for _ in batch:
                queue.task_done()

    def _run_batch(self, batch: list[_Write]) -> list[_Done]:
        """In the worker thread: the batch in one transaction, or each alone if it fails."""
        try:
            done = self._transaction(batch)
        except Exception as exc:  # nothing of the batch committed
            if len(batch) > 1:
                log.warning("group commit of %d writes failed (%s): each alone", len(batch), exc)
                return [d for write in batch for d in self._run_batch([write])]
            return [_Done(batch[0], error=exc)]
        self.batches += 1
        revisions = [d.revision for d in done if d.error is None and d.revision is not None]
        if revisions:
            self._sync.notify(max(revisions))
        return done

    def _transaction(self, batch: list[_Write]) -> list[_Done]:
        done: list[_Done] = []
        with self._factory() as session:
            alone = len(batch) == 1  # no SAVEPOINT (two statements): a failure rolls back all
            for write in batch:
                try:
                    with nullcontext() if alone else session.begin_nested():
                        answer, revision = write.fn(session)
                except Exception as exc:
                    if alone:
                        session.rollback()
                    changes.take(session)  # the notes of the rolled-back write
                    done.append(_Done(write, error=exc))
                else:
                    notes = changes.take(session)
                    if write.by is not None:
                        notes = [(k, {**v, "by": write.by.name}) for k, v in notes]
                    done.append(_Done(write, answer, revision, notes))
            if self._events is not None:  # durable: the events commit with their writes
                self._events.stage(session, [n for d in done if d.error is None for n in d.notes])
            session.commit()
        return done

    def _answer(self, done: list[_Done]) -> None:
        """In the event loop: publish each write's notes, answer each request."""
        for d in done:
            self.writes += 1
            future = d.write.future
            if d.error is not None:
                if not future.done():
                    future.set_exception(d.error)
                continue
            if self._events is not None and d.notes:
                self._events.committed(d.notes)
            if not future.done():  # a request that went away cancelled its future
                future.set_result(d.answer)


def _quiet(future: asyncio.Future[Any]) -> None:
    """A background write that failed (the database busy): logged, a later one does it."""
    if not future.cancelled() and future.exception() is not None:
        log.info("background write failed: %s", future.exception())
