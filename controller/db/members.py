"""Controller membership and switch mastership in the database (``controllers`` and
``switch_masters``).

``tick`` is one renewal of a member's lease and one rebalance, in one transaction that holds
the cluster-wide lock (``pg_advisory_xact_lock`` on PostgreSQL, the write lock on SQLite), so
concurrent members never write two answers: it renews the member's row (inserting it again
if it was forgotten), reads the live members (``expires_at`` after the database's clock), the
switches (hosts with a datapath id) and their masters, computes ``mastership.assign`` and
writes only the switches whose master changed, each with its generation id one higher. On
PostgreSQL that transaction may not sit idle over a third of the lease: a member stopped
while it holds the lock is cut off by the server rather than stalling every other member.

Every time is the database's clock (``clock_timestamp()`` on PostgreSQL), so members on
machines whose clocks disagree still agree on whose lease lapsed.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, bindparam, delete, func, insert, select, update
from sqlalchemy.orm import Session

from controller import mastership
from controller.db.base import begin_write, dialect, format_dpid, utcnow
from controller.db.models import ControllerMemberRow, HostRow, SwitchMasterRow

LOCK_KEY = 0x76787061  # "vxpa": pg_advisory_xact_lock key of the mastership rebalance
FORGET_AFTER = timedelta(hours=1)  # a dead member's row is removed this long after its lease


@dataclass(frozen=True, slots=True)
class MemberRecord:
    """A controller as the database knows it; ``masters`` are dpids it is assigned."""

    id: str
    api_url: str
    openflow: str
    started_at: datetime
    renewed_at: datetime
    expires_at: datetime
    alive: bool
    lease_age: float  # seconds since the last renewal (database clock)
    masters: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Tick:
    """What one ``tick`` found: the database time, the live members, this member's switches
    (dpid -> generation id) and every switch's current generation id."""

    now: datetime
    live: tuple[str, ...]
    mine: dict[int, int]
    generations: dict[int, int]
    moved: int  # switches whose master this tick changed
    applied: dict[int, int] = field(default_factory=dict)  # dpid -> its master's applied rev
    rejoined: bool = False  # this member's row was missing and was inserted again


def db_now(session: Session) -> datetime:
    """The database's clock (PostgreSQL: ``clock_timestamp()``; SQLite: this process's)."""
    if dialect(session) == "postgresql":
        return session.execute(select(func.clock_timestamp())).scalar_one()  # type: ignore[no-any-return]
    return utcnow()


def _lock(session: Session, idle_limit: float = 1.0) -> None:
    """Take the cluster-wide lock for the rest of the transaction.

    On PostgreSQL the transaction may also sit idle (between two statements) for at most
    ``idle_limit`` seconds: a member stopped while it holds the lock (SIGSTOP, a long GC, a
    partition) would otherwise hold every other member's renewal, and with it the whole
    cluster, until it resumes. The server ends such a session instead; the stopped member's
    renewal then fails and its own lease lapses (``idle_in_transaction_session_timeout``,
    set for this transaction only)."""
    if dialect(session) == "postgresql":
        limit = str(max(1, int(idle_limit * 1000)))
        session.execute(select(func.set_config("idle_in_transaction_session_timeout", limit, True)))
        session.execute(select(func.pg_advisory_xact_lock(LOCK_KEY)))
    else:
        begin_write(session)


def renew(
    session: Session, member: str, api_url: str, openflow: str, lease: float
) -> tuple[datetime, bool]:
    """Renew ``member``'s lease (insert its row if missing); the database time of it, and
    whether the row had to be inserted (a first start, or a member forgotten as dead)."""
    now = db_now(session)
    expires = now + timedelta(seconds=lease)
    done = session.execute(
        update(ControllerMemberRow)
        .where(ControllerMemberRow.id == member)
        .values(renewed_at=now, expires_at=expires, api_url=api_url, openflow=openflow)
    )
    if done.rowcount == 0:  # type: ignore[attr-defined]
        session.add(
            ControllerMemberRow(
                id=member,
                api_url=api_url,
                openflow=openflow,
                started_at=now,
                renewed_at=now,
                expires_at=expires,
            )  # fmt: skip
        )
        session.flush()
    return now, done.rowcount == 0  # type: ignore[attr-defined]


def tick(
    session: Session,
    member: str,
    api_url: str,
    openflow: str,
    lease: float,
    applied: Mapping[int, int] | None = None,
    rebalance: bool = True,
) -> Tick:
    """Renew ``member``, publish the revisions its switches ``applied`` (dpid -> revision,
    only where it is still the master: readiness on every controller) and, with
    ``rebalance``, rebalance mastership (the caller commits). Without it the assignment is
    read as it is: a member that just got its lease back after a lapse (a database outage
    lapses every lease at once) does not take the others' switches before they had a lease
    period to renew theirs."""
    _lock(session, idle_limit=lease / 3)
    now, rejoined = renew(session, member, api_url, openflow, lease)
    table = cast(Table, SwitchMasterRow.__table__)
    if applied:
        # One executemany of a Core statement: at 1,000 switches every revision moves every
        # converged switch's applied revision, and an ORM update per switch (each compiled
        # and evaluated against the session) cost a third of the controller's CPU.
        session.connection().execute(
            update(table)
            .where(
                table.c.dpid == bindparam("d"),
                table.c.controller_id == member,
                table.c.applied_revision < bindparam("r"),
            )
            .values(applied_revision=bindparam("r")),
            [{"d": format_dpid(dpid), "r": revision} for dpid, revision in applied.items()],
        )
    live = tuple(
        sorted(
            session.execute(
                select(ControllerMemberRow.id).where(ControllerMemberRow.expires_at > now)
            ).scalars()
        )
    )
    dpids = [
        int(d, 16)
        for d in session.execute(select(HostRow.dpid).where(HostRow.dpid.is_not(None))).scalars()
        if d is not None
    ]
    # Plain column rows, not ORM objects: a tick runs every second and after every switch
    # that converged, and loading 1,000 ORM rows each time was most of its cost.
    rows = {
        int(dpid, 16): _Master(owner, generation, applied_revision)
        for dpid, owner, generation, applied_revision in session.execute(
            select(
                table.c.dpid, table.c.controller_id, table.c.generation, table.c.applied_revision
            )
        )
    }
    before = {dpid: row.owner for dpid, row in rows.items()}
    after = mastership.assign(dpids, live, before) if rebalance else {}
    bumped = mastership.next_generations(
        before, after, {dpid: row.generation for dpid, row in rows.items()}
    )
    for dpid, owner in after.items():
        row = rows.get(dpid)
        if row is None:
            row = rows[dpid] = _Master(None, 0, 0)
            session.execute(
                insert(table).values(
                    dpid=format_dpid(dpid), controller_id=None, generation=0, applied_revision=0
                )
            )
        if row.owner != owner:
            row.owner = owner
            row.generation = bumped.get(dpid, row.generation)
            session.execute(
                update(table)
                .where(table.c.dpid == format_dpid(dpid))
                .values(controller_id=owner, generation=row.generation)
            )
    return Tick(
        now=now,
        live=live,
        mine={d: r.generation for d, r in rows.items() if r.owner == member},
        generations={d: r.generation for d, r in rows.items()},
        moved=mastership.moves(before, after),
        applied={d: r.applied_revision for d, r in rows.items() if r.owner is not None},
        rejoined=rejoined,
    )


@dataclass(slots=True)
class _Master:
    """A ``switch_masters`` row as ``tick`` reads and changes it."""

    owner: str | None
    generation: int
    applied_revision: int


def leave(session: Session, member: str) -> None:
    """``member`` stops (a clean shutdown): its row goes and its switches are free at once,
    keeping their generation ids (the caller commits)."""
    _lock(session)
    session.execute(
        update(SwitchMasterRow)
        .where(SwitchMasterRow.controller_id == member)
        .values(controller_id=None)
    )
    session.execute(delete(ControllerMemberRow).where(ControllerMemberRow.id == member))


def forget_dead(session: Session, now: datetime) -> int:
    """Remove members whose lease lapsed over ``FORGET_AFTER`` ago; how many (caller commits)."""
    done = session.execute(
        delete(ControllerMemberRow).where(ControllerMemberRow.expires_at < now - FORGET_AFTER)
    )
    return int(done.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class SwitchMaster:
    """Who masters one switch: the member's id, API URL, and whether its lease holds."""

    controller_id: str
    api_url: str
    alive: bool


def masters_of(session: Session, dpids: Collection[int] | None = None) -> dict[int, SwitchMaster]:
    """dpid -> its master, for ``dpids`` (every assigned switch when None); a switch with no
    master, or whose master's row is gone, is left out."""
    query = select(
        SwitchMasterRow.dpid,
        ControllerMemberRow.id,
        ControllerMemberRow.api_url,
        ControllerMemberRow.expires_at,
    ).join(ControllerMemberRow, ControllerMemberRow.id == SwitchMasterRow.controller_id)
    if dpids is not None:
        if not dpids:
            return {}
        query = query.where(SwitchMasterRow.dpid.in_([format_dpid(d) for d in dpids]))
    now = db_now(session)
    return {
        int(dpid, 16): SwitchMaster(member, api_url, expires > now)
        for dpid, member, api_url, expires in session.execute(query)
    }


def list_members(session: Session) -> list[MemberRecord]:
    """Every member the database knows (live first, then by id), with the dpids each masters."""
    now = db_now(session)
    masters: dict[str, list[int]] = {}
    for dpid, owner in session.execute(
        select(SwitchMasterRow.dpid, SwitchMasterRow.controller_id).where(
            SwitchMasterRow.controller_id.is_not(None)
        )
    ):
        masters.setdefault(str(owner), []).append(int(dpid, 16))
    records = [
        MemberRecord(
            id=row.id,
            api_url=row.api_url,
            openflow=row.openflow,
            started_at=row.started_at,
            renewed_at=row.renewed_at,
            expires_at=row.expires_at,
            alive=row.expires_at > now,
            lease_age=max(0.0, (now - row.renewed_at).total_seconds()),
            masters=tuple(sorted(masters.get(row.id, ()))),
        )
        for row in session.execute(select(ControllerMemberRow)).scalars()
    ]
    return sorted(records, key=lambda r: (not r.alive, r.id))
