"""The end of a write request: commit, then tell the flow side and the event hub."""

from __future__ import annotations

from sqlalchemy.orm import Session

from controller.auth import Principal
from controller.db import changes
from controller.events import EventHub
from controller.sync import FlowSync


def commit(
    session: Session,
    sync: FlowSync,
    revision: int | None,
    events: EventHub | None = None,
    by: Principal | None = None,
) -> None:
    """Commit the request's transaction; notify ``sync`` if the write was flow-relevant, and
    publish what the transaction noted (``controller.db.changes``) to ``events``, each
    recording the principal that made the write (``by``: ``agent:3fa9c0d21b7e``); a durable
    hub gets them in the transaction itself (``EventHub.stage``)."""
    noted = changes.take(session)
    if by is not None:
        noted = [(kind, {**data, "by": by.name}) for kind, data in noted]
    if events is not None:
        events.stage(session, noted)  # durable: in this transaction, ids from the log
    session.commit()
    if revision is not None:
        sync.notify(revision)
    if events is not None:
        events.committed(noted)
