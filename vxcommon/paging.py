"""Following the controller's paged lists: every client reads a list through ``collect``.

A list route answers one page (a JSON array) and, when there is more, a
``Link: </api/v1/...?limit=N&after=KEY>; rel="next"`` header (docs/api.md, "Paging"). The
next URL is relative to the controller's base URL and already carries the request's filters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, Protocol

_NEXT_RE = re.compile(r'<([^>]*)>\s*;[^,]*\brel="?next"?', re.IGNORECASE)


class PageResponse(Protocol):
    """What ``collect`` needs of an HTTP response (an ``httpx.Response`` has it)."""

    @property
    def headers(self) -> Mapping[str, str]: ...

    def json(self) -> Any: ...


def next_url(link: str | None) -> str | None:
    """The ``rel="next"`` URL of a ``Link`` header, or None."""
    if not link:
        return None
    match = _NEXT_RE.search(link)
    return match.group(1) if match else None


def collect(
    fetch: Callable[[str, Mapping[str, Any] | None], PageResponse],
    path: str,
    params: Mapping[str, Any] | None = None,
    max_pages: int = 10_000,
) -> list[Any]:
    """Every item of the list at ``path``: ``fetch(path, params)`` gets one page; the pages
    after it are fetched from their ``Link`` URLs, which carry the parameters themselves, with
    ``params`` None (httpx would replace the URL's query with any dict, even an empty one)."""
    items: list[Any] = []
    url: str | None = path
    query = params
    for _ in range(max_pages):
        if url is None:
            return items
        resp = fetch(url, query)
        items.extend(resp.json())
        url, query = next_url(resp.headers.get("link")), None
    raise RuntimeError(f"{path}: more than {max_pages} pages; the Link headers loop")
