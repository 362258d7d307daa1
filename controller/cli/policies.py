"""``vxplane policy create|ls|show|rm``: network policies from a terminal."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from controller.cli.labels import parse_labels
from controller.cli.output import Output, TokenOpt, call, console, render, render_one
from controller.cli.resources import ApiOpt, OutOpt

policy_app = typer.Typer(
    help="Network policies: which endpoints a selected endpoint accepts or reaches.",
    no_args_is_help=True,
)
NetOpt = Annotated[str, typer.Option("--network", "-n", help="Network of the policy")]
Pairs = Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE")]
Cidrs = Annotated[list[str] | None, typer.Option(metavar="CIDR")]


def parse_port(text: str) -> dict[str, Any]:
    """``tcp/80``, ``udp/53``, ``tcp`` (every TCP port) or ``80`` (TCP) as an API port."""
    proto, slash, number = text.partition("/")
    if not slash:
        proto, number = ("tcp", proto) if proto.isdigit() else (proto, "")
    if proto not in ("tcp", "udp") or (number and not number.isdigit()):
        raise typer.BadParameter(f"{text!r}: write tcp/80, udp/53 or tcp", param_hint="--port")
    port = int(number) if number else None
    if port is not None and not 1 <= port <= 65535:
        raise typer.BadParameter(f"{text!r}: a port is 1 to 65535", param_hint="--port")
    return {"protocol": proto, "port": port}


def policy_body(
    name: str,
    select: list[str] | None,
    ingress_from: list[str] | None,
    egress_to: list[str] | None,
    ingress_cidr: list[str] | None,
    egress_cidr: list[str] | None,
    port: list[str] | None,
) -> dict[str, Any]:
    """The API body of ``vxplane policy create`` (see its help for the rules)."""
    ports = [parse_port(p) for p in port or ()]
    src = parse_labels(ingress_from, "--ingress-from")
    dst = parse_labels(egress_to, "--egress-to")
    egress = bool(egress_to or egress_cidr)
    ingress = bool(ingress_from or ingress_cidr) or not egress
    body: dict[str, Any] = {
        "name": name,
        "selector": {"matchLabels": parse_labels(select, "--select")},
        "policy_types": ["Ingress"] * ingress + ["Egress"] * egress,
    }
    peers: list[dict[str, Any]]
    if ingress:
        peers = [{"selector": {"matchLabels": src}}] if ingress_from else []
        peers += [{"cidr": c} for c in ingress_cidr or ()]
        body["ingress"] = [{"from": peers, "ports": ports}] if peers or ports else []
    if egress:
        peers = [{"selector": {"matchLabels": dst}}] if egress_to else []
        peers += [{"cidr": c} for c in egress_cidr or ()]
        body["egress"] = [{"to": peers, "ports": ports}]
    return body


@policy_app.command("create")
def policy_create(
    name: Annotated[str, typer.Argument(help="Policy name (unique in the network)")],
    network: NetOpt,
    select: Pairs = None,
    ingress_from: Pairs = None,
    egress_to: Pairs = None,
    ingress_cidr: Cidrs = None,
    egress_cidr: Cidrs = None,
    port: Annotated[list[str] | None, typer.Option(metavar="tcp/80")] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Create a policy: the endpoints every --select label matches (none: all of the
    network's) accept only what it allows (ingress) and, with --egress-*, send only what it
    allows. --ingress-from labels (ANDed) and --ingress-cidr name who may connect, --egress-to
    and --egress-cidr where they may connect; --port (repeatable) limits both to those ports.
    Only --select: the selected endpoints accept nothing. Replies to allowed connections
    always pass; endpoints no policy selects stay open (Kubernetes NetworkPolicy semantics).

    vxplane policy create db-from-web --network shop --select app=db --ingress-from app=web
    --port tcp/5432"""
    body = policy_body(name, select, ingress_from, egress_to, ingress_cidr, egress_cidr, port)
    made = call(api, "POST", f"/api/v1/networks/{network}/policies", json=body, token=token)
    if output == Output.json:
        render_one(made, output)
        return
    console.print(f"policy {name} of {network} created: {summary(made)}")


@policy_app.command("ls")
def policy_ls(
    network: NetOpt, api: ApiOpt = None, token: TokenOpt = None, output: OutOpt = Output.table
) -> None:
    """The network's policies."""
    rows = call(api, "GET", f"/api/v1/networks/{network}/policies", token=token)
    if output == Output.table:
        rows = [{"name": r["name"], "policy": summary(r)} for r in rows]
    render(rows, ["name", "policy"], output, f"policies of {network}", empty="no policies")


@policy_app.command("show")
def policy_show(
    name: Annotated[str, typer.Argument(help="Policy name")],
    network: NetOpt,
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.json,
) -> None:
    """One policy (JSON by default: the body as stored)."""
    got = call(api, "GET", f"/api/v1/networks/{network}/policies/{name}", token=token)
    render_one(got if output == Output.json else {**got, "summary": summary(got)}, output)


@policy_app.command("rm")
def policy_rm(
    name: Annotated[str, typer.Argument(help="Policy name")],
    network: NetOpt,
    api: ApiOpt = None,
    token: TokenOpt = None,
) -> None:
    """Delete a policy: what it alone restricted is open again."""
    call(api, "DELETE", f"/api/v1/networks/{network}/policies/{name}", token=token)
    console.print(f"policy {name} of {network} deleted")


def summary(policy: dict[str, Any]) -> str:
    """One line: ``app=db accepts from app=web,10.0.0.0/8 on tcp/5432; sends anywhere``."""

    def pairs(selector: dict[str, Any] | None) -> str:
        labels = (selector or {}).get("matchLabels") or {}
        return ",".join(f"{k}={v}" for k, v in sorted(labels.items())) or "all"

    def rules(items: list[dict[str, Any]], side: str) -> str:
        if not items:
            return "nothing"
        parts = []
        for rule in items:
            peers = [p["cidr"] if p.get("cidr") else pairs(p.get("selector")) for p in rule[side]]
            ports = [f"{p['protocol']}/{p['port'] or '*'}" for p in rule["ports"]]
            parts.append(f"{'|'.join(peers) or 'anyone'} on {'|'.join(ports) or 'any port'}")
        return "; or ".join(parts)

    text = pairs(policy.get("selector"))
    types = policy.get("policy_types") or []
    said = []
    if "Ingress" in types:
        said.append(f"accepts {rules(policy.get('ingress') or [], 'from')}")
    if "Egress" in types:
        said.append(f"sends {rules(policy.get('egress') or [], 'to')}")
    return f"{text} " + ", ".join(said)
