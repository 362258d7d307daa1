"""Tokens (admin only): create (the only time a token's text is shown), list, revoke."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import cast

from fastapi import APIRouter, Request, Response, status

from controller.api.auth import Authenticator, PrincipalDep, admin_only
from controller.api.deps import SessionDep
from controller.api.paging import DEFAULT_LIMIT, LINK_HEADER, After, Limit, page
from controller.api.schemas import TokenCreate, TokenCreated, TokenPublic, TokenRotate
from controller.auth import Role
from controller.db import tokens

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


@router.post("", status_code=status.HTTP_201_CREATED)
@admin_only
def create_token(body: TokenCreate, session: SessionDep, principal: PrincipalDep) -> TokenCreated:
    """A new token; its text is in the answer and nowhere else (keep it)."""
    expires = datetime.now(UTC) + timedelta(seconds=body.expires_in) if body.expires_in else None
    record, token = tokens.create_token(
        session,
        Role(body.role),
        host=body.host,
        description=body.description,
        expires_at=expires,
        created_by=principal.token_id,
    )
    session.commit()
    return TokenCreated(**TokenPublic.model_validate(record).model_dump(), token=token)


@router.get("", responses={200: {"headers": LINK_HEADER}})
@admin_only
def list_tokens(
    session: SessionDep,
    request: Request,
    response: Response,
    revoked: bool = False,
    limit: Limit = DEFAULT_LIMIT,
    after: After = None,
) -> list[TokenPublic]:
    """Live tokens, oldest first (``?revoked=true``: revoked ones too); paged (the key is
    the token's id)."""
    records = tokens.list_tokens(session, revoked, limit=limit + 1, after=after)
    shown = page(request, response, records, limit, lambda r: r.id)
    return [TokenPublic.model_validate(r) for r in shown]


@router.delete("/{token_id}")
@admin_only
def revoke_token(token_id: str, session: SessionDep, request: Request) -> TokenPublic:
    """Revoke a token: it stops working at once here, within seconds on other controllers."""
    record = tokens.revoke(session, token_id)
    session.commit()
    cast(Authenticator, request.app.state.auth).forget(token_id)
    return TokenPublic.model_validate(record)


@router.post("/{token_id}/rotate", status_code=status.HTTP_201_CREATED)
@admin_only
def rotate_token(
    token_id: str,
    body: TokenRotate,
    session: SessionDep,
    principal: PrincipalDep,
    request: Request,
) -> TokenCreated:
    """A new token with the same role and host (its text is in the answer, once); the old
    one stops working now, or after ``grace`` seconds. 409 if the old one no longer works."""
    expires = datetime.now(UTC) + timedelta(seconds=body.expires_in) if body.expires_in else None
    record, token = tokens.rotate(
        session, token_id, grace=body.grace, expires_at=expires, created_by=principal.token_id
    )
    session.commit()
    cast(Authenticator, request.app.state.auth).forget(token_id)
    return TokenCreated(**TokenPublic.model_validate(record).model_dump(), token=token)
