"""LISTEN/NOTIFY on a real PostgreSQL: a committed revision bump reaches every listener; a
rolled-back one reaches none."""

from __future__ import annotations

import queue
from ipaddress import IPv4Network

import pytest

from controller.db import migrate, repo
from controller.db.listen import RevisionListener
from controller.db.session import make_engine, make_session_factory


def test_committed_bumps_are_announced_rolled_back_ones_are_not(pg_db_url: str) -> None:
    migrate.upgrade(pg_db_url)
    engine = make_engine(pg_db_url)
    sessions = make_session_factory(engine)
    got: queue.Queue[int] = queue.Queue()
    listener = RevisionListener(pg_db_url, got.put)
    listener.start()
    try:
        assert listener.listening.wait(10), "LISTEN never started"
        with sessions() as s:
            _, rev = repo.create_network(s, "blue", IPv4Network("10.0.0.0/24"))
            s.commit()
        assert got.get(timeout=5) == rev
        with sessions() as s:
            repo.create_network(s, "red", IPv4Network("10.0.0.0/24"))
            s.rollback()
        with pytest.raises(queue.Empty):  # a rolled-back write is never announced
            got.get(timeout=0.5)
        with sessions() as s:
            _, rev2 = repo.create_network(s, "green", IPv4Network("10.1.0.0/24"))
            s.commit()
        assert got.get(timeout=5) == rev2 == rev + 1
    finally:
        listener.stop()
        engine.dispose()
