"""Paging of the list routes: ``?limit=`` and ``&after=``, and a ``Link: rel="next"`` header.

Every list stays a JSON array. A route reads at most ``limit`` items (default 1,000, at most
10,000; outside that 422) ordered by a stable key (a name, or network then name); when there
are more, it answers with ``Link: </api/v1/...?limit=N&after=KEY>; rel="next"``, a relative
reference that repeats the request's other query parameters with ``after`` set to the key of
the page's last item. A client follows ``next`` until there is none (``vxcommon.paging``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Annotated, TypeVar

from fastapi import Query, Request, Response

DEFAULT_LIMIT = 1000
MAX_LIMIT = 10000

T = TypeVar("T")

Limit = Annotated[
    int,
    Query(
        ge=1,
        le=MAX_LIMIT,
        description=f"at most this many items (1 to {MAX_LIMIT}); more are announced by a "
        '`Link: <...>; rel="next"` header',
    ),
]
After = Annotated[
    str | None,
    Query(
        max_length=512,
        description="the key of the last item of the previous page (use the `Link` header)",
    ),
]

LINK_HEADER = {
    "Link": {
        "description": 'present when there are more items: `<URL of the next page>; rel="next"`',
        "schema": {"type": "string"},
    }
}


def page(
    request: Request, response: Response, items: Sequence[T], limit: int, key: Callable[[T], str]
) -> list[T]:
    """The first ``limit`` of ``items`` (read with ``limit + 1``, so that one more says there
    is a next page), and the ``Link`` header of the next page when there is one."""
    shown = list(items[:limit])
    if len(items) > limit:
        url = request.url.include_query_params(limit=limit, after=key(shown[-1]))
        response.headers["Link"] = f'<{url.path}?{url.query}>; rel="next"'
    return shown
