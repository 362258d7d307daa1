"""The whole product on a real 3-host lab: controller (SQLite), OVS in namespaces, agents.

Prefix ``vxt-``, underlay 198.18.5.0/24, ports from tests/slots.py (apart from
the demo and the other test labs). Traffic only between namespaces this module makes.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest

from hostagent.plug import device_names
from tests import slots
from vxlab.lab import Lab
from vxlab.launch import ControllerProcess, controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

PREFIX = slots.prefix("vxt-")
UNDERLAY = slots.underlay("198.18.5.0/24")
API_PORT, OF_PORT = slots.ports("test_overlay", 2)
SUBNET = "10.30.0.0/24"
C = slots.prefix("vxt-")  # container names: parallel runs in other slots must not share them


@dataclass
class Stack:
    lab: Lab
    ctl: ControllerProcess
    api: httpx.Client

    def run(self, host: str, name: str, network: str, ip: str | None = None) -> dict:
        return self.lab.run(host, name, network, ip=ip)

    def ping(self, src: str, ip: str, count: int = 1) -> bool:
        argv = ["ping", "-c", str(count), "-W", "1", "-i", "0.2", "-q", ip]
        return self.lab.exec(src, argv, quiet=True) == 0

    def flows(self, host: str) -> list[str]:
        out = subprocess.run(
            ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.lab.ofctl_target(host)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        return [line for line in out.splitlines() if "cookie=" in line]

    def hosts(self) -> list[str]:
        return [h["name"] for h in self.lab.status()["hosts"]]

    def converged(self, timeout: float = 20.0) -> dict[str, dict]:
        """Wait until every host's switch is connected and at the current revision."""
        deadline = time.monotonic() + timeout
        while True:
            rev = self.api.get("/healthz").json()["revision"]
            hosts = {h["name"]: h for h in self.api.get("/api/v1/hosts").json()}
            sws = [h.get("switch") or {} for h in hosts.values()]
            if len(hosts) == 3 and all(
                s.get("connected") and s.get("applied_revision", -1) >= rev for s in sws
            ):
                return hosts
            if time.monotonic() > deadline:
                raise AssertionError(f"switches did not converge to rev {rev}: {sws}")
            time.sleep(0.1)


def _tcp_ok(stack: Stack, client: str, server: str, server_ip: str) -> bool:
    srv = subprocess.Popen(
        ["ip", "netns", "exec", server, "iperf3", "-s", "-1", "-p", "5301"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.4)
        rc = stack.lab.exec(
            client,
            ["iperf3", "-c", server_ip, "-p", "5301", "-n", "4M", "--connect-timeout", "2000"],
            quiet=True,
        )
        return rc == 0
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait(5)


def _nc_listen(ns: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, "busybox", "nc", "-l", "-p", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )


def _nc_send(stack: Stack, ns: str, ip: str, port: int, text: str) -> bool:
    proc = subprocess.run(
        ["ip", "netns", "exec", ns, "busybox", "nc", "-w", "2", ip, str(port)],
        input=text.encode(),
        capture_output=True,
        timeout=10,
    )
    return proc.returncode == 0


@pytest.fixture(scope="module")
def stack(lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with controller_and_lab(
        tmp_path_factory.mktemp("overlay"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=3,
    ) as (lab, ctl, api):
        for net in ("blue", "red"):
            api.post("/api/v1/networks", json={"name": net, "subnet": SUBNET}).raise_for_status()
        yield Stack(lab, ctl, api)


def test_same_network_different_hosts_ping_and_tcp(stack: Stack) -> None:
    a = stack.run("h1", f"{C}a1", "blue")
    b = stack.run("h2", f"{C}a2", "blue")
    assert a["state"] == b["state"] == "ready"
    assert stack.ping(f"{C}a1", b["ip"], count=3)
    assert stack.ping(f"{C}a2", a["ip"])
    assert _tcp_ok(stack, f"{C}a1", f"{C}a2", b["ip"])


def test_networks_isolated_even_with_the_same_addresses(stack: Stack) -> None:
    a1 = stack.run("h1", f"{C}i1", "blue")
    a2 = stack.run("h2", f"{C}i2", "blue")
    # red endpoints: one with exactly blue's i1 address, on another host
    r1 = stack.run("h3", f"{C}r1", "red", ip=a1["ip"])
    r2 = stack.run("h2", f"{C}r2", "red", ip="10.30.0.200")
    assert r1["ip"] == a1["ip"] and r1["mac"] == a1["mac"]
    # blue reaches blue's address, red reaches red's: a listener tells which one answered
    listener = _nc_listen(f"{C}r1", 7001)
    try:
        time.sleep(0.3)
        assert not _nc_send(stack, f"{C}i2", a1["ip"], 7001, "from blue"), (
            "blue's i2 reached red's listener on the shared address"
        )
        assert _nc_send(stack, f"{C}r2", r1["ip"], 7001, "from red")
        out, _ = listener.communicate(timeout=5)
        assert out == b"from red"
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait(5)
    # an address only blue has is not reachable from red, and the reverse
    assert not stack.ping(f"{C}r2", a2["ip"])
    assert not stack.ping(f"{C}i1", r2["ip"])


def test_deleted_endpoint_unreachable_and_its_flows_gone(stack: Stack) -> None:
    stack.run("h3", f"{C}p1", "blue")
    d = stack.run("h1", f"{C}d1", "blue")
    assert stack.ping(f"{C}p1", d["ip"])
    stack.lab.rm(f"{C}d1")
    stack.converged()
    assert not stack.ping(f"{C}p1", d["ip"])
    ip_re = re.compile(rf"(nw_dst|nw_src|arp_spa|arp_tpa)={re.escape(d['ip'])}(,|\s)")
    for host in stack.hosts():
        leftovers = [f for f in stack.flows(host) if ip_re.search(f) or d["mac"] in f]
        assert leftovers == [], f"{host} still has flows of the deleted endpoint: {leftovers}"
    ep = stack.api.get(f"/api/v1/networks/blue/endpoints/{C}d1").json()
    assert ep["state"] == "reserved" and ep["host"] is None


def test_migration_keeps_ip_and_mac_and_is_reachable(stack: Stack) -> None:
    stack.run("h3", f"{C}m3", "blue")
    web1 = stack.run("h1", f"{C}web", "blue")
    assert stack.ping(f"{C}m3", web1["ip"])
    stack.lab.rm(f"{C}web")
    web2 = stack.run("h2", f"{C}web", "blue")
    assert (web2["ip"], web2["mac"], web2["host"]) == (web1["ip"], web1["mac"], f"{PREFIX}h2")
    link = subprocess.run(
        ["ip", "netns", "exec", f"{C}web", "ip", "-o", "link", "show", "eth0"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert web1["mac"] in link
    assert stack.ping(f"{C}m3", web2["ip"])
    assert stack.ping(
        f"{C}web", stack.api.get(f"/api/v1/networks/blue/endpoints/{C}m3").json()["ip"]
    )


def test_controller_sigkill_traffic_continues_then_converges(stack: Stack) -> None:
    a = stack.run("h1", f"{C}k1", "blue")
    b = stack.run("h3", f"{C}k2", "blue")
    before = stack.converged()
    pinger = subprocess.Popen(
        ["ip", "netns", "exec", f"{C}k1", "ping", "-c", "40", "-i", "0.1", "-W", "1", b["ip"]],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    stack.ctl.kill()
    # while the controller is down: a stale flow appears on h2 (as if left by an old version)
    h2 = f"{PREFIX}h2"
    subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "add-flow", stack.lab.ofctl_target(h2),
         "table=40,priority=5,cookie=0x1234,ip,nw_dst=10.99.0.1,actions=drop"],
        check=True,
    )  # fmt: skip
    out, _ = pinger.communicate(timeout=30)
    assert " 0% packet loss" in out, f"traffic stopped while the controller was down:\n{out}"
    stack.ctl.start()
    after = stack.converged(timeout=30)
    for host in stack.hosts():
        flows = stack.flows(host)
        assert not [f for f in flows if "cookie=0x1234" in f], f"stale flow left on {host}"
        assert all("cookie=0x76" in f for f in flows), f"foreign flows on {host}"
        assert len(flows) == after[host]["switch"]["flow_count"]
        assert after[host]["switch"]["flow_count"] == before[host]["switch"]["flow_count"]
    assert stack.ping(f"{C}k1", b["ip"]) and stack.ping(f"{C}k2", a["ip"])


def test_agent_restart_no_duplicate_or_lost_endpoints(stack: Stack) -> None:
    g1 = stack.run("h2", f"{C}g1", "blue")
    stack.run("h2", f"{C}g2", "red")
    stack.run("h1", f"{C}g3", "blue")
    h2 = f"{PREFIX}h2"

    def on_h2() -> list[tuple[str, str, str, str]]:
        eps = stack.api.get("/api/v1/endpoints", params={"host": h2}).json()
        return sorted((e["network"], e["name"], e["ip"], e["state"]) for e in eps)

    before = on_h2()
    agent_pid = next(h for h in stack.lab.status()["hosts"] if h["name"] == h2)["pids"]["agent"][
        "pid"
    ]
    os.kill(agent_pid, signal.SIGKILL)
    time.sleep(0.5)
    stack.lab.up(
        hosts=3,
        controller_url=f"http://{stack.lab.gateway_ip}:{API_PORT}",
        openflow=f"tcp:{stack.lab.gateway_ip}:{OF_PORT}",
    )
    new_pid = next(h for h in stack.lab.status()["hosts"] if h["name"] == h2)["pids"]["agent"][
        "pid"
    ]
    assert new_pid != agent_pid
    stack.converged()
    assert on_h2() == before
    all_eps = stack.api.get("/api/v1/endpoints").json()
    keys = [(e["network"], e["name"]) for e in all_eps]
    assert len(keys) == len(set(keys))
    assert stack.ping(f"{C}g3", g1["ip"])


def test_port_whose_device_vanished_is_unplugged_and_unbound(stack: Stack) -> None:
    """A container's namespace deleted behind the agent's back: its veth dies, OVS reports
    the port's ofport as -1, and the agent (told by OVSDB's update stream, not at its next
    restart) removes the port and unbinds the endpoint, so no flows or address leak."""
    ep = stack.run("h1", f"{C}gone", "blue")
    port = device_names("blue", f"{C}gone")[0]
    db = stack.lab.host_paths("h1").db
    list_ports = ["ovs-vsctl", f"--db={db}", "list-ports", "br-int"]
    assert port in subprocess.run(list_ports, capture_output=True, text=True).stdout.split()
    subprocess.run(["ip", "netns", "del", f"{C}gone"], check=True)
    deadline = time.monotonic() + 15
    while True:
        now = stack.api.get(f"/api/v1/networks/blue/endpoints/{C}gone").json()
        ports = subprocess.run(list_ports, capture_output=True, text=True).stdout.split()
        if now["host"] is None and port not in ports:
            break
        assert time.monotonic() < deadline, f"still bound or plugged: {now}, ports {ports}"
        time.sleep(0.1)
    assert now["state"] == "reserved" and now["ip"] == ep["ip"]  # the address stays reserved
    assert not [f for f in stack.flows("h1") if f"nw_dst={ep['ip']} " in f]
    stack.lab.rm(f"{C}gone")  # forget it in the lab's state (the agent's detach is a no-op)


def _udp_no_ports(host_ns: str) -> int:
    out = subprocess.run(
        ["ip", "netns", "exec", host_ns, "nstat", "-az", "UdpNoPorts"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return int(out.split()[-2])


def test_first_ping_after_ready_is_answered_every_time(stack: Stack) -> None:
    """Ready means reachable: right after each attach returns, one single ping from another
    host is answered, 120 times in a row, and no VXLAN packet ever reaches a host's kernel
    instead of being decapsulated by OVS (the cause of the lost first pings: ovs-vswitchd
    mirroring the kernel's routes briefly dropped its tunnel endpoint on every link change)."""
    peer = stack.run("h3", f"{C}fp-peer", "blue")
    hosts = [f"{PREFIX}h{i}" for i in (1, 2, 3)]
    before = {h: _udp_no_ports(h) for h in hosts}
    lost = []
    for i in range(120):
        name = f"{C}fp{i}"
        ep = stack.run(("h1", "h2")[i % 2], name, "blue")
        if not stack.ping(peer["netns"], ep["ip"]):
            lost.append(f"{name}={ep['ip']}@{ep['lab_host']}")
    after = {h: _udp_no_ports(h) for h in hosts}
    assert (lost, after) == ([], before), f"unanswered: {lost}; UdpNoPorts {before} -> {after}"


def _flow_texts(stack: Stack, host: str) -> list[str]:
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", "--no-stats", stack.lab.ofctl_target(host)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return sorted(line.strip() for line in out.splitlines() if "cookie=" in line)


def test_a_controller_on_another_database_changes_no_flow(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Issue 8: a controller started on an empty database (a wrong ``--db``) took every
    agent's registration and replaced its switch's flows with an empty intent. The agents
    keep their cluster's id in br-int and are refused before anything changes (and their
    tokens are unknown to that database as well)."""
    a = stack.run("h1", f"{C}c1", "blue")
    b = stack.run("h2", f"{C}c2", "blue")
    stack.converged()
    hosts = stack.hosts()
    cluster = {h: stack.lab.vsctl(h, "get", "bridge", "br-int", "external_ids:vxplane-cluster-id")
               for h in hosts}  # fmt: skip
    assert len(set(cluster.values())) == 1, cluster
    flows = {h: _flow_texts(stack, h) for h in hosts}
    stack.ctl.stop()
    tmp = tmp_path_factory.mktemp("wrongdb")
    gateway = stack.lab.gateway_ip
    wrong = ControllerProcess(
        f"sqlite:///{tmp}/empty.db", tmp / "wrong.log", API_PORT, OF_PORT,
        api_host=gateway, openflow_host=gateway,
    )  # fmt: skip
    wrong.start()
    try:
        pinger = subprocess.Popen(
            ["ip", "netns", "exec", f"{C}c1", "ping", "-c", "50", "-i", "0.2", "-W", "1", b["ip"]],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        out, _ = pinger.communicate(timeout=60)  # 10 s: two heartbeat rounds of every agent
        assert " 0% packet loss" in out, out
        with wrong.client() as api:  # nobody registered there (agents' tokens are not its
            assert api.get("/api/v1/hosts").json() == []  # either: two locks on one door)
        assert {h: _flow_texts(stack, h) for h in hosts} == flows
    finally:
        wrong.stop()
        stack.ctl.start()
    stack.converged(timeout=30)
    assert stack.ping(f"{C}c2", a["ip"])


def test_dead_switch_is_dropped_and_does_not_hold_back_readiness(stack: Stack) -> None:
    """ovs-vswitchd killed (no TCP close reaches the controller through its own datapath):
    echo probing declares the switch gone, and attaches elsewhere stay quick. Runs last: it
    leaves h3 without a switch."""
    h3 = f"{PREFIX}h3"
    pid = next(h for h in stack.lab.status()["hosts"] if h["name"] == h3)["pids"]["ovs-vswitchd"]
    os.kill(pid["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 20
    while True:
        sw = stack.api.get(f"/api/v1/hosts/{h3}").json().get("switch") or {}
        if not sw.get("connected"):
            break
        assert time.monotonic() < deadline, "the dead switch still counts as connected"
        time.sleep(0.2)
    t0 = time.monotonic()
    ep = stack.run("h1", f"{C}late", "blue")
    assert ep["state"] == "ready"
    assert time.monotonic() - t0 < 5, "readiness waited for the dead switch"
