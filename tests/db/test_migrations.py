"""Alembic upgrade and downgrade on SQLite and PostgreSQL; the models match the migrations."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from controller.db import migrate
from controller.db.models import Base
from controller.db.session import make_engine

TABLES = {
    "revision", "networks", "hosts", "blocks", "endpoints", "endpoint_moves", "cluster",
    "api_tokens", "change_log", "switch_state", "controllers", "switch_masters", "publications",
    "policies", "events", "event_seq",
}  # fmt: skip
BEFORE_0012 = TABLES - {"events", "event_seq"}
BEFORE_0010 = BEFORE_0012 - {"policies"}
BEFORE_0009 = BEFORE_0010 - {"publications"}
BEFORE_0008 = BEFORE_0009 - {"controllers", "switch_masters"}
BEFORE_0006 = BEFORE_0008 - {"change_log", "switch_state"}
BEFORE_0004 = BEFORE_0006 - {"cluster", "api_tokens"}


def _tables(url: str) -> set[str]:
    engine = make_engine(url)
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def _columns(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {column["name"] for column in inspect(engine).get_columns(table)}
    finally:
        engine.dispose()


def _indexes(url: str, table: str) -> set[str]:
    engine = make_engine(url)
    try:
        return {str(index["name"]) for index in inspect(engine).get_indexes(table)}
    finally:
        engine.dispose()


def test_upgrade_head_then_downgrade_base(db_url: str) -> None:
    migrate.upgrade(db_url)
    assert TABLES <= _tables(db_url)
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("SELECT id, value FROM revision")).all() == [(1, 0)]
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0015"
            assert conn.execute(text("SELECT id, last FROM event_seq")).all() == [(1, 0)]
            (cluster,) = conn.execute(text("SELECT cluster_id FROM cluster")).scalars()
            assert len(cluster) == 36
    finally:
        engine.dispose()
    assert "labels" in _columns(db_url, "endpoints")
    assert {"reclaim", "reservation_ttl"} <= _columns(db_url, "networks")

    assert "ix_endpoints_host_id" not in _indexes(db_url, "endpoints")
    assert "ix_endpoints_host_id_ofport" in _indexes(db_url, "endpoints")
    migrate.downgrade(db_url, "0014")  # 0015 alone: the index on host_id comes back
    assert {"ix_endpoints_host_id", "ix_endpoints_host_id_ofport"} <= _indexes(db_url, "endpoints")

    assert "ix_endpoints_bound_rev" in _indexes(db_url, "endpoints")
    migrate.downgrade(db_url, "0013")  # 0014 alone: the index on endpoints.bound_rev goes
    assert "ix_endpoints_bound_rev" not in _indexes(db_url, "endpoints")
    assert "ix_endpoints_state" in _indexes(db_url, "endpoints")

    assert "egress_ip6" in _columns(db_url, "hosts")
    migrate.downgrade(db_url, "0012")  # 0013 alone: the hosts' IPv6 egress column goes
    assert "egress_ip6" not in _columns(db_url, "hosts")
    assert {"egress_ip", "gateway_port"} <= _columns(db_url, "hosts")
    assert _tables(db_url) & TABLES == TABLES

    migrate.downgrade(db_url, "0011")  # 0012 alone: the event log goes
    assert _tables(db_url) & TABLES == BEFORE_0012

    assert "subnet6" in _columns(db_url, "networks")
    migrate.downgrade(db_url, "0010")  # 0011 alone: the IPv6 subnet column goes
    assert "subnet6" not in _columns(db_url, "networks")
    assert _tables(db_url) & TABLES == BEFORE_0012

    assert "policies" in _tables(db_url)
    migrate.downgrade(db_url, "0009")  # 0010 alone: the policies go
    assert _tables(db_url) & TABLES == BEFORE_0010

    assert "publications" in _tables(db_url)
    migrate.downgrade(db_url, "0008")  # 0009 alone: the publications go
    assert _tables(db_url) & TABLES == BEFORE_0009
    assert "zone" in _columns(db_url, "networks")

    migrate.downgrade(db_url, "0007")  # 0008 alone: members and mastership go
    assert _tables(db_url) & TABLES == BEFORE_0008

    migrate.downgrade(db_url, "0006")  # 0007 alone: external access's columns go
    assert not {"external", "zone"} & _columns(db_url, "networks")
    assert not {"egress_ip", "gateway_port"} & _columns(db_url, "hosts")
    assert {"reclaim", "reservation_ttl"} <= _columns(db_url, "networks")

    migrate.downgrade(db_url, "0005")  # 0006 alone: the change log and switch states go
    assert _tables(db_url) & TABLES == BEFORE_0006

    migrate.downgrade(db_url, "0004")  # 0005 alone: the tokens go
    assert _tables(db_url) & TABLES == BEFORE_0006 - {"api_tokens"}

    migrate.downgrade(db_url, "0003")  # 0004 alone: the cluster and the network columns go
    assert _tables(db_url) & TABLES == BEFORE_0004
    assert not {"reclaim", "reservation_ttl"} & _columns(db_url, "networks")

    migrate.downgrade(db_url, "0002")  # 0003 alone: only the labels column goes
    assert _tables(db_url) & TABLES == BEFORE_0004
    assert "labels" not in _columns(db_url, "endpoints")

    migrate.downgrade(db_url, "0001")  # 0002 alone comes off and leaves 0001's tables
    assert _tables(db_url) & TABLES == BEFORE_0004 - {"endpoint_moves"}

    migrate.downgrade(db_url, "base")
    assert not TABLES & _tables(db_url)

    migrate.upgrade(db_url, "head")  # and back up again from base
    assert TABLES <= _tables(db_url)


def test_labels_migration_keeps_endpoints_and_history(db_url: str) -> None:
    """0003 gives existing endpoints ``{}``; going down again loses neither rows nor history."""
    migrate.upgrade(db_url, "0002")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO networks (id, name, vni, subnet, gateway, block_prefix,"
                    " created_at)"
                    " VALUES (1, 'n', 1, '10.0.0.0/24', '10.0.0.1', 26, :at)"
                ),
                {"at": at},
            )
            conn.execute(
                text(
                    "INSERT INTO endpoints (id, network_id, name, ip, mac, state, bound_rev,"
                    " created_at, updated_at) VALUES"
                    " (1, 1, 'web', '10.0.0.2', '0a:58:0a:00:00:02', 'reserved', 3, :at, :at)"
                ),
                {"at": at},
            )
            conn.execute(
                text(
                    "INSERT INTO endpoint_moves (endpoint_id, kind, host, ofport, revision, at)"
                    " VALUES (1, 'bound', 'h1', 5, 3, :at)"
                ),
                {"at": at},
            )
        migrate.upgrade(db_url, "0003")
        with engine.begin() as conn:
            assert conn.execute(text("SELECT labels FROM endpoints")).scalar() == "{}"
            conn.execute(text("""UPDATE endpoints SET labels = '{"app":"web"}'"""))
        migrate.downgrade(db_url, "0002")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT name, bound_rev FROM endpoints")).all() == [("web", 3)]
            assert conn.execute(text("SELECT count(*) FROM endpoint_moves")).scalar() == 1
    finally:
        engine.dispose()


def test_integrity_migration_undoes_the_bindings_it_forbids(db_url: str) -> None:
    """0004 unbinds endpoints on the tunnel port, past 65279, or sharing a (host, ofport)
    with a newer binding (they keep their address), then the unique index holds."""
    migrate.upgrade(db_url, "0003")
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [  # name, ofport, bound_rev
        ("tunnel", 1, 2),
        ("older", 5, 3),
        ("newer", 5, 4),
        ("huge", 70000, 5),
        ("fine", 6, 6),
    ]
    engine = make_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO networks (id, name, vni, subnet, gateway, block_prefix,"
                    " created_at) VALUES (1, 'n', 1, '10.0.0.0/24', '10.0.0.1', 26, :at)"
                ),
                {"at": at},
            )
            conn.execute(
                text(
                    "INSERT INTO hosts (id, name, underlay_ip, tunnel_port, created_at)"
                    " VALUES (1, 'h1', '198.18.0.1', 1, :at)"
                ),
                {"at": at},
            )
            for i, (name, ofport, rev) in enumerate(rows, start=2):
                conn.execute(
                    text(
                        "INSERT INTO endpoints (id, network_id, name, ip, mac, host_id, ofport,"
                        " state, bound_rev, created_at, updated_at) VALUES (:id, 1, :name, :ip,"
                        " :mac, 1, :ofport, 'ready', :rev, :at, :at)"
                    ),
                    {
                        "id": i, "name": name, "ip": f"10.0.0.{i}",
                        "mac": f"0a:58:0a:00:00:{i:02x}", "ofport": ofport, "rev": rev, "at": at,
                    },
                )  # fmt: skip
            conn.execute(text("UPDATE revision SET value = 6"))
        migrate.upgrade(db_url, "0004")
        with engine.connect() as conn:
            got = dict(
                conn.execute(
                    text("SELECT name, ofport FROM endpoints WHERE host_id IS NOT NULL")
                ).all()
            )
            states = dict(conn.execute(text("SELECT name, state FROM endpoints")).all())
            assert conn.execute(text("SELECT value FROM revision")).scalar() == 7
            nets = conn.execute(text("SELECT reclaim, reservation_ttl FROM networks")).all()
        assert got == {"newer": 5, "fine": 6}
        assert states == {
            "tunnel": "reserved", "older": "reserved", "newer": "ready", "huge": "reserved",
            "fine": "ready",
        }  # fmt: skip
        assert [(bool(r), t) for r, t in nets] == [(False, 86400)]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(text("UPDATE endpoints SET host_id = 1, ofport = 6 WHERE name = 'older'"))
        migrate.downgrade(db_url, "0003")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM endpoints")).scalar() == 5
    finally:
        engine.dispose()


def test_models_match_migrations(migrated_url: str) -> None:
    engine = make_engine(migrated_url)
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(conn, opts={"compare_type": True})
            diffs = compare_metadata(context, Base.metadata)
    finally:
        engine.dispose()
    assert diffs == []


def test_alembic_config_points_at_the_package() -> None:
    config = migrate.alembic_config("postgresql://u:p%40ss@127.0.0.1/db")
    location = config.get_main_option("script_location")
    assert location == str(migrate.script_location())
    assert (migrate.script_location() / "env.py").exists()
    assert config.get_main_option("sqlalchemy.url") == "postgresql+psycopg://u:p%40ss@127.0.0.1/db"
