"""PostgreSQL's plans of the statements on the path of every change, at a size where a scan
of every endpoint shows (20,000 endpoints, filled by SQL): what the planner chooses, not how
long it takes (EXPLAIN without ANALYZE; docs/benchmarks.md has the times)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.orm import Session

from controller.db import changelog, migrate, repo
from controller.db.session import make_engine, make_session_factory

pytestmark = pytest.mark.postgres

HOSTS, PER_HOST = 200, 100


@pytest.fixture
def engine(pg_db_url: str) -> Iterator[Engine]:
    """A migrated database with one network, ``HOSTS`` hosts and ``PER_HOST`` endpoints bound
    on each, all pending, bound 100 to a revision, and the statistics of that moment (an
    ANALYZE: what autovacuum leaves after a fill)."""
    migrate.upgrade(pg_db_url)
    eng = make_engine(pg_db_url)
    with eng.begin() as c:
        c.execute(text(
            "INSERT INTO networks (id, name, vni, subnet, gateway, block_prefix, created_at,"
            " reclaim, external) VALUES (1, 'n1', 100, '10.64.0.0/12', '10.64.0.1', 26, now(),"
            " false, false)"
        ))  # fmt: skip
        c.execute(text(
            "INSERT INTO hosts (id, name, underlay_ip, tunnel_port, created_at)"
            " SELECT i, 'h' || i, '198.18.' || (i / 250) || '.' || (i % 250 + 2), 1, now()"
            " FROM generate_series(1, :hosts) i"
        ), {"hosts": HOSTS})  # fmt: skip
        c.execute(text(
            "INSERT INTO endpoints (network_id, name, ip, mac, host_id, ofport, state,"
            " bound_rev, created_at, updated_at, labels)"
            " SELECT 1, 'e' || (h * 1000 + j), '10.' || (64 + (h * 1000 + j) / 65536) || '.'"
            " || ((h * 1000 + j) / 256 % 256) || '.' || ((h * 1000 + j) % 256),"
            " '02:00:00:00:00:01', h, 2 + j, 'pending', h, now(), now(), '{}'"
            " FROM generate_series(1, :hosts) h, generate_series(0, :per_host - 1) j"
        ), {"hosts": HOSTS, "per_host": PER_HOST})  # fmt: skip
        c.execute(text("ANALYZE"))
    try:
        yield eng
    finally:
        eng.dispose()


def plan_of(engine: Engine, call: Callable[[Session], object], starts: str) -> str:
    """The plan PostgreSQL chooses for the one statement beginning with ``starts`` that
    ``call`` runs (rolled back), with the parameters it ran with."""
    seen: list[tuple[str, Any]] = []

    def capture(_c: Any, _cur: Any, statement: str, params: Any, *_: Any) -> None:
        if statement.startswith(starts):
            seen.append((statement, params))

    event.listen(engine, "before_cursor_execute", capture)
    try:
        with make_session_factory(engine)() as s:
            call(s)
            s.rollback()
    finally:
        event.remove(engine, "before_cursor_execute", capture)
    assert len(seen) == 1, seen
    with engine.connect() as c:
        cursor = c.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        cursor.execute("EXPLAIN " + seen[0][0], seen[0][1])
        return "\n".join(row[0] for row in cursor.fetchall())


def test_a_change_read_finds_its_endpoints_through_the_index(engine: Engine) -> None:
    """The endpoints of a change read are found through the (network_id, name) index, not by
    filtering every endpoint of the network: ``(network, name) IN (pairs)`` was planned as a
    scan with an OR per pair on each row (46 ms for 50 keys at 50,000 endpoints), and an
    engine reads the changes of every pass so."""
    keys = [changelog.endpoint_key("n1", f"e{(1 + k * 7 % HOSTS) * 1000 + k}") for k in range(50)]
    found: dict[str, object] = {}
    plan = plan_of(engine, lambda s: found.update(changelog._endpoints(s, keys)), "SELECT")
    assert len(found) == 50
    assert "Seq Scan on endpoints" not in plan, plan
    assert "uq_endpoints_network_id_name" in plan, plan


def test_ready_marks_find_their_revisions_whatever_the_state_statistics(engine: Engine) -> None:
    """The engine's ready mark finds the pending endpoints of its revisions through the
    ``bound_rev`` index even when the statistics still say every endpoint is pending (taken
    after a fill, before the switches confirmed it): with only the ``state`` index
    PostgreSQL scanned every endpoint for each mark until autovacuum analyzed again."""
    with engine.begin() as c:  # the cold start made them ready; no ANALYZE since
        c.execute(text("UPDATE endpoints SET state = 'ready' WHERE bound_rev <> 7"))
    marked: list[int] = []
    plan = plan_of(engine, lambda s: marked.append(repo.mark_ready_at(s, [7])), "UPDATE")
    assert marked == [PER_HOST]
    assert "Seq Scan on endpoints" not in plan, plan
    assert "ix_endpoints_bound_rev" in plan, plan
