"""``vxplane events`` (follow the live stream) and ``vxplane status`` (the overlay at a glance)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import httpx
import typer

from controller.cli.output import (
    Output,
    TokenOpt,
    api_url,
    api_urls,
    call,
    call_all,
    console,
    err_console,
    fail,
    http_options,
)
from controller.cli.resources import ApiOpt, OutOpt

TYPE_STYLE = {
    "endpoint": "cyan",
    "host": "bright_blue",
    "network": "magenta",
    "switch": "dim",
    "host.lost": "bold red",
    "switch.disconnected": "red",
    "host.alive": "green",
}


def _style(kind: str) -> str:
    return TYPE_STYLE.get(kind) or TYPE_STYLE.get(kind.split(".")[0], "")


def print_event(event: dict[str, Any], output: Output) -> None:
    """One event: a JSON line, or ``time  type  summary`` aligned."""
    if output == Output.json:
        typer.echo(json.dumps(event, separators=(",", ":")))
        return
    try:
        stamp = datetime.fromisoformat(event["time"]).astimezone().strftime("%H:%M:%S")
    except (KeyError, ValueError):
        stamp = "--:--:--"
    kind = event.get("type", "?")
    style = _style(kind)
    label = f"[{style}]{kind:<20}[/]" if style else f"{kind:<20}"
    console.print(f"[dim]{stamp}[/]  {label} {event.get('summary', '')}", highlight=False)


def sse_messages(lines: Iterator[str]) -> Iterator[tuple[str, str, str | None]]:
    """(event name, data, id) of each message of a server-sent event stream."""
    name, ident = "message", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield name, "\n".join(data), ident
            name, data, ident = "message", [], None
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            elif field == "id":
                ident = value


def events(
    follow: Annotated[
        bool, typer.Option("--follow/--no-follow", "-f", help="Keep following new events")
    ] = True,
    last: Annotated[
        int, typer.Option("--last", "-n", help="Recent events to show first", min=0, max=10000)
    ] = 20,
    types: Annotated[
        str | None,
        typer.Option("--type", "-t", help="Only these types or families: endpoint,host.lost,..."),
    ] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Show recent events, then follow the live stream (Ctrl-C to stop); -o json: JSON lines.
    Given several controllers (--api URL1,URL2), it resumes on the next one, where it left
    off, when the stream breaks (event ids are the cluster's)."""
    params: dict[str, Any] = {"limit": max(last, 1)}
    if types:
        params["types"] = types
    recent = call(api, "GET", "/api/v1/events/recent", params=params, token=token)
    shown = recent["events"][-last:] if last else []
    for event in shown:
        print_event(event, output)
    if not follow:
        return
    ids = [e["id"] for e in shown if isinstance(e.get("id"), int)]
    at = _Position(max([recent["last_id"], *ids]), recent["epoch"])  # none printed twice
    bases = api_urls(api)  # event ids are the cluster's: resume on any controller given
    turn = 0
    try:
        while True:
            try:
                _follow(bases[turn], token, at, types, output)
            except httpx.HTTPError as exc:
                turn = (turn + 1) % len(bases)
                err_console.print(
                    f"[yellow]event stream interrupted ({exc}); resuming after event "
                    f"{at.cursor} from {bases[turn]}...[/]"
                )
                time.sleep(1.0 if turn == 0 else 0.1)
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@dataclass
class _Position:
    """Where a follow is: the id of the last event printed (or of the start) and the log's
    epoch. Kept by the caller and moved as each event is printed, so a stream that breaks
    after it delivered events (its controller killed) is resumed after the last one printed,
    not after the id the broken connection started from (which printed those events twice)."""

    cursor: int
    epoch: str


def _follow(base: str, token: str | None, at: _Position, types: str | None, output: Output) -> None:
    params: dict[str, Any] = {"after": at.cursor}
    if types:
        params["types"] = types
    timeout = httpx.Timeout(10.0, read=None)
    headers, verify = http_options(token)
    url = base + "/api/v1/events"
    with (
        httpx.Client(verify=verify, timeout=timeout) as client,
        client.stream("GET", url, params=params, headers=headers) as resp,
    ):
        if resp.status_code >= 400:
            fail(f"the controller refused the event stream (HTTP {resp.status_code})")
        for name, data, ident in sse_messages(resp.iter_lines()):
            if name == "hello":
                hello = json.loads(data)
                if hello["epoch"] != at.epoch:
                    err_console.print(
                        "[yellow]another event log (another database): event ids start over[/]"
                    )
                    at.epoch = hello["epoch"]
            elif name == "resync":
                err_console.print("[yellow]some events were missed (the stream fell behind)[/]")
            elif name == "message":
                print_event(json.loads(data), output)
                if ident and ident.isdigit():
                    at.cursor = int(ident)


def status(api: ApiOpt = None, token: TokenOpt = None, output: OutOpt = Output.table) -> None:
    """The overlay at a glance: hosts and their convergence, networks, endpoints, revision,
    and the controllers sharing the database (lease age, the switches each masters)."""
    health = call(api, "GET", "/healthz", token=token)
    hosts = call_all(api, "/api/v1/hosts", token=token)
    networks = call_all(api, "/api/v1/networks", token=token)
    endpoints = call_all(api, "/api/v1/endpoints", token=token)
    try:
        members: list[dict[str, Any]] | None = call(api, "GET", "/api/v1/controllers", token=token)
    except typer.Exit:  # the database names the members: the rest is served from memory
        members = None
    by_status: dict[str, list[str]] = {}
    for h in hosts:
        by_status.setdefault(h["status"], []).append(h["name"])
    by_state: dict[str, int] = {}
    for e in endpoints:
        by_state[e["state"]] = by_state.get(e["state"], 0) + 1
    summary = {
        "controller": api_url(api),
        "revision": health["revision"],
        "hosts": len(hosts),
        "hosts_by_status": by_status,
        "networks": len(networks),
        "endpoints": len(endpoints),
        "endpoints_by_state": by_state,
        "converged": bool(hosts) and len(by_status.get("converged", [])) == len(hosts),
        "controllers": None
        if members is None
        else [
            {
                "id": m["id"],
                "api_url": m["api_url"],
                "alive": m["alive"],
                "lease_age": m["lease_age"],
                "this": m["this"],
                "masters": [s["host"] or s["dpid"] for s in m["switches"]],
            }
            for m in members
        ],
    }
    if output == Output.json:
        typer.echo(json.dumps(summary, indent=2))
        return
    console.print(f"[bold]controller[/]  {summary['controller']}  (revision {health['revision']})")
    cluster = summary["controllers"]
    if cluster is None:
        console.print("[bold]controllers[/] [yellow]unknown (see the error above)[/]")
        cluster = []
    else:
        live = [m for m in cluster if m["alive"]]
        lapsed = len(cluster) - len(live)
        console.print(
            f"[bold]controllers[/] {len(live)} live" + (f", {lapsed} lapsed" if lapsed else "")
        )
    for m in cluster:
        masters = ", ".join(m["masters"]) or "no switch"
        name = (m["api_url"] or m["id"][:12]) + (" (this)" if m["this"] else "")
        state = f"lease {m['lease_age']:.1f} s" if m["alive"] else "[red]lease lapsed[/]"
        console.print(f"  {name}: {state}, masters {masters}")
    parts = [f"{len(v)} {k}" for k, v in sorted(by_status.items())]
    console.print(f"[bold]hosts[/]       {len(hosts)}" + (f": {', '.join(parts)}" if parts else ""))
    for state in ("lost", "disconnected", "lagging"):
        if by_status.get(state):
            console.print(f"  [red]{state}:[/] {', '.join(by_status[state])}")
    console.print(f"[bold]networks[/]    {len(networks)}")
    states = ", ".join(f"{n} {s}" for s, n in sorted(by_state.items()))
    console.print(f"[bold]endpoints[/]   {len(endpoints)}" + (f": {states}" if states else ""))
    if summary["converged"]:
        console.print("[green]every switch has applied the current revision[/]")
    elif hosts:
        console.print("[yellow]not every switch is converged: see `vxplane host ls`[/]")
