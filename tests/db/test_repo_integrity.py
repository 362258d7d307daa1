"""Issue 8's integrity rules in the repository, on SQLite and a real PostgreSQL, with
concurrent writers: one endpoint per (host, ofport), binds with ``if_revision``, conditional
deletes, reservations kept unless the network allows reclaiming them or they expired."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from controller.db import repo
from controller.db.session import session_scope
from controller.errors import AddressExhausted, Conflict

A = IPv4Address
T0 = datetime(2026, 11, 1, tzinfo=UTC)


@pytest.fixture
def world(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Networks ``n`` and ``m`` (/24) and hosts h1, h2 (tunnel port 1)."""
    with session_scope(factory) as s:
        repo.create_network(s, "n", IPv4Network("10.0.0.0/24"))
    with session_scope(factory) as s:
        repo.create_network(s, "m", IPv4Network("10.1.0.0/24"))
    for i in (1, 2):
        with session_scope(factory) as s:
            repo.register_host(s, f"h{i}", A(f"198.18.0.{i}"))
    return factory


def _race(count: int, work: Callable[[int], Any]) -> tuple[list[Any], list[BaseException]]:
    """Run ``work(i)`` for i < count in threads released together; results and errors."""
    results: list[Any] = []
    errors: list[BaseException] = []
    start = threading.Barrier(count)

    def run(index: int) -> None:
        start.wait()
        try:
            results.append(work(index))
        except BaseException as exc:  # noqa: BLE001 - returned to the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results, errors


def test_concurrent_binds_of_different_endpoints_to_one_port(world: sessionmaker[Session]) -> None:
    """Six endpoints of two networks race for h1's port 9: one wins, the others are 409."""
    for i in range(6):
        with session_scope(world) as s:
            repo.create_endpoint(s, "nm"[i % 2], f"e{i}")

    def bind(i: int) -> str:
        with session_scope(world) as s:
            repo.attach_endpoint(s, "nm"[i % 2], f"e{i}", "h1", 9)
        return f"e{i}"

    won, errors = _race(6, bind)
    assert len(won) == 1 and len(errors) == 5
    assert all(type(e) is Conflict and "ofport 9 of host 'h1'" in str(e) for e in errors), errors
    with session_scope(world) as s:
        bound = [(e.name, e.ofport) for e in repo.list_endpoints(s, host="h1")]
    assert bound == [(won[0], 9)]


def test_concurrent_binds_with_one_if_revision_one_wins(world: sessionmaker[Session]) -> None:
    """Two writers read revision r and bind elsewhere with if_revision=r: one 409s."""
    with session_scope(world) as s:
        ep, _, _ = repo.attach_endpoint(s, "n", "web", "h1", 5, create=True)

    def bind(i: int) -> str:
        with session_scope(world) as s:
            repo.attach_endpoint(s, "n", "web", f"h{i + 1}", 20 + i, if_revision=ep.revision)
        return f"h{i + 1}"

    won, errors = _race(2, bind)
    assert len(won) == 1 and len(errors) == 1
    assert isinstance(errors[0], repo.RevisionMismatch)
    with session_scope(world) as s:
        assert repo.get_endpoint(s, "n", "web").host == won[0]


def test_delete_if_unbound_waits_for_a_bind_in_flight(world: sessionmaker[Session]) -> None:
    """A bind's transaction is open when the conditional delete starts: the delete waits for
    it, then sees the endpoint bound and refuses (before: the address was lost)."""
    with session_scope(world) as s:
        repo.create_endpoint(s, "n", "web")
    outcome: list[BaseException | None] = []
    with world() as binder:
        repo.attach_endpoint(binder, "n", "web", "h1", 5)

        def delete() -> None:
            try:
                with session_scope(world) as s:
                    repo.delete_endpoint(s, "n", "web", if_unbound=True)
                outcome.append(None)
            except BaseException as exc:  # noqa: BLE001 - checked below
                outcome.append(exc)

        thread = threading.Thread(target=delete)
        thread.start()
        time.sleep(0.3)
        assert outcome == []  # waiting for the bind's lock
        binder.commit()
    thread.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], repo.RevisionMismatch)
    with session_scope(world) as s:
        assert repo.get_endpoint(s, "n", "web").host == "h1"


def _tiny(factory: sessionmaker[Session], **kwargs: Any) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "tiny", IPv4Network("10.9.0.0/30"), now=T0, **kwargs)
    with session_scope(factory) as s:
        repo.create_endpoint(s, "tiny", "old", now=T0)


def test_reservations_are_kept_until_their_ttl(factory: sessionmaker[Session]) -> None:
    _tiny(factory, reservation_ttl=3600)
    with pytest.raises(AddressExhausted, match="can be reclaimed from 2026-11-01 01:00:00"):
        with session_scope(factory) as s:
            repo.create_endpoint(s, "tiny", "new", now=T0 + timedelta(seconds=3599))
    with session_scope(factory) as s:
        ep, created, _ = repo.create_endpoint(s, "tiny", "new", now=T0 + timedelta(seconds=3600))
    assert created and ep.ip == A("10.9.0.2")
    with session_scope(factory) as s:
        assert [e.name for e in repo.list_endpoints(s, network="tiny")] == ["new"]


def test_ttl_counts_from_the_unbind(factory: sessionmaker[Session]) -> None:
    _tiny(factory, reservation_ttl=3600)
    with session_scope(factory) as s:
        repo.register_host(s, "h1", A("198.18.0.1"))
    with session_scope(factory) as s:
        repo.attach_endpoint(s, "tiny", "old", "h1", 5, now=T0)
    with session_scope(factory) as s:
        repo.unbind_endpoint(s, "tiny", "old", now=T0 + timedelta(days=2))
    with pytest.raises(AddressExhausted), session_scope(factory) as s:
        repo.create_endpoint(s, "tiny", "new", now=T0 + timedelta(days=2, minutes=59))
    with session_scope(factory) as s:
        assert repo.create_endpoint(s, "tiny", "new", now=T0 + timedelta(days=2, hours=1))[1]


def test_ttl_zero_keeps_reservations_for_good(factory: sessionmaker[Session]) -> None:
    _tiny(factory, reservation_ttl=0)
    with pytest.raises(AddressExhausted, match="kept for good"), session_scope(factory) as s:
        repo.create_endpoint(s, "tiny", "new", now=T0 + timedelta(days=3650))


def test_reclaim_takes_a_fresh_reservation(factory: sessionmaker[Session]) -> None:
    _tiny(factory, reclaim=True)
    with session_scope(factory) as s:
        ep, created, _ = repo.create_endpoint(s, "tiny", "new", now=T0)
    assert created and ep.ip == A("10.9.0.2")


def test_concurrent_binds_elsewhere_do_not_both_win(world: sessionmaker[Session]) -> None:
    """Eight writers bind one endpoint to eight (host, ofport)s at once, none saying
    ``move``: the first wins, the seven others are 409 with it (before: each moved it and
    the last won silently)."""

    def bind(i: int) -> str:
        with session_scope(world) as s:
            ep, _, _ = repo.attach_endpoint(s, "n", "web", f"h{i % 2 + 1}", 30 + i, create=True)
        return f"{ep.host}:{ep.ofport}"

    won, errors = _race(8, bind)
    assert len(won) == 1 and len(errors) == 7
    assert all(isinstance(e, repo.RevisionMismatch) for e in errors), errors
    for e in errors:
        assert isinstance(e, repo.RevisionMismatch) and e.endpoint is not None
        assert f"{e.endpoint.host}:{e.endpoint.ofport}" == won[0]
    with session_scope(world) as s:
        assert len(repo.endpoint_history(s, "n", "web")) == 1
