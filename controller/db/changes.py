"""Change notes: what a write transaction did, told to the event hub once it committed.

Repository writes ``note`` domain facts ("endpoint moved from h1 to h2") on the session;
``controller.api.tx.commit`` takes them after the commit succeeded and publishes them. A
transaction that fails never commits, and its session (one per request) is dropped with its
notes, so nothing is announced that did not happen.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

_KEY = "vxplane.changes"


def note(session: Session, kind: str, **data: Any) -> None:
    """Remember that this transaction did ``kind`` (an event type of ``controller.events``)."""
    session.info.setdefault(_KEY, []).append((kind, data))


def take(session: Session) -> list[tuple[str, dict[str, Any]]]:
    """The notes so far, forgetting them."""
    return list(session.info.pop(_KEY, []))
