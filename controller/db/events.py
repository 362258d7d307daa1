"""The cluster-wide event log: every controller appends its events to ``events``, with ids
from one counter, and reads everyone's back in id order.

Ids: a transaction that appends events first takes ``n`` ids from the single row of
``event_seq`` (``UPDATE ... SET last = last + n``) and inserts its events with them. The row
stays locked until the transaction ends (PostgreSQL; SQLite has one writer anyway), so
transactions that append events commit in the order of their ids, and a reader that sees id
k has seen every id before it: reading ``WHERE id > cursor`` never skips an id that commits
later, and ids have no gaps (a rolled-back transaction gives its ids back with the counter).
That is what lets a client resume a stream on any controller with ``Last-Event-ID``.

The API appends the events of a write in the write's own transaction (announced only if it
committed); the flow engine's and the host watch's events are appended in small
transactions of their own (``EventHub``'s outbox).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

from sqlalchemy import Table, delete, func, insert, select, update
from sqlalchemy.orm import Session

from controller.db.models import ClusterRow, EventRow, EventSeqRow
from controller.events import Event, Staged

PRUNE_KEEP = 100_000  # events kept (the newest); a client further behind resynchronises


def append(session: Session, events: Sequence[Staged]) -> int:
    """Give ``events`` (time, type, summary, data) the next ids and insert them in this
    transaction; the id of the last (0 if none). The caller commits."""
    if not events:
        return 0
    last = session.execute(
        update(EventSeqRow)
        .where(EventSeqRow.id == 1)
        .values(last=EventSeqRow.last + len(events))
        .returning(EventSeqRow.last)
    ).scalar_one()
    first = last - len(events) + 1
    session.execute(
        insert(cast(Table, EventRow.__table__)),  # Core: no ORM bulk path per row
        [
            {"id": first + i, "time": t, "type": kind, "summary": summary, "data": data}
            for i, (t, kind, summary, data) in enumerate(events)
        ],
    )
    return int(last)


def read_after(session: Session, after: int, limit: int) -> list[Event]:
    """Events with id > ``after``, oldest first, at most ``limit``."""
    rows = session.execute(
        select(EventRow.id, EventRow.time, EventRow.type, EventRow.summary, EventRow.data)
        .where(EventRow.id > after)
        .order_by(EventRow.id)
        .limit(limit)
    )
    return [Event(i, t, kind, summary, data) for i, t, kind, summary, data in rows]


def last_id(session: Session) -> int:
    """The newest id handed out (0 before the first event)."""
    return int(session.execute(select(EventSeqRow.last).where(EventSeqRow.id == 1)).scalar_one())


def epoch(session: Session) -> str:
    """The cluster's id: event ids are the cluster's, not a process's."""
    return str(session.execute(select(ClusterRow.cluster_id)).scalar_one())


def prune(session: Session, keep: int = PRUNE_KEEP) -> int:
    """Forget all but the newest ``keep`` events; how many went (the caller commits)."""
    newest = session.execute(select(func.max(EventRow.id))).scalar()
    if newest is None:
        return 0
    result = session.execute(delete(EventRow).where(EventRow.id <= newest - keep))
    return int(result.rowcount)  # type: ignore[attr-defined]


class DbEventStore:
    """``controller.events.EventStore`` on a session factory (a session per call)."""

    def __init__(self, factory: Callable[[], Session]) -> None:
        self._factory = factory

    def epoch(self) -> str:
        with self._factory() as session:
            return epoch(session)

    def append_in(self, session: Any, events: Sequence[Staged]) -> None:
        append(session, events)

    def append(self, events: Sequence[Staged]) -> None:
        with self._factory() as session:
            append(session, events)
            session.commit()

    def read_after(self, after: int, limit: int) -> list[Event]:
        with self._factory() as session:
            return read_after(session, after, limit)

    def last_id(self) -> int:
        with self._factory() as session:
            return last_id(session)
