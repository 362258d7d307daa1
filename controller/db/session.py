"""Engines and sessions: SQLite (WAL, busy timeout, foreign keys) or PostgreSQL (psycopg 3).

SQLite transactions are begun by SQLAlchemy with an explicit ``BEGIN`` (pysqlite's own
implicit transactions are turned off), so every read of one transaction sees one snapshot
and a write transaction can take the write lock with its first statement (see ``repo``).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

SQLITE_BUSY_TIMEOUT_MS = 5000


def normalize_url(url: str | URL) -> URL:
    """The URL with PostgreSQL pinned to psycopg 3 (``postgresql://`` -> ``postgresql+psycopg://``)."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_memory(url: URL) -> bool:
    return url.database in (None, "", ":memory:") or "mode=memory" in str(url)


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine for ``url``; creates the parent directory of a SQLite file if missing."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        kwargs.setdefault("pool_pre_ping", True)
        return create_engine(parsed, **kwargs)

    connect_args = dict(kwargs.pop("connect_args", {}))
    connect_args.setdefault("check_same_thread", False)
    connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
    if _is_memory(parsed):
        kwargs.setdefault("poolclass", StaticPool)
    elif parsed.database and not parsed.database.startswith("file:"):
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    _configure_sqlite(engine, memory=_is_memory(parsed))
    return engine


CONTROL_POOL = 4  # connections kept (and as many more at a peak) for the controller's own work


def make_control_engine(api: Engine) -> Engine:
    """The engine of the controller's own work (the flow engine's reads and ready marks, the
    membership's lease, the event log): on PostgreSQL a pool of its own on the same database,
    so the API's load cannot hold all of its connections (SQLite: ``api`` itself).

    Why: the API's writers (16 on PostgreSQL) each hold a connection while they wait for the
    revision row; under a batch churn they held every connection of the shared pool, and the
    flow engine and the membership waited for one (bench.scale 300 x 50: 50 waits of the
    engine, up to 0.38 s; at 1,000 x 50 the lease renewal came late and lapsed)."""
    if api.dialect.name == "sqlite":
        return api
    return make_engine(api.url, pool_size=CONTROL_POOL, max_overflow=CONTROL_POOL)


def _configure_sqlite(engine: Engine, *, memory: bool) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
        cursor = dbapi_connection.cursor()
        try:
            if not memory:
                cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA synchronous=NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN")


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory bound to ``engine``; objects stay readable after commit."""
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session whose transaction commits on success and rolls back on any exception."""
    with factory() as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
