"""Domain exceptions of the host agent, mapped once to HTTP codes by the agent's API."""

from __future__ import annotations

import math


class AgentError(Exception):
    """Base class: ``status`` is the HTTP code the agent's API answers with."""

    status = 500

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class InvalidRequest(AgentError):
    """Bad input (unknown network namespace, bad name, clashing interface)."""

    status = 422


class NotFound(AgentError):
    """A named thing (network namespace, endpoint) does not exist."""

    status = 404


class Conflict(AgentError):
    """The request clashes with existing state."""

    status = 409


class OvsError(AgentError):
    """An ovs-vsctl command failed."""

    status = 500


class LinkError(AgentError):
    """A netlink or ethtool operation failed."""

    status = 500


class NotReady(AgentError):
    """The controller did not confirm the endpoint's flows in time."""

    status = 504


class ControllerUnavailable(AgentError):
    """The controller cannot be reached (connection refused, timeout), or answered 5xx;
    ``retry_after``: the seconds it advised (503 with ``Retry-After``), passed on by the
    agent's API in its own ``Retry-After``."""

    status = 503

    def __init__(self, detail: str, retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.retry_after = retry_after


def retry_headers(exc: AgentError) -> dict[str, str] | None:
    """``Retry-After`` for an error that carries the controller's advice (503 when its write
    path was saturated), so the CNI plugin waits as the controller asked."""
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is None:
        return None
    return {"Retry-After": str(math.ceil(retry_after))}
