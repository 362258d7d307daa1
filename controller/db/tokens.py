"""API tokens in the database: create, find, list, revoke, and the one bootstrap admin token.

Nothing here commits except ``ensure_bootstrap_admin``, which owns its transactions (several
controllers may start at once on one database and must end up with one bootstrap token).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from controller.auth import Principal, Role, hash_secret, new_token
from controller.db.base import begin_write, utcnow
from controller.db.models import TokenRow
from controller.errors import Conflict, InvalidRequest, NotFound


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token as listed (never its secret)."""

    id: str
    role: Role
    host: str | None
    description: str
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    bootstrap: bool


def _record(row: TokenRow) -> TokenRecord:
    return TokenRecord(
        id=row.id,
        role=Role(row.role),
        host=row.host,
        description=row.description,
        created_by=row.created_by,
        created_at=row.created_at,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        bootstrap=row.bootstrap is not None,
    )


def create_token(
    session: Session,
    role: Role,
    *,
    host: str | None = None,
    description: str = "",
    expires_at: datetime | None = None,
    created_by: str | None = None,
) -> tuple[TokenRecord, str]:
    """A new token: its record and the token text (shown once, never stored)."""
    if (role is Role.agent) != (host is not None):
        raise InvalidRequest("an agent token names exactly one host (--host); other roles none")
    now = utcnow()
    if expires_at is not None and expires_at <= now:
        raise InvalidRequest("expires_at is in the past")
    token_id, secret, token = new_token()
    row = TokenRow(
        id=token_id,
        secret_hash=hash_secret(secret),
        role=role.value,
        host=host,
        description=description,
        created_by=created_by,
        created_at=now,
        expires_at=expires_at,
    )
    session.add(row)
    session.flush()
    return _record(row), token


def find(session: Session, token_id: str) -> tuple[Principal, str] | None:
    """The live (not revoked) token ``token_id``: its principal and stored secret hash."""
    row = session.get(TokenRow, token_id)
    if row is None or row.revoked_at is not None:
        return None
    principal = Principal(row.id, Role(row.role), row.host, row.expires_at)
    return principal, row.secret_hash


def list_tokens(
    session: Session,
    include_revoked: bool = False,
    limit: int | None = None,
    after: str | None = None,
) -> list[TokenRecord]:
    """Tokens, oldest first (revoked ones only when asked): at most ``limit``, those listed
    after the token with id ``after`` (paging; ``InvalidRequest`` if there is no such id)."""
    query = select(TokenRow).order_by(TokenRow.created_at, TokenRow.id).limit(limit)
    if not include_revoked:
        query = query.where(TokenRow.revoked_at.is_(None))
    if after is not None:
        last = session.get(TokenRow, after)
        if last is None:
            raise InvalidRequest(
                f"query parameter after: no token {after[:40]!r} (use the Link header's URL)"
            )
        query = query.where(
            or_(
                TokenRow.created_at > last.created_at,
                and_(TokenRow.created_at == last.created_at, TokenRow.id > last.id),
            )
        )
    return [_record(row) for row in session.scalars(query)]


def revoke(session: Session, token_id: str) -> TokenRecord:
    """Revoke a token (idempotent); a revoked bootstrap token's stored copy is erased."""
    row = session.get(TokenRow, token_id)
    if row is None:
        raise NotFound(f"no token {token_id!r}: `vxplane token ls` lists them")
    if row.revoked_at is None:
        row.revoked_at = utcnow()
    row.bootstrap_secret = None
    session.flush()
    return _record(row)


def rotate(
    session: Session,
    token_id: str,
    *,
    grace: float = 0.0,
    expires_at: datetime | None = None,
    created_by: str | None = None,
) -> tuple[TokenRecord, str]:
    """A new token with the old one's role, host and description; the old one stops working
    now, or ``grace`` seconds from now (time to move its clients over)."""
    row = session.get(TokenRow, token_id)
    if row is None:
        raise NotFound(f"no token {token_id!r}: `vxplane token ls` lists them")
    now = utcnow()
    if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
        raise Conflict(f"token {token_id} no longer works: make a new one instead")
    record, token = create_token(
        session,
        Role(row.role),
        host=row.host,
        description=row.description,
        expires_at=expires_at,
        created_by=created_by,
    )
    row.bootstrap_secret = None  # no controller hands out a token that is going away
    if grace <= 0:
        row.revoked_at = now
    else:
        ends = now + timedelta(seconds=grace)
        row.expires_at = ends if row.expires_at is None else min(row.expires_at, ends)
    session.flush()
    return record, token


def _live_admins(session: Session, now: datetime) -> int:
    rows = session.scalars(
        select(TokenRow).where(TokenRow.role == Role.admin.value, TokenRow.revoked_at.is_(None))
    )
    return sum(1 for row in rows if row.expires_at is None or row.expires_at > now)


def ensure_bootstrap_admin(factory: sessionmaker[Session]) -> str | None:
    """The bootstrap admin token's text, made if the database has no live admin token.

    Exactly one is made however many controllers start at once (the ``bootstrap`` column is
    unique: the losers of the race read the winner's). None when the bootstrap token was
    revoked and other admin tokens exist: nothing to hand out.
    """
    for _ in range(5):
        with factory() as session:
            begin_write(session, serialize=True)  # bootstrappers queue here, then read
            row = session.scalars(select(TokenRow).where(TokenRow.bootstrap == 1)).first()
            if row is not None and row.bootstrap_secret is not None:
                return f"vxp_{row.id}_{row.bootstrap_secret}"
            if _live_admins(session, utcnow()) > 0:
                return None
            if row is not None:  # revoked and no admin left: a new bootstrap token
                session.execute(
                    update(TokenRow).where(TokenRow.id == row.id).values(bootstrap=None)
                )
            token_id, secret, token = new_token()
            session.add(
                TokenRow(
                    id=token_id,
                    secret_hash=hash_secret(secret),
                    role=Role.admin.value,
                    description="bootstrap admin token (made at the first start)",
                    created_at=utcnow(),
                    bootstrap=1,
                    bootstrap_secret=secret,
                )
            )
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                continue  # another controller made it first: read theirs
            return token
    raise RuntimeError("could not make or read the bootstrap admin token")
