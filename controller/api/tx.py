"""The end of a write request: commit first, then tell the flow side the new revision."""

from __future__ import annotations

from sqlalchemy.orm import Session

from controller.sync import FlowSync


def commit(session: Session, sync: FlowSync, revision: int | None) -> None:
    """Commit the request's transaction; notify ``sync`` if the write was flow-relevant."""
    session.commit()
    if revision is not None:
        sync.notify(revision)
