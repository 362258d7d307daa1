"""Engine set-up: URL normalization, SQLite pragmas and directory creation, the controller's
own pool."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import TimeoutError as PoolTimeout

from controller.db.session import CONTROL_POOL, make_control_engine, make_engine, normalize_url


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@127.0.0.1/db", "postgresql+psycopg"),
        ("postgres://u@127.0.0.1/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@127.0.0.1/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_postgres_urls_use_psycopg3(url: str, driver: str) -> None:
    assert normalize_url(url).drivername == driver


def test_sqlite_file_engine(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "vx.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 5000
        assert path.exists()
    finally:
        engine.dispose()


def test_sqlite_memory_engine() -> None:
    engine = make_engine("sqlite://")
    try:
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE t (x INTEGER)"))
            conn.execute(text("INSERT INTO t VALUES (1)"))
        with engine.connect() as conn:
            assert conn.execute(text("SELECT x FROM t")).scalar() == 1
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_the_controllers_own_work_has_connections_the_api_cannot_take(pg_db_url: str) -> None:
    """On PostgreSQL the flow engine, the membership and the event log draw on a pool of their
    own: with every connection of the API's pool held (its writers waiting for the revision
    row, each in a transaction), they still get one at once."""
    api = make_engine(pg_db_url, pool_size=2, max_overflow=0, pool_timeout=0.2)
    control = make_control_engine(api)
    held = []
    try:
        assert control is not api and control.url == api.url
        for _ in range(2):
            conn = api.connect()
            conn.execute(text("SELECT 1"))  # in a transaction, as a waiting writer is
            held.append(conn)
        with pytest.raises(PoolTimeout):
            api.connect()
        busy = [control.connect() for _ in range(CONTROL_POOL)]  # the engine, the lease, ...
        with control.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar() == 1
        for conn in busy:
            conn.close()
    finally:
        for conn in held:
            conn.close()
        api.dispose()
        control.dispose()


def test_on_sqlite_the_controller_shares_the_apis_engine(tmp_path: Path) -> None:
    """SQLite has one writer anyway: one engine (and its pragmas) for everyone."""
    api = make_engine(f"sqlite:///{tmp_path}/vx.db")
    try:
        assert make_control_engine(api) is api
    finally:
        api.dispose()
