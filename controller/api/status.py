"""Domain errors to HTTP status codes, one table for the error handlers and the batch items."""

from __future__ import annotations

from controller.auth import Forbidden, Unauthorized
from controller.errors import Busy, Conflict, InvalidRequest, NotFound, VxplaneError

STATUS_CODES: tuple[tuple[type[VxplaneError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (InvalidRequest, 422),
    (NotFound, 404),
    (Conflict, 409),
    (Busy, 503),
)


def status_of(exc: VxplaneError) -> int:
    """The HTTP status of a domain error (400 for one the table does not name)."""
    return next((code for cls, code in STATUS_CODES if isinstance(exc, cls)), 400)
