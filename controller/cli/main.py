"""``vxplane``: controller, host agent, resources, the lab of emulated hosts, and the demo."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError

from controller.cli.controllers import controllers_app
from controller.cli.events import events, status
from controller.cli.lab import demo_app, lab_app
from controller.cli.pki import pki_app
from controller.cli.policies import policy_app
from controller.cli.resources import endpoint_app, host_app, network_app
from controller.cli.tokens import token_app
from controller.cli.trace import trace

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
app.add_typer(policy_app, name="policy")
app.add_typer(token_app, name="token")
app.add_typer(lab_app, name="lab")
app.add_typer(demo_app, name="demo")
app.add_typer(db_app, name="db")
app.add_typer(pki_app, name="pki")
app.add_typer(controllers_app, name="controllers")
app.command("events")(events)
app.command("status")(status)
app.command("trace")(trace)

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
    return host.strip("[]") or "127.0.0.1", int(port)


@app.command()
def controller(
    db: DbOpt = None,
    api: Annotated[
        str | None,
        typer.Option(
            "--api",
            help="Listen address of the REST API [127.0.0.1:8080]; 0.0.0.0:8080 for every "
            "interface (then name the addresses clients use with --allowed-host)",
        ),
    ] = None,
    openflow: Annotated[
        str | None,
        typer.Option("--openflow", help="Listen address for switches (OpenFlow) [127.0.0.1:6653]"),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            help="A Host header value the API answers (repeat for several; '*' for any) "
            "[default: the --api address, 127.0.0.1, localhost]",
        ),
    ] = None,
    api_cert: Annotated[
        str | None, typer.Option("--api-cert", help="PEM certificate: serve the API over TLS")
    ] = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="PEM private key of --api-cert")
    ] = None,
    admin_token_file: Annotated[
        str | None,
        typer.Option(
            "--admin-token-file",
            help="Where the bootstrap admin token is written (mode 0600) when the database "
            "has no admin token yet [env: VXPLANE_TOKEN_FILE; default "
            "/var/lib/vxplane/admin-token]",
        ),
    ] = None,
    openflow_cert: Annotated[
        Path | None,
        typer.Option(
            "--openflow-cert",
            help="PEM certificate of the OpenFlow listener: with --openflow-key and "
            "--openflow-ca, switches connect over TLS only (`ssl:` targets) and must present "
            "a certificate from that CA naming their host (see `vxplane pki`)",
        ),
    ] = None,
    openflow_key: Annotated[
        Path | None, typer.Option("--openflow-key", help="Its private key (PEM)")
    ] = None,
    openflow_ca: Annotated[
        Path | None,
        typer.Option("--openflow-ca", help="CA certificate the switches' certificates chain to"),
    ] = None,
    advertise_api: Annotated[
        str | None,
        typer.Option(
            "--advertise-api",
            help="API URL other controllers, agents and CLIs reach this controller at "
            "[default: http(s)://<--api address>]",
        ),
    ] = None,
    advertise_openflow: Annotated[
        str | None,
        typer.Option(
            "--advertise-openflow",
            help="OpenFlow target switches reach this controller at, tcp:HOST:PORT or "
            "ssl:HOST:PORT [default: from --openflow]",
        ),
    ] = None,
    log_level: Annotated[str, typer.Option(help="DEBUG, INFO, WARNING")] = "INFO",
) -> None:
    """Run the controller: REST API + OpenFlow listener, on SQLite by default.

    Several controllers may share one PostgreSQL database: each registers with a 3 s lease
    (see `vxplane controllers ls`) and masters its share of the switches.

    Every API call but /healthz needs a token; at the first start the controller makes an
    admin token and writes it to --admin-token-file (root's CLI on this machine reads it)."""
    from controller.config import Settings
    from controller.server import run_controller

    if bool(api_cert) != bool(api_key):
        raise typer.BadParameter("give both --api-cert and --api-key", param_hint="--api-cert")
    overrides: dict[str, object] = {"log_level": log_level}
    if allowed_host:
        overrides["allowed_hosts"] = allowed_host
    if api_cert:
        overrides["api_cert"], overrides["api_key"] = api_cert, api_key
    if admin_token_file:
        overrides["admin_token_file"] = admin_token_file
    if db:
        overrides["db_url"] = db
    if advertise_api:
        overrides["advertise_api"] = advertise_api
    if advertise_openflow:
        overrides["advertise_openflow"] = advertise_openflow
    if api:
        overrides["api_host"], overrides["api_port"] = _split_hostport(api, "--api")
    if openflow:
        host, port = _split_hostport(openflow, "--openflow")
        overrides["openflow_host"], overrides["openflow_port"] = host, port
    for key, value in (
        ("openflow_cert", openflow_cert),
        ("openflow_key", openflow_key),
        ("openflow_ca", openflow_ca),
    ):
        if value is not None:
            overrides[key] = str(value)
    try:
        settings = Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        raise typer.BadParameter(
            "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in exc.errors())
        ) from None
    run_controller(settings)


@app.command(
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    add_help_option=False,
)
def agent(ctx: typer.Context) -> None:
    """Run the host agent: registers the host, keeps br-int, plugs endpoints (local API,
    CNI, and with --docker-plugin the Docker drivers). `vxplane agent --help` lists the
    options (each also VXPLANE_AGENT_<OPTION> in the environment)."""
    from hostagent.main import main  # the CLI is the only controller module that imports it

    raise typer.Exit(main(list(ctx.args)))


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
