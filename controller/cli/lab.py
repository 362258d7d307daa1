"""``vxplane lab`` (emulated hosts on this machine) and ``vxplane demo``.

The lab is a harness (``vxlab``), not part of the product: it is imported inside the commands,
so the rest of ``vxplane`` never loads it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from controller.cli.labels import parse_labels
from controller.cli.output import Output, TokenOpt, api_token, console, fail, render

if TYPE_CHECKING:
    from vxlab.lab import Lab

lab_app = typer.Typer(
    help=(
        "A lab of emulated hosts on this machine: each host is a network namespace with its "
        "own ovsdb-server, ovs-vswitchd (userspace datapath) and vxplane agent, joined by a "
        "VXLAN underlay in 198.18.0.0/24. Needs root."
    ),
    no_args_is_help=True,
)
demo_app = typer.Typer(
    help="Run the demo: controller on SQLite, 3 emulated hosts, two networks, a ping matrix.",
    invoke_without_command=True,
)

PrefixOpt = Annotated[
    str,
    typer.Option("--prefix", help="Name prefix of the lab's hosts", envvar="VXPLANE_LAB_PREFIX"),
]
UnderlayOpt = Annotated[
    str,
    typer.Option(
        "--underlay", help="Underlay subnet (inside 198.18.0.0/15)", envvar="VXPLANE_LAB_UNDERLAY"
    ),
]


def _need_root() -> None:
    if os.geteuid() != 0:
        fail("the lab needs root (network namespaces, Open vSwitch)", "run it with sudo")


@contextmanager
def _reported(hint: str | None = None) -> Iterator[None]:
    """A refused or failed lab operation (or its agent's answer) as a message, not a traceback."""
    from hostagent.agent_client import AgentCallError, AgentUnavailable
    from vxlab.errors import LabError

    try:
        yield
    except (LabError, AgentCallError, AgentUnavailable) as exc:
        fail(str(exc), hint)


def _lab(prefix: str, underlay: str) -> Lab:
    from vxlab.lab import Lab

    with _reported():
        return Lab(prefix=prefix, underlay=underlay)


def _host_name(prefix: str, host: str) -> str:
    return host if host.startswith(prefix) else prefix + host


@lab_app.command("up")
def lab_up(
    hosts: Annotated[int, typer.Option(help="Number of hosts", min=1, max=50)] = 3,
    controller: Annotated[
        str | None,
        typer.Option(
            help="Controller API URL as seen from the hosts; several comma-separated for a "
            "cluster (the agents fail over and follow its members) [http://<fabric gw>:8080]"
        ),
    ] = None,
    prefix: PrefixOpt = "lab-",
    underlay: UnderlayOpt = "198.18.0.0/24",
    docker: Annotated[
        bool,
        typer.Option(
            "--docker",
            help="Also run one dockerd per host, its agent serving the vxplane network and "
            "IPAM drivers (see `vxplane lab docker`)",
        ),
    ] = False,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls",
            help="OpenFlow over TLS: a CA and certificates in the lab's state dir (pki/), "
            "br-int on ssl:<gateway>:6653; start the controller with the --openflow-cert/"
            "--openflow-key/--openflow-ca this prints",
        ),
    ] = False,
    token: TokenOpt = None,
) -> None:
    """Create hosts PREFIXh1..PREFIXhN, each with OVS and an agent connected to the controller.

    Each agent gets an agent token for its host, made with the admin token (--token)."""
    _need_root()
    lab = _lab(prefix, underlay)
    if tls:
        with _reported():
            cert, key, ca = lab.ensure_pki(hosts)
        console.print(
            "OpenFlow over TLS; the controller needs: "
            f"--openflow-cert {cert} --openflow-key {key} --openflow-ca {ca}"
        )
    with console.status(f"bringing up {hosts} emulated hosts..."):
        try:
            lab.up(
                hosts=hosts,
                controller_url=controller,
                docker=docker,
                tls=tls,
                admin_token=api_token(token),
            )
        except Exception as exc:  # noqa: BLE001 - report, lab.up cleans its own half-work
            fail(f"lab up failed: {exc}", f"see the logs under {lab.state_dir}; `vxplane lab down`")
    _print_status(lab.status(), Output.table)


@lab_app.command("run")
def lab_run(
    host: Annotated[str, typer.Argument(help="Lab host, e.g. lab-h1 (or h1)")],
    name: Annotated[str, typer.Argument(help="Endpoint and namespace name")],
    network: Annotated[str, typer.Option(help="Network to attach to")],
    ip: Annotated[str | None, typer.Option(help="Static IP [default: allocated]")] = None,
    label: Annotated[
        list[str] | None,
        typer.Option(
            "--label",
            "-l",
            help="KEY=VALUE label of the endpoint (repeat for several); set before it is ready, "
            "so policies selecting it apply from its first packet",
        ),
    ] = None,
    prefix: PrefixOpt = "lab-",
    underlay: UnderlayOpt = "198.18.0.0/24",
) -> None:
    """Start a container-like namespace NAME on HOST, attached to NETWORK; waits until ready."""
    labels = parse_labels(label, "--label")
    _need_root()
    lab = _lab(prefix, underlay)
    with console.status(f"attaching {name} on {host} (waiting for flows)..."), _reported():
        ep = lab.run(_host_name(prefix, host), name, network, ip=ip, labels=labels)
    six = f" {ep['ip6']}" if ep.get("ip6") else ""  # a dual-stack network's IPv6 address
    console.print(
        f"[bold]{name}[/] on {ep.get('host')}: {ep.get('ip')}{six} {ep.get('mac')} "
        f"({ep.get('state')})"
    )


@lab_app.command(
    "exec", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def lab_exec(
    name: Annotated[
        str, typer.Argument(help="Namespace made by `lab run`, a lab host, or PREFIXoutside")
    ],
    cmd: Annotated[list[str], typer.Argument(help="Command, after --")],
    prefix: PrefixOpt = "lab-",
    underlay: UnderlayOpt = "198.18.0.0/24",
) -> None:
    """Run a command inside NAME: vxplane lab exec web -- ping -c1 10.10.0.3

    PREFIXoutside (lab-outside) is the lab's outside world: an address on the fabric (and
    its IPv6 twin), no route to any overlay subnet (its addresses: `vxplane lab status -o
    json`, outside_ip and outside_ip6)."""
    _need_root()
    with _reported():
        code = _lab(prefix, underlay).exec(name, cmd)
    raise typer.Exit(code)


@lab_app.command(
    "docker", context_settings={"allow_extra_args": True, "ignore_unknown_options": True}
)
def lab_docker(
    host: Annotated[str, typer.Argument(help="Lab host started with --docker, e.g. h1")],
    args: Annotated[list[str] | None, typer.Argument(help="docker CLI arguments, after --")] = None,
    prefix: PrefixOpt = "lab-",
    underlay: UnderlayOpt = "198.18.0.0/24",
) -> None:
    """Run the docker CLI against HOST's engine: vxplane lab docker h1 -- ps -a"""
    _need_root()
    with _reported("start the lab with `vxplane lab up --docker`"):
        argv = _lab(prefix, underlay).docker_argv(_host_name(prefix, host), args or [])
    import subprocess

    raise typer.Exit(subprocess.run(argv, check=False).returncode)


@lab_app.command("rm")
def lab_rm(
    name: Annotated[str, typer.Argument(help="Namespace made by `lab run`")],
    prefix: PrefixOpt = "lab-",
    underlay: UnderlayOpt = "198.18.0.0/24",
) -> None:
    """Detach and delete NAME (its address stays reserved for the name)."""
    _need_root()
    with _reported():
        _lab(prefix, underlay).rm(name)
    console.print(f"removed {name}")


@lab_app.command("status")
def lab_status(
    prefix: PrefixOpt = "lab-",
    underlay: UnderlayOpt = "198.18.0.0/24",
    output: Annotated[Output, typer.Option("--output", "-o")] = Output.table,
) -> None:
    """Hosts (processes alive, underlay IPs) and containers of the lab."""
    with _reported():
        status = _lab(prefix, underlay).status()
    _print_status(status, output)


@lab_app.command("down")
def lab_down(prefix: PrefixOpt = "lab-", underlay: UnderlayOpt = "198.18.0.0/24") -> None:
    """Remove everything the lab made: namespaces, OVS processes, agents, veths, files."""
    _need_root()
    with console.status("tearing down the lab..."), _reported():
        _lab(prefix, underlay).down()
    console.print("lab removed")


def _print_status(status: dict, output: Output) -> None:  # type: ignore[type-arg]
    if output == Output.json:
        import json

        typer.echo(json.dumps(status, indent=2, default=str))
        return
    render(status.get("hosts", []), ["name", "underlay_ip", "ovs", "agent"], output, "lab hosts")
    if status.get("up") and output == Output.table:
        console.print(
            f"outside world: {status['outside']} at {status['outside_ip']} and "
            f"{status['outside_ip6']} "
            f"(`vxplane lab exec {status['outside']} -- CMD`)"
        )
    render(
        status.get("containers", []),
        ["name", "host", "network", "ip", "ip6"],
        output,
        "lab containers",
    )


@demo_app.callback()
def demo(
    ctx: typer.Context,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Stay up until Ctrl-C (--no-wait: leave it up)")
    ] = True,
    api_port: Annotated[int, typer.Option(help="API port")] = 8080,
    docker: Annotated[
        bool, typer.Option("--docker", help="Also Docker engines and containers on the hosts")
    ] = False,
) -> None:
    """Controller on SQLite + 3 emulated hosts + two networks sharing a CIDR + a ping matrix.

    Exit status 1 when a check fails (a cell of the ping matrix not as expected, or a
    fetch from the outside, over IPv4 or IPv6); the lab is then left up to look at."""
    if ctx.invoked_subcommand is not None:
        return
    _need_root()
    from vxlab.demo import run_demo

    sys.exit(run_demo(wait=wait, api_port=api_port, docker=docker))


@demo_app.command("down")
def demo_down() -> None:
    """Stop the demo's controller and remove its lab."""
    _need_root()
    from vxlab.demo import demo_down as down

    down()
    console.print("demo removed")
