"""External access on the real lab: containers of external networks reach the lab's outside
namespace through their own host's gateway, over IPv4 and (the networks are dual stack) over
IPv6; sealed networks get nothing out by either.

Prefix ``vxx-``, underlay 198.18.14.0/24, ports from tests/slots.py (moved by
``VXTEST_SLOT``). The outside world is the lab's own namespace ``vxx-outside`` on the fabric;
nothing is sent anywhere else.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests import slots
from vxlab.lab import Lab
from vxlab.launch import ControllerProcess, controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

PREFIX = slots.prefix("vxx-")
UNDERLAY = slots.underlay("198.18.14.0/24")
API_PORT, OF_PORT = slots.ports("test_external", 2)
SUBNET = "10.60.0.0/24"
SUBNET6 = {"ext": "fd00:60:1::/64", "ext2": "fd00:60:2::/64", "sealed": "fd00:60:3::/64"}
WEB_PORT = 8000
PAGE = "hello from the outside\n"


@dataclass
class Stack:
    lab: Lab
    ctl: ControllerProcess
    api: httpx.Client
    outside: str
    outside_ip: str
    web_log: Path
    outside_ip6: str
    web6_log: Path

    def egress(self, host: str, key: str = "egress_ip") -> str:
        (row,) = [h for h in self.lab.status()["hosts"] if h["name"] == self.lab.host_name(host)]
        return str(row[key])

    def egress6(self, host: str) -> str:
        return self.egress(host, "egress_ip6")

    def ping6(self, ns: str, ip6: str, count: int = 2) -> bool:
        argv = ["ping", "-6", "-c", str(count), "-W", "1", "-i", "0.2", "-q", ip6]
        return self.lab.exec(ns, argv, quiet=True) == 0

    def fetch6(self, ns: str, local_port: int | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", ns, "curl", "-6", "-sS", "--max-time", "5"]
        if local_port is not None:
            argv += ["--local-port", str(local_port)]
        argv.append(f"http://[{self.outside_ip6}]:{WEB_PORT}/page.txt")
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)

    def clients6(self) -> list[str]:
        """The source addresses the outside's IPv6 web server saw, in order."""
        return re.findall(r"^(\S+) - - \[", self.web6_log.read_text(), re.MULTILINE)

    def run(self, host: str, name: str, network: str, ip: str | None = None) -> dict:
        return self.lab.run(host, name, network, ip=ip)

    def ping(self, ns: str, ip: str, count: int = 2) -> bool:
        argv = ["ping", "-c", str(count), "-W", "1", "-i", "0.2", "-q", ip]
        return self.lab.exec(ns, argv, quiet=True) == 0

    def fetch(self, ns: str, local_port: int | None = None) -> subprocess.CompletedProcess[str]:
        argv = ["ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "5"]
        if local_port is not None:
            argv += ["--local-port", str(local_port)]
        argv.append(f"http://{self.outside_ip}:{WEB_PORT}/page.txt")
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)

    def applied(self, timeout: float = 20.0) -> None:
        """Wait until every switch applied the controller's current revision."""
        rev = self.api.get("/healthz").json()["revision"]
        deadline = time.monotonic() + timeout
        while any(
            (h.get("switch") or {}).get("applied_revision", -1) < rev
            for h in self.api.get("/api/v1/hosts").json()
        ):
            assert time.monotonic() < deadline, f"switches did not apply revision {rev}"
            time.sleep(0.1)

    def from_outside(self, address: str, port: int) -> subprocess.CompletedProcess[str]:
        """``curl`` from the outside namespace to ``address:port``."""
        argv = ["ip", "netns", "exec", self.outside, "curl", "-sS", "--max-time", "3",
                f"http://{address}:{port}/page.txt"]  # fmt: skip
        return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)

    def clients(self) -> list[str]:
        """The source addresses the outside's web server saw, in order."""
        return re.findall(r"^(\S+) - - \[", self.web_log.read_text(), re.MULTILINE)


@pytest.fixture(scope="module")
def stack(lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("external")
    with controller_and_lab(
        tmp,
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=2,
    ) as (lab, ctl, api):
        for name, external in (("ext", True), ("ext2", True), ("sealed", False)):
            body = {"name": name, "subnet": SUBNET, "external": external, "subnet6": SUBNET6[name]}
            api.post("/api/v1/networks", json=body).raise_for_status()
        status = lab.status()
        site = tmp / "site"
        site.mkdir()
        (site / "page.txt").write_text(PAGE)
        web_log, web6_log = tmp / "web.log", tmp / "web6.log"
        webs = []
        try:
            for address, path in ((status["outside_ip"], web_log),
                                  (status["outside_ip6"], web6_log)):  # fmt: skip
                with open(path, "w") as log:
                    webs.append(subprocess.Popen(
                        ["ip", "netns", "exec", status["outside"], "python3", "-m",
                         "http.server", "--bind", address, "--directory", str(site),
                         str(WEB_PORT)],
                        stdout=log, stderr=subprocess.STDOUT,
                    ))  # fmt: skip
            deadline = time.monotonic() + 10
            probe = ["ss", "-Hltn", f"sport = :{WEB_PORT}"]
            argv = ["ip", "netns", "exec", status["outside"], *probe]
            while len(subprocess.run(argv, capture_output=True, text=True).stdout.split("\n")) < 3:
                assert time.monotonic() < deadline, "the outside's web servers never listened"
                time.sleep(0.1)
            yield Stack(
                lab, ctl, api, status["outside"], status["outside_ip"], web_log,
                status["outside_ip6"], web6_log,
            )  # fmt: skip
        finally:
            for web in webs:
                web.terminate()
                web.wait(timeout=10)


def test_lab_reports_the_outside_and_egress_addresses(stack: Stack) -> None:
    status = stack.lab.status()
    assert status["outside"] == f"{PREFIX}outside"
    assert [h["egress_ip"] for h in status["hosts"]] == [
        str(stack.lab.egress_ip(1)),
        str(stack.lab.egress_ip(2)),
    ]
    hosts = {h["name"]: h for h in stack.api.get("/api/v1/hosts").json()}
    for i in (1, 2):
        host = hosts[stack.lab.host_name(i)]
        assert host["egress_ip"] == str(stack.lab.egress_ip(i)) and host["gateway_port"]


def test_the_cli_gives_the_outside_address_and_runs_commands_there(stack: Stack) -> None:
    """``vxplane lab status -o json`` has ``outside_ip``; ``vxplane lab exec PREFIXoutside --
    CMD`` runs CMD there (its exit code is the command's)."""
    where = ["--prefix", PREFIX, "--underlay", UNDERLAY]
    cli = [sys.executable, "-m", "controller.cli.main", "lab"]
    out = subprocess.run([*cli, "status", "-o", "json", *where], capture_output=True,
                         text=True, timeout=60, check=True).stdout  # fmt: skip
    assert json.loads(out)["outside_ip"] == stack.outside_ip
    fetch = ["curl", "-sS", "--max-time", "5", f"http://{stack.outside_ip}:{WEB_PORT}/page.txt"]
    got = subprocess.run([*cli, "exec", stack.outside, *where, "--", *fetch],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    assert (got.returncode, got.stdout) == (0, PAGE), got.stderr
    assert stack.clients()[-1] == stack.outside_ip  # it ran in the outside itself
    routes = [*cli, "exec", stack.outside, *where, "--", "ip", "route", "get", "10.60.0.2"]
    done = subprocess.run(routes, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0, done.stdout  # no route to the overlay's subnet from there


def test_external_network_pings_and_fetches_from_the_outside_as_its_host(stack: Stack) -> None:
    c1 = stack.run("h1", f"{PREFIX}c1", "ext")
    assert c1["state"] == "ready"
    assert stack.ping(f"{PREFIX}c1", stack.outside_ip)
    before = len(stack.clients())
    got = stack.fetch(f"{PREFIX}c1")
    assert got.returncode == 0 and got.stdout == PAGE, got.stderr
    seen = stack.clients()[before:]
    assert seen == [stack.egress("h1")], seen  # the host's address, not 10.60.0.x
    # the outside knows no overlay route: it never saw the container's own address
    assert c1["ip"] not in stack.web_log.read_text()


def test_each_container_leaves_through_its_own_host(stack: Stack) -> None:
    stack.run("h2", f"{PREFIX}c2", "ext")
    before = len(stack.clients())
    got = stack.fetch(f"{PREFIX}c2")
    assert got.returncode == 0 and got.stdout == PAGE, got.stderr
    assert stack.clients()[before:] == [stack.egress("h2")]


def test_a_sealed_network_gets_nothing_out(stack: Stack) -> None:
    s1 = stack.run("h1", f"{PREFIX}s1", "sealed")
    assert s1["state"] == "ready"
    before = len(stack.clients())
    assert not stack.ping(f"{PREFIX}s1", stack.outside_ip, count=1)
    assert stack.fetch(f"{PREFIX}s1").returncode != 0
    assert stack.clients()[before:] == []


def test_two_external_networks_with_the_same_cidr_on_one_host_at_once(stack: Stack) -> None:
    """Same address, same source port, same server, same host: both answered, each its own."""
    a = stack.run("h1", f"{PREFIX}a", "ext", ip="10.60.0.40")
    b = stack.run("h1", f"{PREFIX}b", "ext2", ip="10.60.0.40")
    assert a["ip"] == b["ip"] == "10.60.0.40" and a["host"] == b["host"]
    for attempt in range(3):  # a new port each time: the last one is in TIME_WAIT
        runs = [
            subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    ns,
                    "curl",
                    "-sS",
                    "--max-time",
                    "5",
                    "--local-port",
                    str(41000 + attempt),
                    f"http://{stack.outside_ip}:{WEB_PORT}/page.txt",
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
            for ns in (f"{PREFIX}a", f"{PREFIX}b")
        ]
        outs = [r.communicate(timeout=20) for r in runs]
        assert [r.returncode for r in runs] == [0, 0], outs
        assert [o[0] for o in outs] == [PAGE, PAGE]
    # and pings at once (distinct ICMP ids, as ping picks them)
    pings = [
        subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                ns,
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                "-q",
                stack.outside_ip,
            ],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        for ns in (f"{PREFIX}a", f"{PREFIX}b")
    ]
    assert [p.wait(timeout=20) for p in pings] == [0, 0]


def test_sealing_a_network_again_cuts_it_off(stack: Stack) -> None:
    stack.run("h2", f"{PREFIX}t", "ext2")
    assert stack.fetch(f"{PREFIX}t").returncode == 0
    r = stack.api.patch("/api/v1/networks/ext2", json={"external": False})
    assert r.status_code == 200 and r.json()["external"] is False
    rev = stack.api.get("/healthz").json()["revision"]
    deadline = time.monotonic() + 20
    while any(
        (h.get("switch") or {}).get("applied_revision", -1) < rev
        for h in stack.api.get("/api/v1/hosts").json()
    ):
        assert time.monotonic() < deadline, "switches did not apply the change"
        time.sleep(0.1)
    assert stack.fetch(f"{PREFIX}t").returncode != 0
    assert not stack.ping(f"{PREFIX}t", stack.outside_ip, count=1)
    stack.api.patch("/api/v1/networks/ext2", json={"external": True}).raise_for_status()


def _serve(ns: str, ip: str, site: Path, log: Path) -> subprocess.Popen[bytes]:
    """A web server on port 80 inside container ``ns``, once it listens."""
    with open(log, "a") as out:
        web = subprocess.Popen(
            ["ip", "netns", "exec", ns, "python3", "-m", "http.server", "--bind", ip,
             "--directory", str(site), "80"],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    probe = ["ip", "netns", "exec", ns, "ss", "-Hltn", "sport = :80"]
    deadline = time.monotonic() + 10
    while not subprocess.run(probe, capture_output=True, text=True).stdout.strip():
        assert time.monotonic() < deadline, "the container's web server never listened"
        time.sleep(0.1)
    return web


def test_a_published_port_reaches_the_container_and_follows_it(
    stack: Stack, tmp_path: Path
) -> None:
    name = f"{PREFIX}w"
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.txt").write_text("published page\n")
    log = tmp_path / "w.log"
    w = stack.run("h1", name, "ext")
    web = _serve(name, w["ip"], site, log)
    try:
        body = {"endpoint": name, "host_port": 8080, "port": 80, "proto": "tcp"}
        r = stack.api.post("/api/v1/networks/ext/publications", json=body)
        assert r.status_code == 201, r.text
        assert (r.json()["host"], r.json()["address"]) == (w["host"], stack.egress("h1"))
        stack.applied()
        got = stack.from_outside(stack.egress("h1"), 8080)
        assert got.returncode == 0 and got.stdout == "published page\n", got.stderr
        # the container saw the outside's own address (only the destination is translated)
        assert f"{stack.outside_ip} - - [" in log.read_text()
        for closed in (8081, 80, 22):  # nothing else of the host's egress address is open
            assert stack.from_outside(stack.egress("h1"), closed).returncode != 0
        taken = stack.api.post("/api/v1/networks/ext2/publications", json=body)
        assert taken.status_code in (404, 409)
    finally:
        web.terminate()
        web.wait(timeout=10)

    # move the endpoint to h2: the publication follows it to h2's egress address
    stack.lab.rm(name)
    w2 = stack.run("h2", name, "ext")
    assert w2["ip"] == w["ip"]
    web = _serve(name, w2["ip"], site, log)
    try:
        (pub,) = stack.api.get("/api/v1/networks/ext/publications").json()
        assert (pub["host"], pub["address"]) == (w2["host"], stack.egress("h2"))
        stack.applied()
        got = stack.from_outside(stack.egress("h2"), 8080)
        assert got.returncode == 0 and got.stdout == "published page\n", got.stderr
        assert stack.from_outside(stack.egress("h1"), 8080).returncode != 0
    finally:
        web.terminate()
        web.wait(timeout=10)
    r = stack.api.delete("/api/v1/networks/ext/publications/tcp/8080")
    assert r.status_code == 204
    stack.applied()
    assert stack.from_outside(stack.egress("h2"), 8080).returncode != 0


UDP_ECHO = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    data, peer = s.recvfrom(512)
    s.sendto(b"echo " + data + b" from " + peer[0].encode(), peer)
"""
UDP_ASK = """import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
s.sendto(b"hi", (sys.argv[1], int(sys.argv[2])))
print(s.recvfrom(512)[0].decode())
"""


def _udp_from_outside(stack: Stack, address: str, port: int) -> str | None:
    """One datagram from the outside namespace to ``address:port``: the answer, or None."""
    argv = ["ip", "netns", "exec", stack.outside, "python3", "-c", UDP_ASK, address, str(port)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def test_a_published_udp_port_answers_and_a_taken_host_port_is_409(stack: Stack) -> None:
    """``HOSTPORT:PORT/udp`` on h2's egress address reaches the container, which sees the
    outside's own address; other ports stay closed; the same host port for another
    endpoint is 409 and changes nothing."""
    name, other = f"{PREFIX}u", f"{PREFIX}u2"
    u = stack.run("h2", name, "ext")
    stack.run("h1", other, "ext")
    echo = subprocess.Popen(["ip", "netns", "exec", name, "python3", "-c", UDP_ECHO, u["ip"]])
    try:
        probe = ["ip", "netns", "exec", name, "ss", "-Hlun", "sport = :53"]
        deadline = time.monotonic() + 10
        while not subprocess.run(probe, capture_output=True, text=True).stdout.strip():
            assert time.monotonic() < deadline, "the container's echo server never bound"
            time.sleep(0.1)
        egress = stack.egress("h2")
        assert _udp_from_outside(stack, egress, 5353) is None  # not published yet
        body = {"endpoint": name, "host_port": 5353, "port": 53, "proto": "udp"}
        r = stack.api.post("/api/v1/networks/ext/publications", json=body)
        assert r.status_code == 201, r.text
        stack.applied()
        got = None
        for _ in range(3):  # a datagram may be the one that waits for ARP; ask again
            if (got := _udp_from_outside(stack, egress, 5353)) is not None:
                break
        assert got == f"echo hi from {stack.outside_ip}", got
        assert _udp_from_outside(stack, egress, 5354) is None  # other ports are closed
        assert _udp_from_outside(stack, stack.egress("h1"), 5353) is None  # only on u's host

        taken = stack.api.post(
            "/api/v1/networks/ext/publications", json={**body, "endpoint": other}
        )
        assert taken.status_code == 409, taken.text
        assert "already published" in taken.json()["detail"], taken.text
        pubs = stack.api.get("/api/v1/networks/ext/publications").json()
        assert [
            (p["endpoint"], p["host_port"], p["proto"]) for p in pubs if p["proto"] == "udp"
        ] == [(name, 5353, "udp")]
        r = stack.api.delete("/api/v1/networks/ext/publications/udp/5353")
        assert r.status_code == 204, r.text
        stack.applied()
        assert _udp_from_outside(stack, egress, 5353) is None
    finally:
        echo.terminate()
        echo.wait(timeout=10)
        stack.lab.rm(name)
        stack.lab.rm(other)


# -- IPv6 --------------------------------------------------------------------------------------


def test_lab_reports_the_outside_and_egress_ipv6_addresses(stack: Stack) -> None:
    status = stack.lab.status()
    assert status["outside_ip6"] == str(stack.lab.outside_ip6.ip)
    assert [h["egress_ip6"] for h in status["hosts"]] == [
        str(stack.lab.egress_ip6(1)),
        str(stack.lab.egress_ip6(2)),
    ]
    hosts = {h["name"]: h for h in stack.api.get("/api/v1/hosts").json()}
    for i in (1, 2):
        assert hosts[stack.lab.host_name(i)]["egress_ip6"] == str(stack.lab.egress_ip6(i))
    where = ["--prefix", PREFIX, "--underlay", UNDERLAY]
    cli = [sys.executable, "-m", "controller.cli.main", "lab", "status", "-o", "json", *where]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=60, check=True).stdout
    assert json.loads(out)["outside_ip6"] == stack.outside_ip6


def test_ipv6_pings_and_fetches_from_the_outside_as_its_host(stack: Stack) -> None:
    """ping6 and HTTP over IPv6 out of h1 and out of h2: the outside sees each host's IPv6
    egress address, never the container's own."""
    for host, name in (("h1", f"{PREFIX}v1"), ("h2", f"{PREFIX}v2")):
        ep = stack.run(host, name, "ext")
        assert ep["state"] == "ready" and ep["ip6"], ep
        assert stack.ping6(name, stack.outside_ip6), f"{name} on {host}: no ping6 reply"
        before = len(stack.clients6())
        got = stack.fetch6(name)
        assert got.returncode == 0 and got.stdout == PAGE, got.stderr
        assert stack.clients6()[before:] == [stack.egress6(host)]
        assert ep["ip6"] not in stack.web6_log.read_text()


def test_a_sealed_dual_stack_network_gets_nothing_out_over_ipv6(stack: Stack) -> None:
    name = f"{PREFIX}s6"
    s6 = stack.run("h1", name, "sealed")
    assert s6["state"] == "ready" and s6["ip6"]
    before = len(stack.clients6())
    assert not stack.ping6(name, stack.outside_ip6, count=1)
    assert stack.fetch6(name).returncode != 0
    assert stack.clients6()[before:] == []
    stack.lab.rm(name)


def test_two_external_networks_with_the_same_cidr_on_one_host_over_ipv6_at_once(
    stack: Stack,
) -> None:
    """The same IPv4 address (their IPv6 addresses differ only in the prefix), the same
    source port, the same server, the same host, at once: both answered, each its own."""
    a = stack.run("h1", f"{PREFIX}a6", "ext", ip="10.60.0.46")
    b = stack.run("h1", f"{PREFIX}b6", "ext2", ip="10.60.0.46")
    assert a["ip"] == b["ip"] and a["host"] == b["host"] and a["ip6"] != b["ip6"]
    for attempt in range(2):  # a new port each time: the last one is in TIME_WAIT
        argv = ["curl", "-6", "-sS", "--max-time", "5", "--local-port", str(42000 + attempt),
                f"http://[{stack.outside_ip6}]:{WEB_PORT}/page.txt"]  # fmt: skip
        runs = [
            subprocess.Popen(
                ["ip", "netns", "exec", ns, *argv],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for ns in (f"{PREFIX}a6", f"{PREFIX}b6")
        ]
        outs = [r.communicate(timeout=20) for r in runs]
        assert [r.returncode for r in runs] == [0, 0], outs
        assert [o[0] for o in outs] == [PAGE, PAGE]
    ping = ["ping", "-6", "-c", "3", "-i", "0.2", "-W", "1", "-q", stack.outside_ip6]
    pings = [
        subprocess.Popen(["ip", "netns", "exec", ns, *ping], stdout=subprocess.DEVNULL)
        for ns in (f"{PREFIX}a6", f"{PREFIX}b6")
    ]
    assert [p.wait(timeout=20) for p in pings] == [0, 0]


def test_a_published_port_is_reached_over_ipv6_at_the_hosts_egress6(
    stack: Stack, tmp_path: Path
) -> None:
    name = f"{PREFIX}w6"
    site = tmp_path / "site"
    site.mkdir()
    (site / "page.txt").write_text("published over v6\n")
    log = tmp_path / "w6.log"
    w = stack.run("h2", name, "ext")
    web = _serve(name, w["ip6"], site, log)
    try:
        body = {"endpoint": name, "host_port": 8090, "port": 80, "proto": "tcp"}
        r = stack.api.post("/api/v1/networks/ext/publications", json=body)
        assert r.status_code == 201, r.text
        assert (r.json()["address"], r.json()["address6"]) == (
            stack.egress("h2"), stack.egress6("h2"),
        )  # fmt: skip
        stack.applied()
        got = stack.from_outside(f"[{stack.egress6('h2')}]", 8090)
        assert got.returncode == 0 and got.stdout == "published over v6\n", got.stderr
        # the container saw the outside's own IPv6 address (only the destination translated)
        assert f"{stack.outside_ip6} - - [" in log.read_text()
        for closed in (8091, 80):
            assert stack.from_outside(f"[{stack.egress6('h2')}]", closed).returncode != 0
        assert stack.from_outside(f"[{stack.egress6('h1')}]", 8090).returncode != 0
    finally:
        web.terminate()
        web.wait(timeout=10)
        stack.api.delete("/api/v1/networks/ext/publications/tcp/8090")
        stack.lab.rm(name)
