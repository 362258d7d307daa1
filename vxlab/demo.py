"""The demo: a controller on SQLite, a 3-host lab, two networks on one CIDR, a ping matrix, and
a container of an external dual-stack network fetching a page from the lab's outside namespace
over IPv4 and over IPv6."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from vxlab.lab import Lab
from vxlab.launch import ControllerProcess
from vxlab.proc import stop_pid

STATE = Path("/run/vxplane/demo")
DB_FILE = Path("/var/lib/vxplane/demo.db")
PREFIX = "lab-"
UNDERLAY = "198.18.0.0/24"
SUBNET = "10.20.0.0/24"
# name, lab host, network, static IP (None = allocated from the host's block)
ENDPOINTS = [
    ("blue-1", "lab-h1", "blue", None),
    ("blue-2", "lab-h2", "blue", None),
    ("red-1", "lab-h2", "red", "10.20.0.100"),
    ("red-2", "lab-h3", "red", "10.20.0.101"),
]

console = Console()


def _lab() -> Lab:
    return Lab(prefix=PREFIX, underlay=UNDERLAY)


TOKEN_FILE = STATE / "admin-token"


def _start_controller(lab: Lab, api_port: int) -> ControllerProcess:
    """The demo's controller, on the lab's gateway address (API and OpenFlow), its admin
    token in ``TOKEN_FILE``."""
    STATE.mkdir(parents=True, exist_ok=True)
    DB_FILE.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm"):
        Path(str(DB_FILE) + suffix).unlink(missing_ok=True)
    TOKEN_FILE.unlink(missing_ok=True)
    ctl = ControllerProcess(
        f"sqlite:///{DB_FILE}",
        STATE / "controller.log",
        api_port=api_port,
        api_host=lab.gateway_ip,
        openflow_host=lab.gateway_ip,
        admin_token_file=TOKEN_FILE,
    )
    ctl.start()
    assert ctl.pid is not None
    (STATE / "controller.pid").write_text(str(ctl.pid))
    return ctl


EXTERNAL_NET, EXTERNAL_SUBNET, EXTERNAL_SUBNET6 = "green", "10.30.0.0/24", "fd00:30::/64"
WEB_DIR = STATE / "outside-site"
WEB_PORT = 8000
# the outside's web servers, one per family: (pid/log file stem, family)
WEBS = (("outside-web", 4), ("outside-web6", 6))


def _start_outside_web(lab: Lab, stem: str, family: int) -> str:
    """A web server in the lab's outside namespace (``python3 -m http.server``) on its
    address of ``family`` (pid in ``STATE/<stem>.pid``, requests in ``STATE/<stem>.log``);
    its URL."""
    import subprocess
    import sys

    WEB_DIR.mkdir(parents=True, exist_ok=True)
    (WEB_DIR / "index.html").write_text("hello from the outside world\n")
    ip = str(lab.outside_ip.ip if family == 4 else lab.outside_ip6.ip)
    with open(STATE / f"{stem}.log", "w") as log:
        web = subprocess.Popen(
            ["ip", "netns", "exec", lab.outside_ns, sys.executable, "-m", "http.server",
             "--bind", ip, "--directory", str(WEB_DIR), str(WEB_PORT)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    (STATE / f"{stem}.pid").write_text(str(web.pid))
    deadline = time.monotonic() + 10
    host = ip if family == 4 else f"[{ip}]"
    probe = ["ip", "netns", "exec", lab.outside_ns, "ss", "-Hltn", f"src {host}:{WEB_PORT}"]
    while not subprocess.run(probe, capture_output=True, text=True).stdout.strip():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the outside's IPv{family} web server did not start")
        time.sleep(0.1)
    return f"http://{host}:{WEB_PORT}/"


def _external_demo(lab: Lab, api: str, auth: dict[str, str]) -> list[str]:
    """An external dual-stack network, a container on it, and a page fetched from the
    outside over IPv4 and over IPv6; the families whose fetch failed."""
    import subprocess

    body = {"name": EXTERNAL_NET, "subnet": EXTERNAL_SUBNET, "subnet6": EXTERNAL_SUBNET6,
            "external": True}  # fmt: skip
    r = httpx.post(f"{api}/api/v1/networks", json=body, headers=auth)
    r.raise_for_status()
    console.print(
        f"network {EXTERNAL_NET}: {EXTERNAL_SUBNET} + {EXTERNAL_SUBNET6} vni {r.json()['vni']}, "
        f"external (zone {r.json()['zone']})"
    )
    urls = [_start_outside_web(lab, stem, family) for stem, family in WEBS]
    ep = lab.run("lab-h1", "green-1", EXTERNAL_NET)
    failed = []
    for url, (stem, family) in zip(urls, WEBS, strict=True):
        got = subprocess.run(
            ["ip", "netns", "exec", "green-1", "curl", f"-{family}", "-sS", "--max-time", "5",
             url],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        seen = (STATE / f"{stem}.log").read_text().strip().splitlines()
        who = seen[-1].split()[0] if seen else "?"
        text = got.stdout.strip() or got.stderr.strip()
        mine = ep["ip"] if family == 4 else ep.get("ip6")
        egress = "egress address" if family == 4 else "IPv6 egress address"
        console.print(
            f"  green-1 on lab-h1 ({mine}) fetched {escape(url)} from {lab.outside_ns}: "
            f"[green]{text!r}[/] (the outside saw {who}, lab-h1's {egress})"
            if got.returncode == 0
            else f"  green-1 fetch from {escape(url)}: [bold red]failed[/] {escape(text)}"
        )
        if got.returncode != 0:
            failed.append(f"IPv{family}")
    return failed


def _stop_controller() -> None:
    pidfile = STATE / "controller.pid"
    if pidfile.exists():
        stop_pid(int(pidfile.read_text()), ControllerProcess.MARKER, timeout=10)
        pidfile.unlink(missing_ok=True)


def demo_down() -> None:
    """Remove the demo's lab and stop its controller and the outside's web server."""
    for stem, _ in WEBS:
        web = STATE / f"{stem}.pid"
        if web.exists():
            stop_pid(int(web.read_text()), str(WEB_DIR), timeout=10)
            web.unlink(missing_ok=True)
    _lab().down()
    _stop_controller()


def _ping(lab: Lab, src: str, ip: str) -> bool:
    return lab.exec(src, ["ping", "-c", "1", "-W", "1", "-q", ip], quiet=True) == 0


def run_demo(wait: bool = True, api_port: int = 8080, docker: bool = False) -> int:
    """Bring the demo up, print what it shows, and (with ``wait``) tear down on Ctrl-C.

    ``docker``: also one dockerd per host and Docker containers on a vxplane network."""
    lab = _lab()
    api = f"http://{lab.gateway_ip}:{api_port}"
    demo_down()
    try:
        with console.status("starting the controller (SQLite)..."):
            lab.ensure_fabric()  # the controller listens on the lab's gateway address
            ctl = _start_controller(lab, api_port)
        console.print(f"controller up: API {api}  (log {STATE / 'controller.log'})")
        with console.status("bringing up 3 emulated hosts (OVS userspace datapath)..."):
            lab.up(hosts=3, controller_url=api, docker=docker, admin_token=ctl.token)
        console.print("hosts lab-h1, lab-h2, lab-h3 up, agents registered (each its own token)")
        auth = {"Authorization": f"Bearer {ctl.token}"}
        for name in ("blue", "red"):
            body = {"name": name, "subnet": SUBNET}
            r = httpx.post(f"{api}/api/v1/networks", json=body, headers=auth)
            r.raise_for_status()
            console.print(f"network {name}: {SUBNET} vni {r.json()['vni']}")
        eps = {}
        for name, host, net, ip in ENDPOINTS:
            t0 = time.perf_counter()
            ep = lab.run(host, name, net, ip=ip)
            ms = (time.perf_counter() - t0) * 1000
            eps[name] = ep
            console.print(f"  {name:7} on {host}: {ep['ip']:12} {ep['mac']}  ready in {ms:.0f} ms")
        failures = []
        if wrong := _matrix(lab, eps):
            failures.append(f"{wrong} reachability cell(s) not as expected")
        if failed := _external_demo(lab, api, auth):
            failures.append(f"the fetch from the outside failed ({', '.join(failed)})")
        if docker:
            _docker_demo(lab)
        console.print()
        console.print(f"[bold]API[/]        {api}   (OpenAPI docs: {api}/docs)")
        console.print(
            f"[bold]Dashboard[/]  {api}/   (open it in a browser: topology, hosts, live events; "
            f"it asks once for the admin token: `cat {TOKEN_FILE}`)"
        )
        console.print("[bold]Token[/]      every API call needs one; for the CLI in this shell:")
        console.print(
            f"           export VXPLANE_API={api} VXPLANE_TOKEN=$(cat {TOKEN_FILE})",
            highlight=False,
            soft_wrap=True,
        )
        console.print("[bold]Try[/]        vxplane status; vxplane host ls; vxplane events")
        console.print("           vxplane lab exec blue-1 -- ping -c 3 " + eps["blue-2"]["ip"])
        console.print(
            f"           vxplane lab exec green-1 -- curl -s http://{lab.outside_ip.ip}:{WEB_PORT}/"
        )
        console.print(
            f"           vxplane lab exec green-1 -- curl -s http://[{lab.outside_ip6.ip}]:{WEB_PORT}/",
            markup=False,
        )
        status = 0
        if failures:  # left up to look at; the exit status says it
            console.print(f"[bold red]demo: {'; '.join(failures)}[/]")
            status = 1
        if not wait:
            console.print("left running; remove it with `make demo-down`")
            return status
        console.print("press Ctrl-C to tear everything down")
        stop = threading.Event()
        # Explicit handlers: a process started in the background inherits SIGINT ignored,
        # and SIGTERM (e.g. from a service manager) should tear down too.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        stop.wait()
    except Exception as exc:  # noqa: BLE001 - shown to the user, then cleaned up
        console.print(f"[bold red]demo failed:[/] {exc}")
        demo_down()
        return 1
    with console.status("tearing down..."):
        demo_down()
    console.print("demo removed")
    return status


def _matrix(lab: Lab, eps: dict[str, dict[str, Any]]) -> int:
    """Ping every endpoint from every other; the number of cells that are not as they should
    be (same network: reach; other network: blocked)."""
    names = list(eps)
    wrong = 0
    table = Table(title="reachability (ping from row to column)", title_justify="left")
    table.add_column("from \\ to")
    for n in names:
        table.add_column(f"{n}\n{eps[n]['ip']}", justify="center")
    results = {}
    for src in names:
        row = []
        for dst in names:
            if src == dst:
                row.append("-")
                continue
            ok = _ping(lab, src, eps[dst]["ip"])
            same = eps[src]["network"] == eps[dst]["network"]
            results[f"{src}->{dst}"] = ok
            good = ok == same
            wrong += not good
            row.append(
                ("[green]" if good else "[bold red]") + ("reach" if ok else "blocked") + "[/]"
            )
        table.add_row(src, *row)
    console.print(table)
    (STATE / "matrix.json").write_text(json.dumps(results, indent=2))
    return wrong


DOCKER_NET, DOCKER_SUBNET = "dnet", "10.22.0.0/24"


def _docker_demo(lab: Lab) -> None:
    """`docker network create -d vxplane` on every host, a container on h1 and on h3, a ping."""
    import subprocess

    def docker(host: str, *args: str) -> str:
        done = subprocess.run(lab.docker_argv(host, list(args)), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} on {host}: {done.stderr.strip()}")
        return done.stdout.strip()

    for host in ("lab-h1", "lab-h2", "lab-h3"):
        docker(host, "network", "create", "-d", "vxplane", "--ipam-driver", "vxplane",
               "--subnet", DOCKER_SUBNET, DOCKER_NET)  # fmt: skip
    console.print(f"docker network {DOCKER_NET} ({DOCKER_SUBNET}) on every host, driver vxplane")
    ips = {}
    for name, host in (("web", "lab-h1"), ("db", "lab-h3")):
        docker(host, "run", "-d", "--name", name, "--network", DOCKER_NET, "vxplane/busybox",
               "sleep", "infinity")  # fmt: skip
        fmt = "{{.NetworkSettings.Networks." + DOCKER_NET + ".IPAddress}}"
        ips[name] = docker(host, "inspect", "-f", fmt, name)
        console.print(f"  container {name:4} on {host}: {ips[name]}")
    ok = subprocess.run(
        lab.docker_argv("lab-h1", ["exec", "web", "ping", "-c", "1", "-W", "2", ips["db"]]),
        capture_output=True,
    ).returncode == 0  # fmt: skip
    console.print(f"  web -> db ping: {'[green]reach[/]' if ok else '[bold red]blocked[/]'}")
    console.print("[bold]Docker[/]     vxplane lab docker h1 -- exec web ping -c 3 " + ips["db"])
