"""Membership on SQLite and PostgreSQL: leases renew and lapse by the database's clock,
mastership is spread over live members, generation ids only grow, a clean leave frees the
switches at once; the Membership thread stops the roles when its lease lapses."""

from __future__ import annotations

import time
from ipaddress import IPv4Address

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from controller.db import members, migrate, repo
from controller.db.session import make_engine, make_session_factory
from controller.membership import Membership
from controller.roles import Roles

# The production default: long enough for two ticks on a loaded machine, short enough to
# wait out. On PostgreSQL a tick's transaction may sit idle between two statements for a
# third of the lease before the server ends it (members._lock): at 1.5 s that was 0.5 s,
# and a test process descheduled that long inside a tick under heavy load (load average
# 10+) saw its first renewal fail (``renew()`` None), the product's answer to a stalled
# member, not what these tests are about.
LEASE = 3.0


def _hosts(factory: sessionmaker[Session], n: int) -> None:
    with factory() as s:
        for i in range(1, n + 1):
            repo.register_host(s, f"h{i}", IPv4Address(f"198.18.0.{i}"), dpid=i)
        s.commit()


def _tick(factory: sessionmaker[Session], member: str, lease: float = LEASE) -> members.Tick:
    with factory() as s:
        tick = members.tick(s, member, f"http://{member}:8080", f"tcp:{member}:6653", lease)
        s.commit()
        return tick


def test_lease_lapses_and_the_survivor_takes_over_with_newer_generations(
    factory: sessionmaker[Session],
) -> None:
    _hosts(factory, 6)
    _tick(factory, "a")
    b = _tick(factory, "b")
    assert b.live == ("a", "b")
    a = _tick(factory, "a")
    assert len(a.mine) == len(b.mine) == 3 and not set(a.mine) & set(b.mine)
    with factory() as s:
        listed = members.list_members(s)
    assert [(m.id, m.alive, len(m.masters)) for m in listed] == [("a", True, 3), ("b", True, 3)]
    assert listed[0].api_url == "http://a:8080" and listed[0].openflow == "tcp:a:6653"

    time.sleep(LEASE + 0.3)  # b stops renewing; a keeps going
    a2 = _tick(factory, "a")
    assert a2.live == ("a",)
    assert set(a2.mine) == set(range(1, 7))
    for dpid in b.mine:  # b's switches moved: their generation id grew
        assert a2.mine[dpid] > b.mine[dpid]
    for dpid, gen in a.mine.items():  # a's own did not move: same generation
        assert a2.mine[dpid] == gen
    with factory() as s:
        lapsed = {m.id: m for m in members.list_members(s)}["b"]
    assert not lapsed.alive and lapsed.masters == () and lapsed.lease_age >= LEASE

    back = _tick(factory, "b")  # b returns: it gets a share back, with newer ids again
    assert len(back.mine) == 3
    assert all(back.mine[d] > a2.mine[d] for d in back.mine)


def test_leave_frees_switches_at_once_keeping_generations(factory: sessionmaker[Session]) -> None:
    _hosts(factory, 4)
    _tick(factory, "a", lease=30)
    b = _tick(factory, "b", lease=30)
    with factory() as s:
        members.leave(s, "b")
        s.commit()
    a = _tick(factory, "a", lease=30)  # long leases: only the leave can explain the move
    assert set(a.mine) == {1, 2, 3, 4} and a.live == ("a",)
    assert all(a.mine[d] == b.mine[d] + 1 for d in b.mine)
    with factory() as s:
        assert [m.id for m in members.list_members(s)] == ["a"]


def test_forget_dead_removes_only_long_dead_members(factory: sessionmaker[Session]) -> None:
    _tick(factory, "a", lease=LEASE)
    with factory() as s:
        now = members.db_now(s)
        assert members.forget_dead(s, now) == 0
        assert members.forget_dead(s, now + members.FORGET_AFTER + members.FORGET_AFTER) == 1
        s.commit()
        assert members.list_members(s) == []


def test_membership_lapse_stops_every_write_and_a_renewal_asks_again(
    factory: sessionmaker[Session],
) -> None:
    """The Membership thread's deadline is counted from before its renewal; with the
    database gone, the roles refuse writes once it passes."""
    _hosts(factory, 1)
    asked: list[tuple[int, int]] = []

    class Conn:
        dpid = 1

        def request_role(self, role: int, generation: int) -> bool:
            asked.append((role, generation))
            return True

    roles = Roles()
    conn = Conn()
    roles.connected(conn)
    m = Membership(factory, roles, member_id="a", api_url="http://a", openflow="tcp:a:1",
                   lease=LEASE, renew_every=0.2)  # fmt: skip
    tick = m.renew()
    assert tick is not None and tick.mine == {1: 1}
    assert asked == [(2, 1)]  # MASTER, generation 1
    roles.reply(1, conn, 2, 1)
    assert roles.may_write(1, conn)

    class Broken:
        def __call__(self) -> Session:
            raise RuntimeError("database down")

    m._sessions = Broken()  # the database goes away
    assert m.renew() is None and roles.may_write(1, conn)  # within the lease: still valid
    time.sleep(LEASE)
    assert not roles.may_write(1, conn)  # lapsed by the clock alone, before any renewal
    assert m.renew() is None  # the failed renewal past the deadline drops the grant too
    m._sessions = factory
    assert m.renew() is not None
    assert asked[-1] == (2, 1)  # asked again with the same generation (nobody took over)
    assert not roles.may_write(1, conn)  # not before the switch answers
    roles.reply(1, conn, 2, 1)
    assert roles.may_write(1, conn)
    assert roles.step_downs == 0 and roles.resumed == 1  # kept: no step-down, no re-read


class _Switch:
    """A switch connection that records the role requests and answers MASTER on ``grant``."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.asked: list[tuple[int, int]] = []

    def request_role(self, role: int, generation: int) -> bool:
        self.asked.append((role, generation))
        return True

    def grant(self, roles: Roles) -> None:
        role, generation = self.asked[-1]
        roles.reply(self.dpid, self, role, generation)


def _member(factory: sessionmaker[Session], name: str) -> tuple[Membership, Roles]:
    roles = Roles()
    m = Membership(factory, roles, member_id=name, api_url=f"http://{name}",
                   openflow=f"tcp:{name}:1", lease=LEASE, renew_every=0.2)  # fmt: skip
    return m, roles


def test_a_late_renewal_keeps_the_switches_nobody_else_was_granted(
    factory: sessionmaker[Session],
) -> None:
    """A member renewing after its lease ran out (a starved process) while no other member
    ticked: the database still gives it its switches with the same generation ids, so it
    keeps them (no step-down; MASTER asked again with the same generation)."""
    _hosts(factory, 2)
    a, roles = _member(factory, "a")
    sw = {d: _Switch(d) for d in (1, 2)}
    for conn in sw.values():
        roles.connected(conn)
    first = a.renew()
    assert first is not None and first.mine == {1: 1, 2: 1} and first.rejoined  # its row new
    for conn in sw.values():
        conn.grant(roles)
    assert all(roles.may_write(d, c) for d, c in sw.items())
    time.sleep(LEASE + 0.2)  # the next renewal comes after the lease
    late = a.renew()
    assert late is not None and late.mine == first.mine and not late.rejoined
    assert roles.step_downs == 0
    assert [c.asked for c in sw.values()] == [[(2, 1), (2, 1)]] * 2
    for conn in sw.values():
        conn.grant(roles)
    assert all(roles.may_write(d, c) for d, c in sw.items()) and roles.resumed == 2


def test_a_late_renewal_steps_down_where_another_member_was_granted_the_switch(
    factory: sessionmaker[Session],
) -> None:
    """Fencing through the database: while a's lease had lapsed, b ticked and took a's
    switch with a newer generation id; a's late renewal steps down there (and asks SLAVE
    with b's generation), keeping nothing it could not prove."""
    _hosts(factory, 2)
    a, roles_a = _member(factory, "a")
    b, _ = _member(factory, "b")
    a.renew()
    b.renew()
    first = a.renew()
    assert first is not None and len(first.mine) == 1
    ((dpid, gen),) = first.mine.items()
    conn = _Switch(dpid)
    roles_a.connected(conn)
    conn.grant(roles_a)
    assert roles_a.may_write(dpid, conn)
    time.sleep(LEASE / 2)
    assert b.renew() is not None
    time.sleep(LEASE / 2 + 0.2)  # a's lease is over, b's is not
    taken = b.renew()
    assert taken is not None and taken.live == ("b",) and taken.mine[dpid] == gen + 1
    late = a.renew()
    assert late is not None and dpid not in late.mine
    assert roles_a.step_downs == 1 and roles_a.resumed == 0
    assert not roles_a.may_write(dpid, conn) and conn.asked[-1] == (3, gen + 1)  # SLAVE


def test_a_renewal_that_inserts_the_member_row_again_keeps_no_grant(
    factory: sessionmaker[Session],
) -> None:
    """Our member row gone (forgotten as dead): the renewal inserts it again and says so;
    nothing held before is kept."""
    _hosts(factory, 1)
    a, roles = _member(factory, "a")
    conn = _Switch(1)
    roles.connected(conn)
    assert a.renew() is not None
    conn.grant(roles)
    with factory() as s:
        s.execute(text("DELETE FROM controllers WHERE id = 'a'"))
        s.commit()
    time.sleep(LEASE + 0.2)
    again = a.renew()
    assert again is not None and again.rejoined
    assert roles.step_downs == 1 and not roles.may_write(1, conn)


def test_applied_revisions_are_published_by_the_master_only(
    factory: sessionmaker[Session],
) -> None:
    _hosts(factory, 2)
    _tick(factory, "a", lease=30)
    b = _tick(factory, "b", lease=30)
    (theirs,) = b.mine
    with factory() as s:  # a claims to have applied 9 on b's switch too: ignored there
        a = members.tick(s, "a", "http://a", "tcp:a:1", 30, applied={1: 9, 2: 9})
        s.commit()
    (mine,) = a.mine
    assert a.applied == {mine: 9, theirs: 0}
    with factory() as s:  # never lowered
        a = members.tick(s, "a", "http://a", "tcp:a:1", 30, applied={mine: 3})
        s.commit()
    assert a.applied[mine] == 9


def test_after_a_lapse_a_member_waits_a_lease_before_taking_switches(
    factory: sessionmaker[Session],
) -> None:
    """A database outage lapses every lease at once: the first member back must not take
    the others' switches before they could renew."""
    _hosts(factory, 2)
    roles_a, roles_b = Roles(), Roles()
    a = Membership(factory, roles_a, member_id="a", api_url="http://a", openflow="tcp:a:1",
                   lease=LEASE, renew_every=0.2)  # fmt: skip
    b = Membership(factory, roles_b, member_id="b", api_url="http://b", openflow="tcp:b:1",
                   lease=LEASE, renew_every=0.2)  # fmt: skip
    a.renew()
    tb = b.renew()
    ta = a.renew()
    assert ta is not None and tb is not None and len(ta.mine) == len(tb.mine) == 1
    time.sleep(LEASE + 0.2)  # both lapse (the outage)
    back = a.renew()  # a is back first: b's lease looks lapsed, yet a takes nothing
    assert back is not None and back.live == ("a",) and back.mine == ta.mine
    deadline = time.monotonic() + LEASE + 0.2  # both renew through a's grace and past it
    while time.monotonic() < deadline:
        got_b, got_a = b.renew(), a.renew()
        assert got_a is not None and got_a.mine == ta.mine and got_a.moved == 0
        assert got_b is not None and got_b.mine == tb.mine
        time.sleep(0.1)
    assert got_a.live == ("a", "b")


@pytest.mark.postgres
def test_a_member_stopped_while_holding_the_lock_does_not_stall_the_others(
    pg_db_url: str,
) -> None:
    """A member stopped (SIGSTOP) inside its tick holds the cluster-wide lock; PostgreSQL
    ends its session once it sits idle there, so the others renew and take its switches."""
    migrate.upgrade(pg_db_url)
    engine = make_engine(pg_db_url)
    factory = make_session_factory(engine)
    try:
        _hosts(factory, 2)
        _tick(factory, "a")
        _tick(factory, "b")
        stopped = factory()
        members.tick(stopped, "a", "http://a:8080", "tcp:a:6653", LEASE)  # holds the lock
        with factory() as s:  # b waits for the lock (bounded here: without the limit, a
            # stopped member would hold it for as long as it stays stopped)
            s.execute(text("SET LOCAL statement_timeout = '20s'"))
            b = members.tick(s, "b", "http://b:8080", "tcp:b:6653", LEASE)
            s.commit()
        assert b.live == ("a", "b")  # a's renewal never committed; its old lease still runs
        with pytest.raises(DBAPIError):  # the server ended a's idle session
            stopped.commit()
        stopped.close()
    finally:
        engine.dispose()


def test_a_lone_member_is_not_renewed_per_write_or_converged_switch(
    factory: sessionmaker[Session],
) -> None:
    """``poke_shared`` (a write, a converged switch) renews at once only while another
    member is live: alone, the periodic renewal publishes soon enough for nobody."""
    _hosts(factory, 2)
    a, _ = _member(factory, "a")
    a.poke_shared()  # before any renewal: who else is live is not known
    assert a._wake.is_set()
    a._wake.clear()
    assert a.renew() is not None
    a.poke_shared()
    assert not a._wake.is_set(), "alone: a write or a converged switch renews nothing"
    a.poke()  # a switch came or went: always
    assert a._wake.is_set()
    a._wake.clear()
    b, _ = _member(factory, "b")
    assert b.renew() is not None
    seen = a.renew()
    assert seen is not None and seen.live == ("a", "b")
    a.poke_shared()
    assert a._wake.is_set(), "b may wait on a's applied revisions"
