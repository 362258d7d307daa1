"""PostgreSQL LISTEN for revision bumps, so every controller process sharing the database
learns of a write at once (``base.bump`` sends ``pg_notify`` in the writing transaction)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import psycopg

from controller.db.base import REVISION_CHANNEL
from controller.db.session import normalize_url

log = logging.getLogger(__name__)


class RevisionListener:
    """A thread that calls ``on_revision(n)`` for each revision committed by any process.

    Reconnects with backoff when the connection drops; a missed notification only delays
    the engine until its next poll tick, never loses a change (the engine reads the
    revision from the database itself).
    """

    def __init__(self, url: str, on_revision: Callable[[int], None]) -> None:
        # psycopg wants a libpq URL, not SQLAlchemy's dialect+driver form.
        libpq = normalize_url(url).set(drivername="postgresql")
        self._dsn = libpq.render_as_string(hide_password=False)
        self._on_revision = on_revision
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.listening = threading.Event()

    def start(self) -> None:
        """Start listening in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="vxplane-listen", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop at the next poll of the connection (within a second)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        backoff = 0.5
        while not self._stop.is_set():
            try:
                with psycopg.connect(self._dsn, autocommit=True) as conn:
                    conn.execute(f"LISTEN {REVISION_CHANNEL}")
                    self.listening.set()
                    backoff = 0.5
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            self._deliver(note.payload)
            except psycopg.Error as exc:
                self.listening.clear()
                log.warning(
                    "LISTEN %s failed (%s); retrying in %.1f s", REVISION_CHANNEL, exc, backoff
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)

    def _deliver(self, payload: str) -> None:
        try:
            revision = int(payload)
        except ValueError:
            log.warning("ignoring notification %r on %s", payload, REVISION_CHANNEL)
            return
        self._on_revision(revision)
