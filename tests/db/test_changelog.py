"""The change log on SQLite and PostgreSQL: every flow-relevant repository write logs the rows
it changed, and an ``Intent`` kept up to date from the log equals a full read after each."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Network
from typing import Any

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session, sessionmaker

from controller.db import changelog, migrate, repo
from controller.db.models import ChangeRow
from controller.db.session import make_engine, make_session_factory, session_scope
from controller.intent import Intent, apply_changes, diff_views

A = IPv4Address


def _catch_up(factory: sessionmaker[Session], intent: Intent) -> None:
    with factory() as s:
        repo.begin_snapshot(s)
        read = changelog.read_changes(s, intent.revision)
        full = repo.load_snapshot(s)
    assert read is not None, "the log covers every revision"
    revision, groups = read
    assert [rev for rev, _ in groups] == list(range(intent.revision + 1, revision + 1))
    for rev, changes in groups:
        apply_changes(intent, changes, rev)
    assert intent.revision == full.revision
    assert diff_views(full, intent.snapshot()) == []


def test_every_write_is_logged_and_the_model_follows(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        intent = Intent.from_snapshot(repo.load_snapshot(s))
    writes = [
        lambda s: repo.create_network(
            s, "n1", IPv4Network("10.0.0.0/24"), subnet6=IPv6Network("fd00:1::/64")
        ),
        lambda s: repo.create_network(s, "n2", IPv4Network("10.1.0.0/24")),
        lambda s: repo.register_host(s, "h1", A("198.18.0.1"), dpid=1),
        lambda s: repo.register_host(s, "h2", A("198.18.0.2"), dpid=2),
        lambda s: repo.attach_endpoint(s, "n1", "a", "h1", 5, create=True),
        lambda s: repo.attach_endpoint(s, "n1", "b", "h2", 5, create=True),
        lambda s: repo.attach_endpoint(s, "n2", "c", "h2", 6, create=True),
        lambda s: repo.bind_endpoint(s, "n1", "a", "h2", 7),  # moved away from its block
        lambda s: repo.register_host(s, "h2", A("198.18.0.2"), tunnel_port=7),  # releases a
        lambda s: repo.create_endpoint(s, "n1", "d", host="h1"),  # no block claimed: no change
        lambda s: repo.bind_endpoint(s, "n1", "d", "h1", 3),
        lambda s: repo.unbind_endpoint(s, "n1", "b"),
        lambda s: repo.delete_endpoint(s, "n1", "d"),
        lambda s: repo.delete_host(s, "h2"),  # releases c, drops h2's blocks
        lambda s: repo.delete_network(s, "n2"),
        lambda s: repo.update_network(s, "n1", subnet6=None),  # IPv4 only again
        lambda s: repo.update_network(s, "n1", subnet6=IPv6Network("fd00:5::/64")),
    ]
    for write in writes:
        with session_scope(factory) as s:
            write(s)
        _catch_up(factory, intent)
    assert set(intent.hosts) == {"h1"} and set(intent.networks) == {"n1"}
    assert intent.networks["n1"].subnet6 == IPv6Network("fd00:5::/64")  # dual stack carried


def test_a_gap_in_the_log_asks_for_a_full_read(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"))
    with session_scope(factory) as s:
        rev = repo.register_host(s, "h1", A("198.18.0.1"), dpid=1)[1]
    assert rev is not None
    with factory() as s:
        assert changelog.read_changes(s, rev) == (rev, [])
        assert changelog.read_changes(s, 0) is not None
    with session_scope(factory) as s:
        assert changelog.prune(s, keep=1) == 1  # the network's row goes
        assert s.execute(select(ChangeRow.revision)).scalars().all() == [rev]
    with factory() as s:
        assert changelog.read_changes(s, 0) is None
        assert changelog.read_changes(s, rev - 1) is not None


def test_switch_generations_are_saved_for_every_process(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.save_switch_states(s, {"h1": (3, 2), "h2": (1, 1)})
    with session_scope(factory) as s:
        repo.save_switch_states(s, {"h1": (4, 4)})
    with factory() as s:
        states = repo.switch_states(s)
    assert {h: (w, a) for h, (w, a, _) in states.items()} == {"h1": (4, 4), "h2": (1, 1)}


def test_changed_endpoints_are_read_by_their_pairs_only(factory: sessionmaker[Session]) -> None:
    """The endpoints of a change read are looked up by two IN lists (networks, names): the
    other pairs those lists also match are not answered, nor unbound endpoints."""
    with session_scope(factory) as s:
        repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"))
        repo.create_network(s, "n2", IPv4Network("10.1.0.0/24"))
        repo.register_host(s, "h1", A("198.18.0.1"), dpid=1)
    for port, (net, name) in enumerate([("n1", "a"), ("n1", "b"), ("n2", "a"), ("n2", "b")]):
        with session_scope(factory) as s:
            repo.attach_endpoint(s, net, name, "h1", 10 + port, create=True)
    with session_scope(factory) as s:
        repo.create_endpoint(s, "n1", "c", host="h1")  # never bound
    keys = [changelog.endpoint_key(n, e) for n, e in [("n1", "a"), ("n2", "b"), ("n1", "c")]]
    with factory() as s:
        found = changelog._endpoints(s, keys)
    assert set(found) == {changelog.endpoint_key("n1", "a"), changelog.endpoint_key("n2", "b")}
    assert {(v.network, v.name, v.ofport) for v in found.values()} == {  # type: ignore[union-attr]
        ("n1", "a", 10),
        ("n2", "b", 13),
    }


@pytest.mark.postgres
def test_changed_endpoints_are_found_through_the_index_on_postgresql(pg_db_url: str) -> None:
    """PostgreSQL finds the endpoints of a change read through the (network_id, name) index,
    not by filtering every endpoint of the network: ``(network, name) IN (pairs)`` was planned
    as a scan with an OR per pair on each row (46 ms for 50 keys at 50,000 endpoints), and
    an engine reads the changes of every pass so."""
    migrate.upgrade(pg_db_url)
    engine = make_engine(pg_db_url)
    try:
        with engine.begin() as c:
            c.execute(text(
                "INSERT INTO networks (id, name, vni, subnet, gateway, block_prefix, created_at,"
                " reclaim, external) VALUES (1, 'n1', 100, '10.64.0.0/12', '10.64.0.1', 26,"
                " now(), false, false)"
            ))  # fmt: skip
            c.execute(text(
                "INSERT INTO hosts (id, name, underlay_ip, tunnel_port, created_at)"
                " SELECT i, 'h' || i, '198.18.' || (i / 250) || '.' || (i % 250 + 2), 1, now()"
                " FROM generate_series(1, 200) i"
            ))  # fmt: skip
            c.execute(text(
                "INSERT INTO endpoints (network_id, name, ip, mac, host_id, ofport, state,"
                " bound_rev, created_at, updated_at, labels)"
                " SELECT 1, 'e' || (h * 100 + j), '10.' || (64 + (h * 100 + j) / 65536) || '.'"
                " || ((h * 100 + j) / 256 % 256) || '.' || ((h * 100 + j) % 256),"
                " '02:00:00:00:00:01', h, 2 + j, 'ready', 1, now(), now(), '{}'"
                " FROM generate_series(1, 200) h, generate_series(0, 99) j"
            ))  # fmt: skip
            c.execute(text("ANALYZE"))
        statements: list[tuple[str, Any]] = []

        def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
            statements.append((statement, params))

        keys = [changelog.endpoint_key("n1", f"e{100 + k * 397}") for k in range(50)]
        event.listen(engine, "before_cursor_execute", capture)
        with make_session_factory(engine)() as s:
            found = changelog._endpoints(s, keys)
        event.remove(engine, "before_cursor_execute", capture)
        assert len(found) == 50 and len(statements) == 1
        with engine.connect() as c:
            cursor = c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
            cursor.execute("EXPLAIN " + statements[0][0], statements[0][1])
            plan = "\n".join(row[0] for row in cursor.fetchall())
        assert "Seq Scan on endpoints" not in plan, plan
        assert "uq_endpoints_network_id_name" in plan, plan
    finally:
        engine.dispose()
