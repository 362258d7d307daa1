"""How timestamps and addresses are stored and read back, on SQLite and a real PostgreSQL.

On SQLite ``UTCDateTime`` writes and reads its text itself (one ``isoformat`` and one
``fromisoformat``, not SQLAlchemy's DATETIME processors plus a conversion each way: a fifth
of a 50,000-endpoint read): the text must stay the one SQLAlchemy's DATETIME writes, since
rows written before and comparisons in SQL (``at < :cutoff``) depend on it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from sqlalchemy import select, text, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.sqlite.base import DATETIME
from sqlalchemy.orm import Session, sessionmaker

from controller.db import migrate
from controller.db.base import stored_ipv4
from controller.db.models import EndpointMoveRow, HostRow
from controller.db.session import make_engine, make_session_factory, session_scope


def _host(s: Session, last_seen: datetime | None) -> None:
    s.add(HostRow(name="h", underlay_ip="198.18.0.1", tunnel_port=1, last_seen=last_seen,
                  created_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)))  # fmt: skip


@pytest.mark.parametrize(
    "written",
    [
        datetime(2026, 12, 1, 1, 30, 0, 123456, tzinfo=UTC),
        datetime(2026, 12, 1, 1, 30, 0, tzinfo=UTC),  # no microseconds
        datetime(2026, 12, 1, 3, 30, 0, 5, tzinfo=timezone(timedelta(hours=2))),  # not UTC
        datetime(999, 1, 1, tzinfo=UTC),  # a year of 3 digits
    ],
)
def test_a_timestamp_reads_back_as_the_same_instant_in_utc(
    factory: sessionmaker[Session], written: datetime
) -> None:
    with session_scope(factory) as s:
        _host(s, written)
    with session_scope(factory) as s:
        got = s.execute(select(HostRow.last_seen)).scalar_one()
        raw = s.execute(text("SELECT last_seen FROM hosts")).scalar_one()
        dialect = s.get_bind().dialect.name
    assert got == written and got is not None and got.tzinfo is UTC
    if dialect == "sqlite":  # the text SQLAlchemy's own DATETIME writes
        naive = written.astimezone(UTC).replace(tzinfo=None)
        assert raw == DATETIME().bind_processor(sqlite.dialect())(naive)


@pytest.fixture
def sqlite_factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    """A migrated SQLite database: the text timestamps are SQLite's alone (PostgreSQL stores
    ``timestamptz``)."""
    url = f"sqlite:///{tmp_path}/vxplane.db"
    migrate.upgrade(url)
    engine = make_engine(url)
    try:
        yield make_session_factory(engine)
    finally:
        engine.dispose()


def test_text_written_by_sqlalchemy_or_sql_reads_back(
    sqlite_factory: sessionmaker[Session],
) -> None:
    """SQLite: rows written before (SQLAlchemy's DATETIME text) or by SQL itself read back
    as UTC; a comparison in SQL orders them as instants."""
    factory = sqlite_factory
    with session_scope(factory) as s:
        _host(s, None)
        s.execute(text("UPDATE hosts SET last_seen = '2026-12-01 01:30:00'"))
    with session_scope(factory) as s:
        assert s.execute(select(HostRow.last_seen)).scalar_one() == datetime(
            2026, 12, 1, 1, 30, tzinfo=UTC
        )
        s.execute(update(HostRow).values(last_seen=datetime(2026, 12, 1, 1, 30, 0, 1, tzinfo=UTC)))
        later = s.execute(
            select(HostRow.name).where(HostRow.last_seen > datetime(2026, 12, 1, 1, 30, tzinfo=UTC))
        ).all()
        assert len(later) == 1
        with pytest.raises(Exception, match="datetime"):  # not a datetime: refused, not stored
            s.execute(update(EndpointMoveRow).values(at="2026-12-01"))


def test_stored_ipv4_reads_what_the_controller_writes() -> None:
    for value in ("10.64.0.1", "0.0.0.0", "255.255.255.255", "198.18.3.250"):
        assert stored_ipv4(str(IPv4Address(value))) == IPv4Address(value)
