"""``vxplane token``: create, list and revoke API tokens (an admin token is needed)."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli.output import (
    Output,
    TokenOpt,
    ago,
    call,
    call_all,
    console,
    err_console,
    render,
)
from controller.cli.resources import ApiOpt, OutOpt

token_app = typer.Typer(
    help="API tokens: admin (everything), agent (one host's agent), viewer (read-only).",
    no_args_is_help=True,
)
TOKEN_COLS = ["id", "role", "host", "description", "created", "expires", "by"]


@token_app.command("create")
def token_create(
    role: Annotated[str, typer.Option("--role", help="admin, agent or viewer")],
    host: Annotated[
        str | None, typer.Option("--host", help="the host an agent token acts for (agent only)")
    ] = None,
    description: Annotated[str, typer.Option(help="what the token is for")] = "",
    expires_in: Annotated[
        float | None, typer.Option("--expires-in", help="seconds until it stops working")
    ] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
) -> None:
    """Make a token and print it as the last line of stdout (it is shown only this once):
    `export VXPLANE_TOKEN=$(vxplane token create --role viewer | tail -n 1)`."""
    if role not in ("admin", "agent", "viewer"):
        raise typer.BadParameter("expected admin, agent or viewer", param_hint="--role")
    body: dict[str, object] = {"role": role, "description": description}
    if host is not None:
        body["host"] = host
    if expires_in is not None:
        body["expires_in"] = expires_in
    made = call(api, "POST", "/api/v1/tokens", json=body, token=token)
    scope = f" for host {made['host']}" if made.get("host") else ""
    err_console.print(
        f"[dim]token {made['id']}: {made['role']}{scope}; keep it, it is not shown again[/]"
    )
    print(made["token"], flush=True)


@token_app.command("ls")
def token_ls(
    revoked: Annotated[bool, typer.Option(help="also list revoked tokens")] = False,
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """List tokens (never their secrets)."""
    rows = call_all(api, "/api/v1/tokens", {"revoked": revoked}, token=token)
    if output == Output.table:
        rows = [
            {
                **r,
                "created": ago(r["created_at"]),
                "expires": r["expires_at"] or "never",
                "by": r["created_by"] or ("bootstrap" if r["bootstrap"] else ""),
                "role": r["role"] + (" (revoked)" if r["revoked_at"] else ""),
            }
            for r in rows
        ]
    render(rows, TOKEN_COLS, output, "tokens")


@token_app.command("revoke")
def token_revoke(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="the token's id (`token ls`)")],
    api: ApiOpt = None,
    token: TokenOpt = None,
) -> None:
    """Revoke a token: it stops working at once on this controller, within 5 s on others."""
    call(api, "DELETE", f"/api/v1/tokens/{token_id}", token=token, hint="`vxplane token ls`")
    console.print(f"revoked token [bold]{token_id}[/]")


@token_app.command("rotate")
def token_rotate(
    token_id: Annotated[str, typer.Argument(metavar="ID", help="the token's id (`token ls`)")],
    grace: Annotated[
        float, typer.Option(help="seconds the old token keeps working, to move its users over")
    ] = 0.0,
    expires_in: Annotated[
        float | None, typer.Option("--expires-in", help="seconds until the new one stops")
    ] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
) -> None:
    """Replace a token: a new one with the same role and host, printed as the last line of
    stdout; the old one stops working now (or after --grace seconds)."""
    body: dict[str, object] = {"grace": grace}
    if expires_in is not None:
        body["expires_in"] = expires_in
    made = call(
        api, "POST", f"/api/v1/tokens/{token_id}/rotate", json=body, token=token,
        hint="`vxplane token ls`",
    )  # fmt: skip
    when = f"in {grace:g} s" if grace else "now"
    err_console.print(
        f"[dim]token {made['id']} replaces {token_id} (which stops working {when}); "
        "keep it, it is not shown again[/]"
    )
    print(made["token"], flush=True)
