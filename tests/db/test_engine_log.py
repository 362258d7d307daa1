"""The flow engine on a real database (SQLite and PostgreSQL) through the change log: one
full read at start, then only the rows written; the audit finds nothing, and a row changed
behind the log's back is found by the next audit, reported and adopted."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network
from typing import Any

from sqlalchemy import text
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


def test_engine_follows_the_log_and_audits(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "blue", IPv4Network("10.0.0.0/24"))
        repo.register_host(s, "h1", A("198.18.0.1"), dpid=1)
        repo.register_host(s, "h2", A("198.18.0.2"), dpid=2)
    now = [100.0]
    events: list[tuple[str, dict[str, Any]]] = []
    engine = Engine(
        factory,
        repo.load_snapshot,
        repo.current_revision,
        repo.mark_ready_at,
        read_changes=_read_changes,
        save_states=repo.save_switch_states,
        prune_log=changelog.prune,
        audit_interval=60,
        bundles="never",  # FakeConn reads plain flow-mods
        on_event=lambda kind, **data: events.append((kind, data)),
        clock=lambda: now[0],
    )
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

    engine = Engine(
        factory,
        write_then_load,
        repo.current_revision,
        repo.mark_ready_at,
        read_changes=_read_changes,
        save_states=repo.save_switch_states,
        prune_log=changelog.prune,
        audit_interval=60,
        bundles="never",
        clock=lambda: now[0],
    )
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
