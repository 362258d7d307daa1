"""Domain exceptions, raised by the core and the repository and mapped once to HTTP codes.

``InvalidRequest`` -> 422, ``NotFound`` -> 404, ``Conflict`` -> 409 (``AddressExhausted``
is a conflict with existing state: the subnet is full); ``Busy`` -> 503 with ``Retry-After``.
The message is shown to the user as is, so it says what is wrong and, where it helps, what to
do.
"""

from __future__ import annotations


class VxplaneError(Exception):
    """Base of every domain error; ``message`` is the user-facing text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidRequest(VxplaneError):
    """The request is malformed or asks for something impossible (HTTP 422)."""


class NotFound(VxplaneError):
    """A named object does not exist (HTTP 404)."""


class Conflict(VxplaneError):
    """The request conflicts with existing state (HTTP 409)."""


class AddressExhausted(Conflict):
    """No address (or VNI) is left to allocate (HTTP 409)."""


class Busy(VxplaneError):
    """A limit is reached for now (HTTP 503); the client may retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: int = 5) -> None:
        super().__init__(message)
        self.retry_after = retry_after
