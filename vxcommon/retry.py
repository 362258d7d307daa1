"""Retry-After: how long a client waits before it tries a refused request again.

The controller answers 503 with ``Retry-After: <seconds>`` when its write path is saturated
(the write queue is full) or its database is busy; nothing of the request was written, so the
same request may be sent again. Clients (the agent's controller client, the CNI plugin's
agent client) retry such answers a bounded number of times (``BUSY_RETRIES``), each after the
advised delay capped at ``MAX_WAIT``; then they give up with the error, and the runtime
retries later. Pure and stdlib-only (the CNI plugin imports it on every exec).
"""

from __future__ import annotations

import math

BUSY_RETRIES = 3  # retries of one request answered 503 with Retry-After
MAX_WAIT = 5.0  # longest wait (s) honoured before one retry; longer advice is capped

# Keep-alive: the controller's API closes a connection idle for SERVER_KEEPALIVE seconds; the
# agent's client drops its idle connections after CLIENT_KEEPALIVE, well before, so it never
# sends a request on a connection the server is closing at that moment (with both at 5 s, as
# uvicorn's and httpx's defaults are, a request 5 s after the last one could meet the close and
# get "Server disconnected without sending a response": seen once in CI).
SERVER_KEEPALIVE = 30.0
CLIENT_KEEPALIVE = 10.0


def advised_delay(status: int, retry_after: str | None, cap: float = MAX_WAIT) -> float | None:
    """Seconds to wait before retrying an answer with ``status`` and this ``Retry-After``
    header (delay-seconds form), capped at ``cap``; None when the answer is not one to retry
    (not a 503 or 429, or no usable header: an HTTP date is not honoured)."""
    if status not in (429, 503) or retry_after is None:
        return None
    try:
        seconds = float(retry_after.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return min(seconds, cap)
