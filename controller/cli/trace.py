"""``vxplane trace``: follow one packet from an endpoint to another through the model of the
switches, table by table and host by host (GET /api/v1/networks/{network}/trace)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table

from controller.cli.output import Output, TokenOpt, call, console, fail
from controller.cli.resources import ApiOpt, OutOpt

DELIVERED, DROPPED, USAGE, DISAGREE = 0, 1, 2, 3


def trace(
    network: Annotated[str, typer.Argument(help="the network both endpoints are in")],
    src: Annotated[str, typer.Argument(help="source endpoint: its name, IPv4 or IPv6 address")],
    dst: Annotated[str, typer.Argument(help="destination: an endpoint's name or an address")],
    tcp: Annotated[int | None, typer.Option("--tcp", help="a TCP packet to this port")] = None,
    udp: Annotated[int | None, typer.Option("--udp", help="a UDP packet to this port")] = None,
    icmp: Annotated[bool, typer.Option("--icmp", help="an ICMP echo request [default]")] = False,
    src_ip: Annotated[
        str | None,
        typer.Option(
            "--src-ip",
            help="send from SRC's port with this source address instead of its own (what "
            "does port security do with a spoofed packet)",
        ),
    ] = None,
    model_only: Annotated[
        bool, typer.Option("--model-only", help="do not ask the real switches on the path")
    ] = False,
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Why can (or can't) SRC reach DST: one packet through the controller's model of every
    switch and the real switches on its path, with the flow, the policy rule or the port
    security check that decided. Exit status: 0 delivered, 1 dropped, 2 bad usage or
    unknown endpoint, 3 the model and a switch disagree or a host did not answer."""
    chosen = [(p, n) for p, n in (("tcp", tcp), ("udp", udp)) if n is not None]
    if len(chosen) + icmp > 1:
        fail("give one of --tcp PORT, --udp PORT or --icmp", code=USAGE)
    protocol, port = chosen[0] if chosen else ("icmp", None)
    params: dict[str, Any] = {
        "src": src, "dst": dst, "protocol": protocol, "switches": not model_only,
    }  # fmt: skip
    if port is not None:
        params["port"] = port
    if src_ip is not None:
        params["src_ip"] = src_ip
    got = call(
        api,
        "GET",
        f"/api/v1/networks/{network}/trace",
        hint="`vxplane network ls` and `vxplane endpoint ls --network NET` list what exists",
        token=token,
        refused=USAGE,
        params=params,
    )
    if output == Output.json:
        typer.echo(json.dumps(got, indent=2))
    else:
        _show(got)
    if got.get("agree") is False:
        raise typer.Exit(DISAGREE)
    raise typer.Exit(DELIVERED if got["verdict"] == "delivered" else DROPPED)


def _show(got: dict[str, Any]) -> None:
    what = got["protocol"] + (f"/{got['port']}" if got.get("port") else "")
    dst = f"{got['dst']} ({got['dst_ip']})" if got.get("dst") else got["dst_ip"]
    console.print(f"[bold]{got['network']}[/]: {got['src']} ({got['src_ip']}) -> {dst}, {what}")
    table = Table(title="model", title_justify="left", header_style="bold")
    for col in ("host", "table", "cookie", "priority", "match", "actions"):
        table.add_column(col.upper(), overflow="fold")
    for s in got["model"]["steps"]:
        table.add_row(
            s["host"], f"{s['table']} {s['table_name']}", s["cookie"] or "(no match)",
            "" if s["priority"] is None else str(s["priority"]), s["match"], s["actions"],
        )  # fmt: skip
    console.print(table)
    for note in got.get("policy") or []:
        console.print(f"  policy: {note}")
    for hop in got["model"]["hops"]:
        console.print(f"  tunnel {hop['from_host']} -> {hop['to_host']} (VNI {hop['vni']})")
    for sw in got.get("switches") or []:
        if not sw["answered"] or sw["error"]:
            console.print(f"  switch {sw['host']}: [red]{sw['error']}[/]")
            continue
        seen = " ".join(f"{s['table']}:{s['cookie'] or 'miss'}" for s in sw["steps"])
        mark = "[green]agrees[/]" if sw["agrees"] else "[bold red]DIFFERS from the model[/]"
        console.print(f"  switch {sw['host']}: {mark}: {seen} -> {sw['datapath_actions']}")
    colour = "green" if got["verdict"] == "delivered" else "red"
    console.print(f"[bold {colour}]{got['verdict']}[/]: {got['reason']}")
    if got.get("agree") is False:
        console.print(
            "[bold red]the switches and the model disagree[/] (or a host did not answer): "
            "a bug, a lagging or a tampered switch"
        )
