"""The flow engine on a real database (SQLite and PostgreSQL) through the change log: one
full read at start, then only the rows written; the audit finds nothing, and a row changed
behind the log's back is found by the next audit, reported and adopted."""

from __future__ import annotations

from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.orm import Session, sessionmaker

from controller.db import changelog, repo
from controller.db.changelog import ChangeGroups
from controller.db.session import session_scope
from controller.engine import Engine
from controller.pipeline import desired_flows
from tests.unit.test_engine import OFPFC_ADD, FakeConn

A = IPv4Address


def _read_changes(session: Session, after: int) -> ChangeGroups | None:
    repo.begin_snapshot(session)
    return changelog.read_changes(session, after)


def _engine(
    factory: sessionmaker[Session],
    now: list[float],
    events: list[tuple[str, dict[str, Any]]] | None = None,
    load: Callable[[Session], Any] = repo.load_snapshot,
    **extra: Any,
) -> Engine:
    """The controller's engine on ``factory`` with its change log, on the clock ``now[0]``,
    its events into ``events``; ``extra``: more of ``Engine``'s options."""
    got = events

    def sink(kind: str, **data: Any) -> None:
        if got is not None:
            got.append((kind, data))

    return Engine(
        factory,
        load,
        repo.current_revision,
        repo.mark_ready_at,
        read_changes=_read_changes,
        save_states=repo.save_switch_states,
        prune_log=changelog.prune,
        audit_interval=60,
        bundles="never",  # FakeConn reads plain flow-mods
        on_event=sink,
        clock=lambda: now[0],
        **extra,
    )


def test_engine_follows_the_log_and_audits(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "blue", IPv4Network("10.0.0.0/24"))
        repo.register_host(s, "h1", A("198.18.0.1"), dpid=1)
        repo.register_host(s, "h2", A("198.18.0.2"), dpid=2)
    now = [100.0]
    events: list[tuple[str, dict[str, Any]]] = []
    engine = _engine(factory, now, events)
    engine.refresh()
    conns = {h: FakeConn(d) for h, d in (("h1", 1), ("h2", 2))}
    for conn in conns.values():
        assert engine.switch_connected(conn)
        engine.switch_dump(conn.dpid, [], more=False)
    engine.push()
    for conn in conns.values():
        engine.barrier_reply(conn.dpid, conn.barriers()[-1])
    assert engine.full_reads == 1

    with session_scope(factory) as s:
        _, _, first = repo.attach_endpoint(s, "blue", "first", "h1", 4, create=True)
    recomputed = engine.recomputed
    engine.refresh()  # it claimed h1's first block: a route on every other host
    assert engine.recomputed - recomputed == 2 and engine.waiting_on(first or 0) == ["h1", "h2"]
    engine.push()
    for conn in conns.values():
        engine.barrier_reply(conn.dpid, conn.barriers()[-1])
    with session_scope(factory) as s:
        _, _, rev = repo.attach_endpoint(s, "blue", "a", "h1", 5, create=True)
    assert rev is not None
    sent_h2 = len(conns["h2"].msgs)
    recomputed, patched = engine.recomputed, engine.patched
    engine.refresh()
    engine.push()
    assert engine.full_reads == 1, "the writes were read from the log, not by a full read"
    # a's flows touch h1 only (its block's host), and a bind at home patches h1's flows by
    # a's own instead of recomputing the host
    assert (engine.recomputed - recomputed, engine.patched - patched) == (0, 1)
    assert len(conns["h2"].msgs) == sent_h2
    assert engine.waiting_on(rev) == ["h1"]
    engine.barrier_reply(1, conns["h1"].barriers()[-1])
    assert engine.wait_applied(rev, 0.01)
    engine._housekeeping()  # what the worker does once per poll interval
    with factory() as s:
        assert repo.get_endpoint(s, "blue", "a").state.value == "ready"
        states = repo.switch_states(s)
    assert {h: (w, a) for h, (w, a, _) in states.items()} == {"h1": (3, 3), "h2": (2, 2)}

    now[0] += 61
    engine.refresh()
    assert (engine.audits, engine.audit_mismatches) == (1, 0)
    assert not [kind for kind, _ in events if kind == "engine.audit_mismatch"]

    with session_scope(factory) as s:  # behind the log's back: the audit must find it
        s.execute(text("UPDATE endpoints SET ofport = 9 WHERE name = 'a'"))
    engine.refresh()
    assert engine.audit_mismatches == 0, "not before the audit is due"
    now[0] += 61
    engine.refresh()
    engine.push()
    assert engine.audit_mismatches == 1
    (found,) = [d for k, d in events if k == "engine.audit_mismatch"]
    assert "endpoints: 1 missing" in found["differences"][0]
    with factory() as s:
        want = {f.cookie for f in desired_flows(repo.load_snapshot(s), "h1")}
    assert want <= conns["h1"].cookies(OFPFC_ADD), "the full read was adopted and pushed"


def test_the_audit_reads_in_the_change_reads_snapshot(factory: sessionmaker[Session]) -> None:
    """The audit's full read comes right after the change read, in its snapshot: a write
    committed between the two is the next pass's, not a difference (on PostgreSQL the full
    read began a new transaction and saw it: a bind found 'extra' in the model under churn)."""
    with session_scope(factory) as s:
        repo.create_network(s, "blue", IPv4Network("10.0.0.0/24"))
        repo.register_host(s, "h1", A("198.18.0.1"), dpid=1)
    now = [100.0]
    wrote: list[int] = []

    def write_then_load(session: Session) -> Any:
        if engine.full_reads:  # the audit's read, not the first one: a write commits first
            with session_scope(factory) as other:
                rev = repo.attach_endpoint(other, "blue", "late", "h1", 6, create=True)[2]
                wrote.append(rev or 0)
        return repo.load_snapshot(session)

    engine = _engine(factory, now, load=write_then_load)
    engine.refresh()
    with session_scope(factory) as s:
        repo.attach_endpoint(s, "blue", "a", "h1", 5, create=True)
    now[0] += 61  # the next pass audits
    engine.refresh()
    assert wrote and engine.audits == 1
    assert engine.audit_mismatches == 0, "the write after the change read is the next pass's"
    assert engine.full_reads == 1
    view = engine.intent_view()
    assert view is not None and view.revision == wrote[0] - 1
    assert [e.name for e in view.endpoints] == ["a"]
    engine.refresh()  # and the next pass reads it from the log
    view = engine.intent_view()
    assert view is not None and view.revision == wrote[0]
    assert sorted(e.name for e in view.endpoints) == ["a", "late"]
    assert engine.full_reads == 1 and engine.audit_mismatches == 0


def _paged_engine(
    factory: sessionmaker[Session], now: list[float], events: list[tuple[str, dict[str, Any]]]
) -> Engine:
    return _engine(
        factory, now, events, load_page=repo.load_page,
        audit_page_endpoints=2,  # 6 bound endpoints on 4 hosts: 3 pages
    )  # fmt: skip


def _four_hosts(factory: sessionmaker[Session]) -> dict[str, int]:
    """Four hosts, six bound endpoints (two on h1, h2; one on h3, h4) and one unbound; the
    host row ids by name."""
    with session_scope(factory) as s:
        repo.create_network(s, "blue", IPv4Network("10.0.0.0/24"))
        for i in range(1, 5):
            repo.register_host(s, f"h{i}", A(f"198.18.0.{i}"), dpid=i)
        for n, host in enumerate(("h1", "h1", "h2", "h2", "h3", "h4")):
            repo.attach_endpoint(s, "blue", f"e{n}", host, 10 + n, create=True)
        repo.create_endpoint(s, "blue", "loose")
        ids = {name: id_ for name, id_ in s.execute(text("SELECT name, id FROM hosts"))}
    return ids


def test_the_pages_cover_every_bound_endpoint_once(factory: sessionmaker[Session]) -> None:
    ids = _four_hosts(factory)
    with factory() as s:
        full = repo.load_snapshot(s)
    bound = sorted((e.network, e.name) for e in full.endpoints if e.host)
    for pages in (1, 2, 3, 4, 7):
        seen: list[tuple[str, str]] = []
        hosts_seen: list[str] = []
        for page in range(pages):
            with factory() as s:
                read, hosts = repo.load_page(s, page, pages)
            assert read.revision == full.revision
            assert (read.networks, read.hosts, read.blocks) == (
                full.networks,
                full.hosts,
                full.blocks,
            )
            assert hosts == {h for h, i in ids.items() if i % pages == page}
            assert all(e.host in hosts for e in read.endpoints), "only the page's hosts"
            seen += [(e.network, e.name) for e in read.endpoints]
            hosts_seen += hosts
        assert sorted(seen) == bound, f"{pages} pages: every bound endpoint exactly once"
        assert sorted(hosts_seen) == sorted(ids)
    with factory() as s, pytest.raises(ValueError):
        repo.load_page(s, 3, 3)


def test_a_page_reads_only_its_slice(factory: sessionmaker[Session]) -> None:
    """The page's endpoint statement selects the slice's hosts (``host_id IN``), and the
    database returns only their rows: counted at the cursor."""
    ids = _four_hosts(factory)
    statements: list[tuple[str, Any, int]] = []

    def after(conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: Any) -> None:
        if "FROM endpoints" in statement:
            statements.append((statement, params, cursor.rowcount))

    bind = factory.kw["bind"]
    event.listen(bind, "after_cursor_execute", after)
    try:
        with factory() as s:
            read, hosts = repo.load_page(s, 1, 2)
    finally:
        event.remove(bind, "after_cursor_execute", after)
    ((statement, params, _),) = statements
    assert "IN" in statement
    slice_ids = sorted(i for i in ids.values() if i % 2 == 1)
    values = list(params.values()) if isinstance(params, dict) else list(params)
    assert sorted(v for v in values if isinstance(v, int)) == slice_ids
    want = sum(1 for e in repo.load_snapshot(factory()).endpoints if e.host in hosts)
    assert 0 < len(read.endpoints) == want < 6


def test_a_planted_difference_is_found_by_its_page(factory: sessionmaker[Session]) -> None:
    """A row changed behind the engine's back is found by the page covering its host, not by
    a page before it, and a full read is then adopted; the pages cycle every interval."""
    ids = _four_hosts(factory)
    now = [100.0]
    events: list[tuple[str, dict[str, Any]]] = []
    engine = _paged_engine(factory, now, events)
    engine.refresh()
    assert engine.full_reads == 1 and engine._pages == 3
    now[0] += 20  # 60 s / 3 pages
    for _ in range(3):  # one clean cycle
        engine.refresh()
        engine.refresh()  # not due again before another 20 s
        now[0] += 20
    assert (engine.audits, engine.audit_pages, engine.audit_mismatches) == (1, 3, 0)
    assert engine._page == 0

    target = ids["h3"] % 3  # the page that covers h3
    with session_scope(factory) as s:
        s.execute(text("UPDATE endpoints SET ofport = 99 WHERE name = 'e4'"))  # on h3
    for page in range(target):
        engine.refresh()
        now[0] += 20
        assert engine.audit_mismatches == 0, f"page {page} does not cover h3"
    engine.refresh()
    assert (engine.audit_pages, engine.audit_mismatches, engine.full_reads) == (4 + target, 1, 2)
    (found,) = [d for k, d in events if k == "engine.audit_mismatch"]
    assert "endpoints: 1 missing" in found["differences"][0]
    view = engine.intent_view()
    assert view is not None and {e.name: e.ofport for e in view.endpoints}["e4"] == 99
    assert engine._page == 0, "the full read starts the cycle again"
    now[0] += 60
    for _ in range(3):
        engine.refresh()
        now[0] += 20
    assert engine.audit_mismatches == 1 and engine.full_reads == 2
