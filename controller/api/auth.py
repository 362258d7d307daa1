"""Authentication and authorization of API requests (the rules are in ``controller.auth``).

Every route but ``/healthz``, the dashboard's static files and ``POST/DELETE /api/v1/session``
sits behind ``gate``: it finds the request's token (``Authorization: Bearer``, or the
dashboard's session cookie), and lets it through when its role may use the route. Reads are
open to every role unless a route is marked ``admin_only``; writes are admin's unless a route
names more roles with ``@allow``. Routes open to agents then check the host scope themselves
(``controller.auth.require_host``, ``require_endpoint_scope``) with the ``PrincipalDep`` they
receive.

A checked token is remembered for ``CACHE_SECONDS`` (a sha256 and a dict lookup instead of a
database read on every call of the attach path): a token revoked on another controller stops
working within that time; on this one at once. While the database cannot be reached, a token
this controller checked in the last ``OUTAGE_GRACE`` seconds is still honoured (its reads are
served from memory, its writes refused with 503); any other token gets the 503.

A browser's cookie is sent by any page the browser loads: the cookie is SameSite=Strict, and
a write carried by the cookie must also come from the same origin (``Sec-Fetch-Site`` or
``Origin``), so another site cannot make the dashboard's browser write.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any, TypeVar, cast
from urllib.parse import urlsplit

from fastapi import Depends, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session, sessionmaker
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from controller.api import stale
from controller.auth import (
    SESSION_COOKIE,
    Forbidden,
    Principal,
    Role,
    Unauthorized,
    hash_secret,
    parse_token,
    secret_matches,
)
from controller.db import tokens

CACHE_SECONDS = 5.0
OUTAGE_GRACE = 900.0  # s a checked token is honoured while the database is unreachable
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_ROLES_ATTR = "__vxplane_write_roles__"
_ADMIN_READ_ATTR = "__vxplane_admin_only__"

F = TypeVar("F", bound=Callable[..., Any])


def allow(*roles: Role) -> Callable[[F], F]:
    """Mark a write route as open to ``roles`` besides admin (the route checks the scope)."""

    def mark(fn: F) -> F:
        setattr(fn, _ROLES_ATTR, frozenset(roles))
        return fn

    return mark


def admin_only(fn: F) -> F:
    """Mark a route (reads included) as admin's alone."""
    setattr(fn, _ADMIN_READ_ATTR, True)
    return fn


class Authenticator:
    """Turns a token into its principal: database lookup, cached for ``CACHE_SECONDS``."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory = factory
        self._cache: dict[str, tuple[Principal, float]] = {}
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The principal if this token was checked less than ``CACHE_SECONDS`` ago."""
        key = hash_secret(token)
        with self._lock:
            hit = self._cache.get(key)
        if hit is None or time.monotonic() - hit[1] > CACHE_SECONDS:
            return None
        return hit[0]

    def check(self, token: str) -> Principal:
        """Look the token up (a database read); ``Unauthorized`` unless it is live."""
        token_id, secret = parse_token(token)
        try:
            with self.factory() as session:
                found = tokens.find(session, token_id)
        except Exception as exc:
            if not stale.unreachable(exc):
                raise
            with self._lock:
                hit = self._cache.get(hash_secret(token))
            if hit is None or time.monotonic() - hit[1] > OUTAGE_GRACE:
                raise
            return hit[0]  # checked recently: honoured while the database is away
        if found is None or not secret_matches(secret, found[1]):
            raise Unauthorized("unknown or revoked token")
        principal = found[0]
        with self._lock:
            if len(self._cache) > 10_000:  # bound the cache: forget everything, re-check
                self._cache.clear()
            self._cache[hash_secret(token)] = (principal, time.monotonic())
        return principal

    def forget(self, token_id: str) -> None:
        """Drop a revoked token from the cache at once."""
        with self._lock:
            for key, (principal, _) in list(self._cache.items()):
                if principal.token_id == token_id:
                    del self._cache[key]


def _token_of(request: Request) -> tuple[str, bool]:
    """The request's token and whether it came from the session cookie."""
    header = request.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthorized("expected the header 'Authorization: Bearer <token>'")
        return value.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        return cookie, True
    raise Unauthorized(
        "this API needs a token: send 'Authorization: Bearer <token>' "
        "(`vxplane token create`; the admin token is in /var/lib/vxplane/admin-token)"
    )


def _same_origin(request: Request) -> bool:
    """Whether a cookie-carried write comes from the dashboard itself."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def resolve(request: Request, token: str) -> Principal:
    """The live principal of ``token`` (cached, else read in a worker thread)."""
    auth = cast(Authenticator, request.app.state.auth)
    principal = auth.cached(token)
    if principal is None:
        principal = await run_in_threadpool(auth.check, token)
    if principal.expired(datetime.now(UTC)):
        raise Unauthorized(f"token {principal.token_id} expired at {principal.expires_at}")
    return principal


async def authenticate(request: Request) -> Principal:
    """The principal of the request (401 without a valid token)."""
    token, from_cookie = _token_of(request)
    if from_cookie and request.method not in SAFE_METHODS and not _same_origin(request):
        raise Forbidden("a write with the session cookie must come from the dashboard's origin")
    return await resolve(request, token)


PrincipalDep = Annotated[Principal, Depends(authenticate)]


async def gate(request: Request, principal: PrincipalDep) -> Principal:
    """Router-level check: may this principal use this route at all?"""
    if principal.role is Role.admin:
        return principal
    endpoint = request.scope.get("endpoint")
    if getattr(endpoint, _ADMIN_READ_ATTR, False):
        raise Forbidden(f"only an admin token may use {request.url.path}")
    if request.method in SAFE_METHODS:
        return principal
    if principal.role in getattr(endpoint, _ROLES_ATTR, frozenset()):
        return principal
    raise Forbidden(f"a {principal.role} token may not {request.method} {request.url.path}")


class HostHeaderMiddleware:
    """Answer 400 to a request whose Host header is not one of ``allowed`` (DNS rebinding:
    a page on another site resolving its name to this address reaches the API with its own
    name as Host). ``*`` allows any."""

    def __init__(self, app: ASGIApp, allowed: list[str]) -> None:
        self.app = app
        self.any = "*" in allowed
        self.allowed = {host.lower().strip("[]") for host in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or self.any:
            await self.app(scope, receive, send)
            return
        host = ""
        for key, value in scope.get("headers", ()):
            if key == b"host":
                host = value.decode("latin-1")
                break
        name = host.lower()
        name = name[1 : name.index("]")] if name.startswith("[") and "]" in name else name
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
        if name in self.allowed:
            await self.app(scope, receive, send)
            return
        response = JSONResponse(
            {
                "detail": f"Host header {host!r} is not allowed here; start the controller "
                "with --allowed-host NAME for each name clients use to reach it"
            },
            status_code=400,
        )
        await response(scope, receive, send)
