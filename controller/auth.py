"""Who may do what: API tokens, roles and the rules of each role (no web framework here).

A token reads ``vxp_<id>_<secret>``: ``id`` (12 hex digits) is public and names the token in
``vxplane token ls`` and in events; ``secret`` (43 URL-safe characters, 256 bits) is never
stored, only its SHA-256 (a salt adds nothing to a random 256-bit secret).

Roles:

- ``admin``: everything, tokens included.
- ``agent`` of one host H: reads everything; registers and heartbeats H only; creates
  networks and deletes those without a bound endpoint (the Docker driver does both); creates,
  binds, unbinds and deletes endpoints bound to H or to no host (or to a host whose heartbeat
  is lost: a container restarted elsewhere after its host died keeps its address); binds only
  to H.
- ``viewer``: reads everything but tokens (dashboards, metrics).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from controller.errors import VxplaneError

TOKEN_RE = re.compile(r"^vxp_([0-9a-f]{12})_([A-Za-z0-9_-]{43})$")
SESSION_COOKIE = "vxplane_session"


class Role(StrEnum):
    """What a token may do (see the module docstring)."""

    admin = "admin"
    agent = "agent"
    viewer = "viewer"


class Unauthorized(VxplaneError):
    """No credential, or one that is unknown, expired or revoked (HTTP 401)."""


class Forbidden(VxplaneError):
    """A valid credential whose role does not allow the request (HTTP 403)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """The token a request came with: ``name`` is what events record (``agent:3fa9c0d21b7e``)."""

    token_id: str
    role: Role
    host: str | None = None
    expires_at: datetime | None = None

    @property
    def name(self) -> str:
        return f"{self.role}:{self.token_id}"

    def expired(self, now: datetime) -> bool:
        return self.expires_at is not None and now >= self.expires_at


def new_token() -> tuple[str, str, str]:
    """A fresh ``(id, secret, token)``."""
    token_id = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    return token_id, secret, f"vxp_{token_id}_{secret}"


def parse_token(token: str) -> tuple[str, str]:
    """``(id, secret)`` of a well-formed token; ``Unauthorized`` otherwise."""
    match = TOKEN_RE.match(token.strip())
    if match is None:
        raise Unauthorized("malformed token: expected vxp_<id>_<secret>")
    return match.group(1), match.group(2)


def hash_secret(secret: str) -> str:
    """SHA-256 of a token's secret, as 64 hex digits (what the database keeps)."""
    return hashlib.sha256(secret.encode()).hexdigest()


def secret_matches(secret: str, stored_hash: str) -> bool:
    """Constant-time comparison of a secret with a stored hash."""
    return hmac.compare_digest(hash_secret(secret), stored_hash)


def require_host(principal: Principal, host: str, what: str) -> None:
    """An agent may act only for its own host."""
    if principal.role is Role.agent and principal.host != host:
        raise Forbidden(
            f"this token is the agent of host {principal.host!r}: it may not {what} host {host!r}"
        )


def require_endpoint_scope(
    principal: Principal, bound_host: str | None, bound_host_alive: bool, what: str
) -> None:
    """An agent may touch an endpoint bound to its host, to no host, or to a lost host."""
    if principal.role is not Role.agent or bound_host in (None, principal.host):
        return
    if not bound_host_alive:
        return
    raise Forbidden(
        f"the endpoint is bound to host {bound_host!r}; the agent of {principal.host!r} "
        f"may not {what} it (unbind it there first, or use an admin token)"
    )
