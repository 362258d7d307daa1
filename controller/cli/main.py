"""``vxplane``: controller, host agent, resources, the lab of emulated hosts, and the demo."""

from __future__ import annotations

from typing import Annotated

import typer

from controller.cli.events import events, status
from controller.cli.lab import demo_app, lab_app
from controller.cli.resources import endpoint_app, host_app, network_app

app = typer.Typer(
    help=(
        "vxplane: container networks over Open vSwitch and VXLAN, driven by an OpenFlow "
        "controller.\n\nStart a controller, run an agent on every host, create networks, "
        "attach containers. `vxplane demo` shows all of it on emulated hosts."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
app.add_typer(network_app, name="network")
app.add_typer(endpoint_app, name="endpoint")
app.add_typer(host_app, name="host")
app.add_typer(lab_app, name="lab")
app.add_typer(demo_app, name="demo")
app.add_typer(db_app, name="db")
app.command("events")(events)
app.command("status")(status)

DbOpt = Annotated[
    str | None,
    typer.Option(
        "--db",
        help="SQLAlchemy database URL [env: VXPLANE_DB_URL; default "
        "sqlite:////var/lib/vxplane/vxplane.db]; PostgreSQL: postgresql://user:pw@host/db",
    ),
]


def _split_hostport(value: str, option: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise typer.BadParameter(f"expected HOST:PORT, got {value!r}", param_hint=option)
    return host.strip("[]") or "0.0.0.0", int(port)


@app.command()
def controller(
    db: DbOpt = None,
    api: Annotated[
        str | None, typer.Option("--api", help="Listen address of the REST API [0.0.0.0:8080]")
    ] = None,
    openflow: Annotated[
        str | None,
        typer.Option("--openflow", help="Listen address for switches (OpenFlow) [0.0.0.0:6653]"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run the controller: REST API + OpenFlow listener, on SQLite by default."""
    from controller.config import Settings
    from controller.server import run_controller

    overrides: dict[str, object] = {"log_level": log_level}
    if db:
        overrides["db_url"] = db
    if api:
        overrides["api_host"], overrides["api_port"] = _split_hostport(api, "--api")
    if openflow:
        host, port = _split_hostport(openflow, "--openflow")
        overrides["openflow_host"], overrides["openflow_port"] = host, port
    run_controller(Settings(**overrides))  # type: ignore[arg-type]


@app.command()
def agent(
    controller_url: Annotated[
        str, typer.Option("--controller", help="Controller API URL, e.g. http://10.0.0.5:8080")
    ],
    host: Annotated[str, typer.Option("--host", help="This host's name in vxplane")],
    underlay_ip: Annotated[str, typer.Option(help="This host's VXLAN (underlay) IP address")],
    bridge: Annotated[str, typer.Option(help="Integration bridge")] = "br-int",
    ovsdb: Annotated[
        str | None, typer.Option(help="OVSDB socket, e.g. unix:/run/openvswitch/db.sock")
    ] = None,
    openflow: Annotated[
        str | None,
        typer.Option(help="Controller OpenFlow target [tcp:<controller host>:6653]"),
    ] = None,
    socket_path: Annotated[
        str, typer.Option("--socket", help="Unix socket of the agent's local API")
    ] = "/run/vxplane/agent.sock",
    mtu: Annotated[int, typer.Option(help="Container MTU: underlay MTU minus 50")] = 1450,
    heartbeat_interval: Annotated[float, typer.Option(help="Seconds between heartbeats")] = 5.0,
    datapath_type: Annotated[
        str | None, typer.Option(help="system or netdev [detected: system if the module loads]")
    ] = None,
    dpid: Annotated[str | None, typer.Option(help="br-int datapath id, 16 hex digits")] = None,
    ready_timeout: Annotated[
        float, typer.Option(help="Longest wait for an endpoint's flows (s)")
    ] = 10.0,
    docker_plugin: Annotated[
        str | None,
        typer.Option(
            help="Serve Docker's network+IPAM drivers on this socket, e.g. "
            "/run/docker/plugins/vxplane.sock"
        ),
    ] = None,
    docker_engine: Annotated[
        str, typer.Option(help="The Docker engine whose events the agent follows")
    ] = "unix:///run/docker.sock",
    docker_scope: Annotated[
        str, typer.Option(help="Driver scope: local, or global under swarm")
    ] = "local",
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run the host agent: registers the host, keeps br-int, plugs endpoints (local API,
    CNI, and with --docker-plugin the Docker drivers)."""
    import logging

    from hostagent.agent import run_agent

    logging.basicConfig(
        level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    run_agent(
        controller_url=controller_url,
        host_name=host,
        underlay_ip=underlay_ip,
        bridge=bridge,
        ovsdb=ovsdb,
        socket_path=socket_path,
        openflow_target=openflow,
        mtu=mtu,
        heartbeat_interval=heartbeat_interval,
        datapath_type=datapath_type,
        dpid=dpid,
        ready_timeout=ready_timeout,
        docker_plugin=docker_plugin,
        docker_engine=docker_engine,
        docker_scope=docker_scope,
    )


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None, revision: str = "head") -> None:
    """Apply migrations up to REVISION (default: head)."""
    from controller.config import Settings
    from controller.db import migrate

    migrate.upgrade(db or Settings().db_url, revision)
    typer.echo(f"database at {revision}")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="Target, e.g. base")], db: DbOpt = None
) -> None:
    """Revert migrations down to REVISION."""
    from controller.config import Settings
    from controller.db import migrate

    migrate.downgrade(db or Settings().db_url, revision)
    typer.echo(f"database at {revision}")


if __name__ == "__main__":
    app()
