"""``vxplane pki``: a CA and certificates for OpenFlow over TLS (files for ``controller.pki``)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.output import console, fail

pki_app = typer.Typer(
    help=(
        "Certificates for OpenFlow (and API) TLS: `init [DIR]` makes a CA (DIR/ca.pem, "
        "DIR/ca.key; DIR defaults to $VXPLANE_PKI_DIR or /etc/vxplane/pki), then "
        "`controller NAME [DIR] --san ADDRESS` and `host NAME [DIR]` write DIR/NAME.pem and "
        "DIR/NAME.key signed by it (keys mode 0600). A host certificate's CN is the host's "
        "vxplane name: the controller admits a switch only if its certificate names the "
        "host its datapath id is registered to. Keep DIR/ca.key off the hosts."
    ),
    no_args_is_help=True,
)

DEFAULT_DIR = Path("/etc/vxplane/pki")
DirArg = Annotated[
    Path | None,
    typer.Argument(
        help="Directory of the CA and its certificates [env: VXPLANE_PKI_DIR; default "
        "/etc/vxplane/pki]",
        show_default=False,
    ),
]


def _dir(directory: Path | None) -> Path:
    """DIR as given, else $VXPLANE_PKI_DIR, else /etc/vxplane/pki."""
    if directory is not None:
        return directory
    return Path(os.environ.get("VXPLANE_PKI_DIR") or DEFAULT_DIR)


DaysOpt = Annotated[int, typer.Option("--days", min=1, max=36500, help="Validity in days")]


def _done(what: str, cert: Path, key: Path) -> None:
    console.print(f"{what}: {cert} (key {key}, mode 0600)")


@pki_app.command("init")
def pki_init(
    directory: DirArg = None,
    name: Annotated[str, typer.Option("--name", help="CN of the CA")] = "vxplane CA",
    days: DaysOpt = 3650,
) -> None:
    """Create the CA in DIR (kept as it is if DIR already has one)."""
    from controller import pki

    directory = _dir(directory)
    created = pki.init_ca(directory, name, days)
    cert, key = pki.ca_paths(directory)
    if not created:
        console.print(f"CA already in {directory}: {cert} kept")
        return
    _done("CA", cert, key)


@pki_app.command("controller")
def pki_controller(
    name: Annotated[str, typer.Argument(help="Controller name (the certificate's CN)")],
    directory: DirArg = None,
    san: Annotated[
        list[str] | None,
        typer.Option(
            "--san",
            help="An IP address or DNS name switches use to reach the controller (repeat it "
            "for several); default: NAME as a DNS name",
        ),
    ] = None,
    days: DaysOpt = 825,
) -> None:
    """Issue DIR/NAME.pem and DIR/NAME.key for a controller's OpenFlow listener
    (`vxplane controller --openflow-cert DIR/NAME.pem --openflow-key DIR/NAME.key
    --openflow-ca DIR/ca.pem`)."""
    from controller import pki

    try:
        cert, key = pki.issue(_dir(directory), name, "controller", san or [], days)
    except ValueError as exc:
        fail(str(exc))
    _done(f"controller {name}", cert, key)


@pki_app.command("host")
def pki_host(
    name: Annotated[str, typer.Argument(help="The host's vxplane name (the certificate's CN)")],
    directory: DirArg = None,
    days: DaysOpt = 825,
) -> None:
    """Issue DIR/NAME.pem and DIR/NAME.key for host NAME's switch; copy them and DIR/ca.pem
    to the host (`vxplane agent --ovs-ssl-cert ... --ovs-ssl-key ... --ovs-ssl-ca ...`)."""
    from controller import pki

    try:
        cert, key = pki.issue(_dir(directory), name, "host", (), days)
    except ValueError as exc:
        fail(str(exc))
    _done(f"host {name}", cert, key)
