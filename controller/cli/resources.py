"""``vxplane network|endpoint|host``: the API's resources from a terminal."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from controller.cli.output import (
    Output,
    TokenOpt,
    ago,
    call,
    call_all,
    console,
    render,
    render_one,
)

ApiOpt = Annotated[
    str | None,
    typer.Option(
        "--api",
        help="Controller API URL; several comma-separated (a cluster: the next is tried when "
        "one cannot be reached) [env: VXPLANE_API; default http://127.0.0.1:8080]",
    ),
]
OutOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]

network_app = typer.Typer(
    help="Create, list, show and remove virtual networks.", no_args_is_help=True
)
endpoint_app = typer.Typer(help="List and inspect endpoints.", no_args_is_help=True)
host_app = typer.Typer(help="List hosts and their switches.", no_args_is_help=True)

STATUS_STYLE = {
    "converged": "[green]{}[/]",
    "lagging": "[yellow]{}[/]",
    "disconnected": "[dark_orange]{}[/]",
    "lost": "[bold red]{}[/]",
}
NET_COLS = ["name", "vni", "subnet", "gateway", "subnet6", "external", "endpoints"]
EP_COLS = ["network", "name", "ip", "ip6", "mac", "host", "ofport", "state"]
HOST_COLS = [
    "name",
    "status",
    "underlay_ip",
    "switch",
    "flows",
    "applied",
    "endpoints",
    "heartbeat",
    "master",
]


@network_app.command("create")
def network_create(
    name: Annotated[str, typer.Argument(help="Network name, e.g. blue")],
    subnet: Annotated[str, typer.Option(help="IPv4 subnet in CIDR form, e.g. 10.10.0.0/24")],
    gateway: Annotated[str | None, typer.Option(help="Gateway IP [default: first address]")] = None,
    vni: Annotated[int | None, typer.Option(help="VXLAN network id [default: lowest free]")] = None,
    reclaim: Annotated[
        bool,
        typer.Option(
            "--reclaim",
            help="When the subnet is full, give a new endpoint the address of the oldest "
            "unbound reservation [default: only of one unbound longer than its TTL]",
        ),
    ] = False,
    reservation_ttl: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="Seconds an unbound endpoint surely keeps its address; 0: for good "
            "[default: the controller's, 86400]",
        ),
    ] = None,
    external: Annotated[
        bool,
        typer.Option(
            "--external",
            help="Its endpoints reach addresses outside the overlay through their own host "
            "(translated to the host's egress address) [default: sealed; admin token]",
        ),
    ] = False,
    subnet6: Annotated[
        str | None,
        typer.Option(
            help="Dual stack: IPv6 prefix of at most /96, e.g. fd00:10::/64 (each endpoint's "
            "IPv6 address is the prefix plus its IPv4 address as the low 32 bits) "
            "[default: IPv4 only]",
        ),
    ] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Create a network (two networks may use the same subnet; they stay isolated; IPv6
    subnets may not overlap)."""
    body: dict[str, object] = {"name": name, "subnet": subnet}
    if gateway:
        body["gateway"] = gateway
    if vni is not None:
        body["vni"] = vni
    if reclaim:
        body["reclaim"] = True
    if reservation_ttl is not None:
        body["reservation_ttl"] = reservation_ttl
    if external:
        body["external"] = True
    if subnet6:
        body["subnet6"] = subnet6
    net = call(api, "POST", "/api/v1/networks", json=body, token=token)
    if output == Output.json:
        render_one(net, output)
    else:
        out = " external" if net.get("external") else ""
        six = f" {net['subnet6']}" if net.get("subnet6") else ""
        console.print(
            f"created{out} network [bold]{net['name']}[/] {net['subnet']}{six} vni {net['vni']}"
        )


@network_app.command("set")
def network_set(
    name: Annotated[str, typer.Argument(help="Network name")],
    external: Annotated[
        bool | None,
        typer.Option(
            "--external/--no-external",
            help="Give its endpoints a way out through their hosts' gateways, or seal it",
        ),
    ] = None,
    subnet6: Annotated[
        str | None,
        typer.Option(help="Make it dual stack with this IPv6 prefix (at most /96)"),
    ] = None,
    no_subnet6: Annotated[
        bool, typer.Option("--no-subnet6", help="Make it IPv4 only again")
    ] = False,
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Change a network (PATCH /api/v1/networks/NAME): vxplane network set blue --external,
    vxplane network set blue --subnet6 fd00:10::/64"""
    body: dict[str, object] = {}
    if external is not None:
        body["external"] = external
    if subnet6 is not None and no_subnet6:
        raise typer.BadParameter("give --subnet6 or --no-subnet6, not both")
    if subnet6 is not None or no_subnet6:
        body["subnet6"] = subnet6
    if not body:
        raise typer.BadParameter(
            "nothing to change: give --external, --no-external, --subnet6 or --no-subnet6"
        )
    net = call(api, "PATCH", f"/api/v1/networks/{name}", json=body, token=token)
    if output == Output.json:
        render_one(net, output)
    else:
        how = f"external (zone {net.get('zone')})" if net.get("external") else "sealed"
        six = f", dual stack {net['subnet6']}" if net.get("subnet6") else ""
        six = six or (", IPv4 only" if "subnet6" in body else "")
        console.print(f"network [bold]{net['name']}[/] is {how}{six}")


@network_app.command("ls")
def network_ls(api: ApiOpt = None, token: TokenOpt = None, output: OutOpt = Output.table) -> None:
    """List networks."""
    render(
        call_all(api, "/api/v1/networks", token=token),
        NET_COLS,
        output,
        "networks",
        empty="no networks yet: `vxplane network create blue --subnet 10.10.0.0/24`",
    )


@network_app.command("show")
def network_show(
    name: Annotated[str, typer.Argument(help="Network name")],
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Show one network and its endpoints."""
    net = call(
        api,
        "GET",
        f"/api/v1/networks/{name}",
        hint="list them with `vxplane network ls`",
        token=token,
    )
    eps = call_all(api, "/api/v1/endpoints", {"network": name}, token=token)
    if output == Output.json:
        render_one({**net, "endpoint_list": eps}, output)
        return
    render_one(net, output)
    render(eps, EP_COLS, output, f"endpoints of {name}")


@network_app.command("rm")
def network_rm(
    name: Annotated[str, typer.Argument(help="Network name")],
    api: ApiOpt = None,
    token: TokenOpt = None,
) -> None:
    """Remove a network (refused while endpoints are attached)."""
    call(api, "DELETE", f"/api/v1/networks/{name}", token=token)
    console.print(f"removed network [bold]{name}[/]")


@endpoint_app.command("ls")
def endpoint_ls(
    network: Annotated[str | None, typer.Option(help="Only this network")] = None,
    host: Annotated[str | None, typer.Option(help="Only this host")] = None,
    state: Annotated[
        str | None, typer.Option(help="Only this state: reserved, pending or ready")
    ] = None,
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """List endpoints: name, address, host and state (reserved, pending, ready)."""
    params = {k: v for k, v in {"network": network, "host": host, "state": state}.items() if v}
    render(
        call_all(api, "/api/v1/endpoints", params, token=token),
        EP_COLS,
        output,
        "endpoints",
        empty="no endpoints" + (" match" if params else " yet"),
    )


@endpoint_app.command("show")
def endpoint_show(
    network: Annotated[str, typer.Argument(help="Network name")],
    name: Annotated[str, typer.Argument(help="Endpoint name")],
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Show one endpoint."""
    render_one(
        call(
            api,
            "GET",
            f"/api/v1/networks/{network}/endpoints/{name}",
            hint=f"list them with `vxplane endpoint ls --network {network}`",
        ),
        output,
    )


def master_text(master: dict[str, Any] | None, role: str | None) -> str:
    """Who masters a host's switch, as a table cell: its API URL, "(this)" when it is the
    controller that answered, else the answering controller's own role there."""
    if not master:
        return "-"
    text = master["api_url"] or master["id"][:12]
    if not master["alive"]:
        text += " [red](lapsed)[/]"
    if master["this"]:
        return text + " (this" + ("" if role in (None, "master") else f", {role} so far") + ")"
    return text + (f" (this one: {role})" if role else "")


@host_app.command("ls")
def host_ls(api: ApiOpt = None, token: TokenOpt = None, output: OutOpt = Output.table) -> None:
    """List hosts: status (converged, lagging, disconnected, lost), OpenFlow connection, flow
    count, applied / wanted revision, endpoints, heartbeat age, and the controller that
    masters the host's switch (with this controller's own role there when it is another)."""
    hosts = call_all(api, "/api/v1/hosts", token=token)
    if output == Output.json:
        render(hosts, HOST_COLS, output, "hosts")
        return
    rows = []
    for h in hosts:
        sw = h.get("switch") or {}
        applied = sw.get("applied_revision", "-")
        rows.append(
            {
                **h,
                "status": STATUS_STYLE.get(h["status"], "{}").format(h["status"]),
                "switch": ("connected " + (sw.get("address") or ""))
                if sw.get("connected")
                else ("down" if sw else "never connected"),
                "applied": f"{applied} / {h['wanted_revision']}",
                "flows": sw.get("flow_count"),
                "heartbeat": ago(h.get("last_seen")),
                "master": master_text(h.get("master"), sw.get("role")),
            }
        )
    render(rows, HOST_COLS, output, "hosts", empty="no hosts registered: start `vxplane agent`")


@endpoint_app.command("history")
def endpoint_history(
    network: Annotated[str, typer.Argument(help="Network name")],
    name: Annotated[str, typer.Argument(help="Endpoint name")],
    limit: Annotated[int, typer.Option(help="Newest steps to show", min=1, max=1000)] = 100,
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Where the endpoint has been: binds, moves between hosts, unbinds (newest first)."""
    moves = call(
        api,
        "GET",
        f"/api/v1/networks/{network}/endpoints/{name}/history",
        params={"limit": limit},
        hint=f"list the endpoints with `vxplane endpoint ls --network {network}`",
    )
    if output == Output.table:
        moves = [{**m, "at": m["at"][:19].replace("T", " ")} for m in moves]
    render(
        moves,
        ["at", "kind", "from_host", "host", "ofport", "revision"],
        output,
        f"history of {network}/{name}",
        empty=f"{network}/{name} was never bound to a host",
    )


PUB_COLS = ["network", "endpoint", "host_port", "port", "proto", "host", "address"]


def parse_mapping(text: str) -> tuple[int, int, str]:
    """``HOSTPORT:PORT[/tcp|udp]`` -> (host port, port, protocol); BadParameter if not."""
    spec, _, proto = text.partition("/")
    proto = proto or "tcp"
    host_port, sep, port = spec.partition(":")
    if not sep or proto not in ("tcp", "udp") or not (host_port.isdigit() and port.isdigit()):
        raise typer.BadParameter(f"{text!r}: expected HOSTPORT:PORT[/tcp|udp], e.g. 8080:80")
    return int(host_port), int(port), proto


@endpoint_app.command("publish")
def endpoint_publish(
    network: Annotated[str, typer.Argument(help="Network (external) of the endpoint")],
    name: Annotated[str, typer.Argument(help="Endpoint name")],
    mapping: Annotated[
        str, typer.Argument(help="HOSTPORT:PORT[/tcp|udp]: host port 1..32767 to the port")
    ],
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Publish a port: connections to HOSTPORT on the egress address of the endpoint's host
    (wherever it is bound; it follows the endpoint) reach the endpoint's PORT.

    vxplane endpoint publish shop web 8080:80"""
    host_port, port, proto = parse_mapping(mapping)
    body = {"endpoint": name, "host_port": host_port, "port": port, "proto": proto}
    pub = call(api, "POST", f"/api/v1/networks/{network}/publications", json=body, token=token)
    if output == Output.json:
        render_one(pub, output)
        return
    where = (
        f"now {pub['address']}:{pub['host_port']} on {pub['host']}"
        if pub.get("address")
        else "reachable once it is bound to a host with an egress address"
    )
    console.print(
        f"published {network}/{name} port {port}/{proto} as host port {host_port} ({where})"
    )


@endpoint_app.command("unpublish")
def endpoint_unpublish(
    network: Annotated[str, typer.Argument(help="Network")],
    host_port: Annotated[str, typer.Argument(help="HOSTPORT[/tcp|udp]")],
    api: ApiOpt = None,
    token: TokenOpt = None,
) -> None:
    """Stop publishing a host port: vxplane endpoint unpublish shop 8080"""
    number, _, proto = host_port.partition("/")
    proto = proto or "tcp"
    if not number.isdigit() or proto not in ("tcp", "udp"):
        raise typer.BadParameter(f"{host_port!r}: expected HOSTPORT[/tcp|udp]")
    call(api, "DELETE", f"/api/v1/networks/{network}/publications/{proto}/{number}", token=token)
    console.print(f"host port {number}/{proto} of {network} unpublished")


@endpoint_app.command("publications")
def endpoint_publications(
    network: Annotated[str, typer.Argument(help="Network")],
    api: ApiOpt = None,
    token: TokenOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """The network's published ports and where each is reachable now."""
    rows = call(api, "GET", f"/api/v1/networks/{network}/publications", token=token)
    render(rows, PUB_COLS, output, "publications", empty="no published ports")
