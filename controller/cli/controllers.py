"""``vxplane controllers``: the members of the controller cluster (``vxplane controller``
runs one)."""

from __future__ import annotations

from typing import Any

import typer

from controller.cli.output import Output, TokenOpt, call, render
from controller.cli.resources import ApiOpt, OutOpt

controllers_app = typer.Typer(
    help="The controllers sharing this database: leases and the switches each masters.",
    no_args_is_help=True,
)

COLS = ["id", "state", "api_url", "openflow", "lease_age", "switches"]


def _row(member: dict[str, Any]) -> dict[str, Any]:
    hosts = [s["host"] or s["dpid"] for s in member["switches"]]
    return {
        "id": member["id"][:12] + (" (this)" if member["this"] else ""),
        "state": "live" if member["alive"] else "lapsed",
        "api_url": member["api_url"],
        "openflow": member["openflow"],
        "lease_age": f"{member['lease_age']:.1f} s",
        "switches": f"{len(hosts)}: {', '.join(hosts)}" if hosts else "0",
    }


@controllers_app.command("ls")
def controllers_ls(
    api: ApiOpt = None, token: TokenOpt = None, output: OutOpt = Output.table
) -> None:
    """List the controllers: live or lapsed, lease age, the switches each masters."""
    members = call(api, "GET", "/api/v1/controllers", token=token)
    if output == Output.json:
        render(members, COLS, output, "controllers")
        return
    render(
        [_row(m) for m in members],
        COLS,
        output,
        "controllers",
        empty="none registered (controllers older than this feature do not register)",
    )
