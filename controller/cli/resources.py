"""``vxplane network|endpoint|host``: the API's resources from a terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli.output import Output, call, console, render, render_one

ApiOpt = Annotated[
    str | None,
    typer.Option("--api", help="Controller API URL [env: VXPLANE_API; default http://127.0.0.1:8080]"),
]
OutOpt = Annotated[Output, typer.Option("--output", "-o", help="table or json")]

network_app = typer.Typer(help="Create, list, show and remove virtual networks.", no_args_is_help=True)
endpoint_app = typer.Typer(help="List and inspect endpoints.", no_args_is_help=True)
host_app = typer.Typer(help="List hosts and their switches.", no_args_is_help=True)

NET_COLS = ["name", "vni", "subnet", "gateway", "endpoints"]
EP_COLS = ["network", "name", "ip", "mac", "host", "ofport", "state"]
HOST_COLS = ["name", "underlay_ip", "dpid", "alive", "switch", "applied", "flows", "last_seen"]


@network_app.command("create")
def network_create(
    name: Annotated[str, typer.Argument(help="Network name, e.g. blue")],
    subnet: Annotated[str, typer.Option(help="IPv4 subnet in CIDR form, e.g. 10.10.0.0/24")],
    gateway: Annotated[str | None, typer.Option(help="Gateway IP [default: first address]")] = None,
    vni: Annotated[int | None, typer.Option(help="VXLAN network id [default: lowest free]")] = None,
    api: ApiOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Create a network (two networks may use the same subnet; they stay isolated)."""
    body: dict[str, object] = {"name": name, "subnet": subnet}
    if gateway:
        body["gateway"] = gateway
    if vni is not None:
        body["vni"] = vni
    net = call(api, "POST", "/api/v1/networks", json=body)
    if output == Output.json:
        render_one(net, output)
    else:
        console.print(f"created network [bold]{net['name']}[/] {net['subnet']} vni {net['vni']}")


@network_app.command("ls")
def network_ls(api: ApiOpt = None, output: OutOpt = Output.table) -> None:
    """List networks."""
    render(call(api, "GET", "/api/v1/networks"), NET_COLS, output, "networks")


@network_app.command("show")
def network_show(
    name: Annotated[str, typer.Argument(help="Network name")],
    api: ApiOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Show one network and its endpoints."""
    net = call(api, "GET", f"/api/v1/networks/{name}")
    eps = call(api, "GET", "/api/v1/endpoints", params={"network": name})
    if output == Output.json:
        render_one({**net, "endpoint_list": eps}, output)
        return
    render_one(net, output)
    render(eps, EP_COLS, output, f"endpoints of {name}")


@network_app.command("rm")
def network_rm(
    name: Annotated[str, typer.Argument(help="Network name")], api: ApiOpt = None
) -> None:
    """Remove a network (refused while endpoints are attached)."""
    call(api, "DELETE", f"/api/v1/networks/{name}")
    console.print(f"removed network [bold]{name}[/]")


@endpoint_app.command("ls")
def endpoint_ls(
    network: Annotated[str | None, typer.Option(help="Only this network")] = None,
    host: Annotated[str | None, typer.Option(help="Only this host")] = None,
    api: ApiOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """List endpoints: name, address, host and state (reserved, pending, ready)."""
    params = {k: v for k, v in {"network": network, "host": host}.items() if v}
    render(call(api, "GET", "/api/v1/endpoints", params=params), EP_COLS, output, "endpoints")


@endpoint_app.command("show")
def endpoint_show(
    network: Annotated[str, typer.Argument(help="Network name")],
    name: Annotated[str, typer.Argument(help="Endpoint name")],
    api: ApiOpt = None,
    output: OutOpt = Output.table,
) -> None:
    """Show one endpoint."""
    render_one(call(api, "GET", f"/api/v1/networks/{network}/endpoints/{name}"), output)


@host_app.command("ls")
def host_ls(api: ApiOpt = None, output: OutOpt = Output.table) -> None:
    """List hosts with their OpenFlow connection, applied revision and flow count."""
    hosts = call(api, "GET", "/api/v1/hosts")
    if output == Output.json:
        render(hosts, HOST_COLS, output, "hosts")
        return
    rows = []
    for h in hosts:
        sw = h.get("switch") or {}
        rows.append(
            {
                **h,
                "switch": "connected" if sw.get("connected") else "down",
                "applied": sw.get("applied_revision"),
                "flows": sw.get("flow_count"),
            }
        )
    render(rows, HOST_COLS, output, "hosts")
