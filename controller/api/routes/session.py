"""The dashboard's session: a token typed once, kept in an HttpOnly, SameSite=Strict cookie.

A browser's EventSource cannot send an Authorization header; the cookie carries the token to
the API and the event stream instead. JavaScript never sees it (HttpOnly), other sites never
send it (SameSite=Strict), and over TLS it is ``Secure``.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request, Response, status

from controller.api.auth import PrincipalDep, resolve
from controller.api.schemas import SessionCreate, SessionPublic
from controller.auth import SESSION_COOKIE, Principal

router = APIRouter(prefix="/api/v1/session", tags=["session"])


def _public(principal: Principal) -> SessionPublic:
    return SessionPublic(
        token_id=principal.token_id,
        role=principal.role,
        host=principal.host,
        expires_at=principal.expires_at,
    )


@router.post("")
async def login(body: SessionCreate, request: Request, response: Response) -> SessionPublic:
    """Check the token and set the session cookie (401 for a bad token)."""
    principal = await resolve(request, body.token)
    max_age = None
    if principal.expires_at is not None:
        max_age = max(0, int((principal.expires_at - datetime.now(UTC)).total_seconds()))
    response.set_cookie(
        SESSION_COOKIE,
        body.token.strip(),
        max_age=max_age,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return _public(principal)


@router.get("")
def whoami(principal: PrincipalDep) -> SessionPublic:
    """Who the request's token (header or cookie) is."""
    return _public(principal)


@router.delete("", status_code=status.HTTP_204_NO_CONTENT)
def logout(request: Request) -> Response:
    """Forget the session cookie (the token itself stays valid)."""
    response = Response(status_code=status.HTTP_204_NO_CONTENT)
    response.delete_cookie(
        SESSION_COOKIE,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
    return response
