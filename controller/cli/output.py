"""CLI plumbing: the API client, tables or JSON output, and errors that say what to do."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from enum import StrEnum
from typing import Any, NoReturn

import httpx
import typer
from rich.console import Console
from rich.table import Table

DEFAULT_API = "http://127.0.0.1:8080"
console = Console()
err_console = Console(stderr=True)


class Output(StrEnum):
    """Listing formats."""

    table = "table"
    json = "json"


def api_url(api: str | None) -> str:
    """The API base URL: --api, else $VXPLANE_API, else the local default."""
    return (api or os.environ.get("VXPLANE_API") or DEFAULT_API).rstrip("/")


def fail(message: str, hint: str | None = None, code: int = 1) -> NoReturn:
    """Print an error (and what to do about it) and exit."""
    err_console.print(f"[bold red]error:[/] {message}")
    if hint:
        err_console.print(f"[dim]hint:[/] {hint}")
    raise typer.Exit(code)


def call(api: str | None, method: str, path: str, **kwargs: Any) -> Any:
    """Call the controller API; turn transport errors and 4xx/5xx into clear CLI errors."""
    base = api_url(api)
    try:
        resp = httpx.request(method, base + path, timeout=30.0, **kwargs)
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
        fail(f"{detail} (HTTP {resp.status_code})")
    if resp.status_code == 204 or not resp.content:
        return None
    return resp.json()


def render(rows: Sequence[dict[str, Any]], columns: Sequence[str], output: Output, title: str) -> None:
    """Print rows as an aligned table, or as JSON for scripts."""
    if output == Output.json:
        typer.echo(json.dumps(list(rows), indent=2, default=str))
        return
    table = Table(title=title, title_justify="left", header_style="bold")
    for col in columns:
        table.add_column(col.upper().replace("_", " "))
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
