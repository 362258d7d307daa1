"""CLI plumbing: the API client, tables or JSON output, and errors that say what to do."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

from vxcommon.paging import collect

DEFAULT_API = "http://127.0.0.1:8080"
# Piped output is not cut at 80 columns: tables stay on one line per row for grep and less.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True)


class Output(StrEnum):
    """Listing formats."""

    table = "table"
    json = "json"


def api_urls(api: str | None) -> list[str]:
    """The API base URLs: --api, else $VXPLANE_API, else the local default; several
    controllers of one cluster comma-separated (``http://`` is added when the scheme is left
    out: ``10.0.0.5:8080``)."""
    given = (api or os.environ.get("VXPLANE_API") or DEFAULT_API).split(",")
    urls = [u.strip().rstrip("/") for u in given if u.strip()] or [DEFAULT_API]
    return [u if "://" in u else "http://" + u for u in urls]


def api_url(api: str | None) -> str:
    """The first of ``api_urls``."""
    return api_urls(api)[0]


TOKEN_FILE = "/var/lib/vxplane/admin-token"
TokenOpt = Annotated[
    str | None,
    typer.Option(
        "--token",
        help="API token [env: VXPLANE_TOKEN; default: the admin token file "
        "$VXPLANE_TOKEN_FILE or /var/lib/vxplane/admin-token, when readable]",
        show_default=False,
    ),
]


def api_token(token: str | None) -> str | None:
    """--token, else $VXPLANE_TOKEN, else the admin token file if this user can read it."""
    if token:
        return token.strip()
    if os.environ.get("VXPLANE_TOKEN"):
        return os.environ["VXPLANE_TOKEN"].strip()
    path = os.environ.get("VXPLANE_TOKEN_FILE") or TOKEN_FILE
    try:
        with open(path) as file:
            return file.read().strip() or None
    except OSError:
        return None


def http_options(token: str | None) -> tuple[dict[str, str], str | bool]:
    """The headers (the bearer token, see ``api_token``) and the ``verify`` of a call:
    $VXPLANE_CA to check the API's TLS certificate against, else the system's CAs."""
    resolved = api_token(token)
    headers = {"Authorization": f"Bearer {resolved}"} if resolved else {}
    return headers, os.environ.get("VXPLANE_CA") or True


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print an error (and what to do about it) and exit."""
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}")
    raise typer.Exit(code)


STATUS_HINTS = {
    404: "check the name; `vxplane network ls`, `vxplane host ls` and `vxplane endpoint ls` "
    "list what exists",
    401: "pass a token: --token, VXPLANE_TOKEN, or run as root on the controller's machine "
    "(it reads /var/lib/vxplane/admin-token); `vxplane token create` makes tokens",
    403: "this token's role may not do that: use an admin token, or one for the right host",
    503: "the controller's database is busy or unreachable: retry in a moment, and check the "
    "controller's log",
}


def call(
    api: str | None,
    method: str,
    path: str,
    hint: str | None = None,
    token: str | None = None,
    refused: int = 1,
    **kwargs: Any,
) -> Any:
    """Call the controller API with the token (see ``api_token``); turn transport errors and
    4xx/5xx into clear CLI errors (exit status 1; ``refused`` for a 404, 409 or 422). ``hint``
    is printed under a 404 (what to run to find the right name)."""
    resp = _send(api, token, method, path, hint, refused=refused, **kwargs)
    if resp.status_code == 204 or not resp.content:
        return None
    return resp.json()


def call_all(
    api: str | None,
    path: str,
    params: dict[str, Any] | None = None,
    hint: str | None = None,
    token: str | None = None,
) -> list[Any]:
    """Every item of a paged list (``GET``), following its ``Link: rel="next"`` headers."""
    return collect(
        lambda url, query: _send(api, token, "GET", url, hint, params=query), path, params
    )


def _send(
    api: str | None,
    token: str | None,
    method: str,
    path: str,
    hint: str | None,
    refused: int = 1,
    **kwargs: Any,
) -> Any:
    bases = api_urls(api)
    headers, verify = http_options(token)
    headers = {**headers, **kwargs.pop("headers", {})}
    for i, base in enumerate(bases):
        try:
            resp = httpx.request(
                method, base + path, timeout=30.0, headers=headers, verify=verify, **kwargs
            )
            break
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            if i + 1 < len(bases):  # never reached it: the next controller of the cluster
                continue
            fail(
                f"cannot reach the controller at {', '.join(bases)}: {exc}",
                "start it with `vxplane controller`, or point --api / VXPLANE_API at it",
            )
        except httpx.HTTPError as exc:
            fail(
                f"cannot reach the controller at {base}: {exc}",
                "start it with `vxplane controller`, or point --api / VXPLANE_API at it",
            )
    if resp.status_code >= 400:
        try:
            detail = resp.json().get("detail", resp.text)
        except ValueError:
            detail = resp.text
        if not isinstance(detail, str):
            detail = "; ".join(
                f"{'.'.join(str(p) for p in d.get('loc', [])[1:])}: {d.get('msg')}" for d in detail
            )
        code = resp.status_code
        fail(
            f"{detail} (HTTP {code})",
            (hint if code == 404 else None) or STATUS_HINTS.get(code),
            refused if code in (404, 409, 422) else 1,
        )
    return resp


def render(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    output: Output,
    title: str,
    empty: str | None = None,
) -> None:
    """Print rows as an aligned table, or as JSON for scripts (``empty``: said when none)."""
    if output == Output.json:
        typer.echo(json.dumps(list(rows), indent=2, default=str))
        return
    if not rows and empty:
        console.print(f"[dim]{title}:[/] {empty}")
        return
    table = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        table.add_column(col.upper().replace("_", " "), no_wrap=True)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
    console.print(table)


def render_one(obj: dict[str, Any], output: Output) -> None:
    """Print one object as key/value lines, or JSON."""
    if output == Output.json:
        typer.echo(json.dumps(obj, indent=2, default=str))
        return
    width = max(len(k) for k in obj) if obj else 0
    for key, value in obj.items():
        console.print(f"[bold]{key.ljust(width)}[/]  {'' if value is None else value}")


def ago(iso: str | None, now: datetime | None = None) -> str:
    """``"3 s ago"`` for an ISO timestamp from the API; ``"never"`` for None."""
    if not iso:
        return "never"
    try:
        then = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    except ValueError:
        return iso
    secs = int(((now or datetime.now(UTC)) - then).total_seconds())
    if secs < 2:
        return "just now"
    if secs < 60:
        return f"{secs} s ago"
    if secs < 3600:
        return f"{secs // 60} min ago"
    if secs < 86400:
        return f"{secs // 3600} h ago"
    return f"{secs // 86400} d ago"
