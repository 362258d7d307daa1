"""The lab without a controller: underlay, br-int, and VXLAN (remote_ip=flow) by hand-made flows.

Two emulated hosts (prefix ``hct-``, underlay 198.18.7.0/24). Agents run but point at a
controller port nobody listens on, so they stay unregistered and leave br-int alone. The
overlay addresses (198.19.7.0/24) stay inside the namespaces this test makes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from ipaddress import IPv4Address

import pytest

from hostagent.agent_client import AgentCallError, AgentClient
from tests import slots
from vxlab.fabric import link_exists, netns_exists
from vxlab.lab import Lab
from vxlab.proc import pid_alive

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

PREFIX = slots.prefix("hct-")
UNDERLAY = slots.underlay("198.18.7.0/24")
STATE_DIR = slots.state_dir("/run/vxplane/test-hct")
VNI = 77
CONTAINERS = {  # netns -> (lab host index, overlay IP)
    f"{PREFIX}c1": (1, IPv4Address("198.19.7.1")),
    f"{PREFIX}c2": (2, IPv4Address("198.19.7.2")),
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return s.getsockname()[1]


def _sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {done.returncode}: {done.stderr}{done.stdout}")
    return done


@pytest.fixture
def lab(lab_prerequisites: None) -> Iterator[Lab]:
    """A 2-host lab, torn down (and checked gone) whatever the test did."""
    lab = Lab(prefix=PREFIX, underlay=UNDERLAY, state_dir=STATE_DIR)
    lab.down()  # leftovers of an interrupted earlier run
    pids: list[int] = []
    try:
        yield lab
    finally:
        try:
            pids = [p["pid"] for h in lab.status()["hosts"] for p in h["pids"].values()]
        finally:
            try:
                for ns in CONTAINERS:  # hand-made by the test, not recorded by the lab
                    if netns_exists(ns):
                        subprocess.run(["ip", "netns", "del", ns], check=False)
            finally:
                lab.down()
        left = _sh("ip", "netns", "list").stdout
        assert not [line for line in left.splitlines() if line.startswith(PREFIX)], left
        assert not [p for p in pids if pid_alive(p)], "processes survived down()"
        assert not link_exists(f"{PREFIX}root")
        assert not os.path.exists(STATE_DIR)


def _plug(lab: Lab, ns: str, host_index: int, ip: IPv4Address) -> int:
    """A container netns on lab host ``host_index`` with a veth on its br-int; its ofport.

    Made with ``ip`` alone, not the agent's code: this test is about the lab."""
    host = lab.host_name(host_index)
    host_if = f"{ns}h"
    mac = "0a:58:" + ":".join(f"{b:02x}" for b in ip.packed)
    _sh("ip", "netns", "add", ns)
    _sh("ip", "link", "add", host_if, "mtu", "1450", "netns", host, "type", "veth",
        "peer", "name", "eth0", "mtu", "1450", "netns", ns)  # fmt: skip
    _sh("ip", "-n", host, "link", "set", host_if, "up")
    _sh("ip", "-n", ns, "link", "set", "eth0", "address", mac, "up")
    _sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    _sh("ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off")
    lab.vsctl(host, "add-port", "br-int", host_if,
              "--", "set", "Interface", host_if, f'external_ids:vxplane-test="{ns}"')  # fmt: skip
    return lab.ofport(host, host_if)


def _get(lab: Lab, host: str, table: str, record: str, column: str) -> str:
    return lab.vsctl(host, "get", table, record, column).strip()


def _ofctl(lab: Lab, host: str, *args: str) -> str:
    return _sh("ovs-ofctl", "-O", "OpenFlow13", *args[:1], lab.ofctl_target(host), *args[1:]).stdout


def test_two_hosts_vxlan_by_hand(lab: Lab) -> None:
    blackhole = f"http://{lab.gateway_ip}:{_free_port()}"
    openflow = f"tcp:{lab.gateway_ip}:{_free_port()}"
    h1, h2 = lab.host_name(1), lab.host_name(2)
    for host in (h1, h2):  # no controller answers here: agents get tokens of their own
        os.makedirs(lab.host_paths(host).dir, exist_ok=True)
        with open(lab.host_paths(host).agent_token, "w") as file:
            file.write("vxp_000000000000_" + "x" * 43)
    status = lab.up(2, controller_url=blackhole, openflow=openflow, wait_registered=False)
    assert [h["name"] for h in status["hosts"]] == [h1, h2]
    assert [h["underlay_ip"] for h in status["hosts"]] == [
        str(lab.underlay_ip(1)),
        str(lab.underlay_ip(2)),
    ]
    assert [(h["ovs"], h["agent"]) for h in status["hosts"]] == [("up", "unregistered")] * 2
    assert all(p["alive"] for h in status["hosts"] for p in h["pids"].values())

    # up twice keeps what exists: same processes, no second underlay veth or bridge.
    again = lab.up(2, controller_url=blackhole, openflow=openflow, wait_registered=False)
    assert [h["pids"] for h in again["hosts"]] == [h["pids"] for h in status["hosts"]]
    assert lab.vsctl(h1, "list-br").split() == ["br-int", "br-phy"]
    assert lab.ports(h1, "br-phy") == ["underlay"]

    # Underlay: host to host over the fabric, and host to the root namespace (controller).
    assert lab.exec("h1", ["ping", "-c", "2", "-W", "2", str(lab.underlay_ip(2))]) == 0
    assert lab.exec("h2", ["ping", "-c", "2", "-W", "2", lab.gateway_ip]) == 0

    # The outside world: on the fabric, reachable from the hosts, no overlay route.
    outside = status["outside"]
    assert outside == f"{PREFIX}outside" and status["outside_ip"] == str(lab.underlay[-3])
    assert lab.exec("h1", ["ping", "-c", "2", "-W", "2", status["outside_ip"]]) == 0
    assert lab.exec(outside, ["ping", "-c", "1", "-W", "2", str(lab.underlay_ip(2))]) == 0
    routes = _sh("ip", "-n", outside, "-4", "route", "show").stdout
    assert routes.split()[0] == str(lab.underlay) and len(routes.splitlines()) == 1, routes
    # and its IPv6 twin on the fabric (fdfa:: + the IPv4 address), reachable from the hosts
    assert status["outside_ip6"] == str(lab.outside_ip6.ip)
    assert int(lab.outside_ip6.ip) & 0xFFFFFFFF == int(lab.underlay[-3])
    assert lab.exec("h2", ["ping", "-6", "-c", "2", "-W", "2", status["outside_ip6"]]) == 0

    # br-int as the agent expects it.
    for i, host in ((1, h1), (2, h2)):
        assert _get(lab, host, "Bridge", "br-int", "fail_mode") == "secure"
        assert _get(lab, host, "Bridge", "br-int", "datapath_type") == "netdev"
        assert _get(lab, host, "Bridge", "br-int", "protocols") == "[OpenFlow13]"
        dpid = f"{int(lab.underlay_ip(i)):016x}"
        assert _get(lab, host, "Bridge", "br-int", "other-config") == (
            f'{{datapath-id="{dpid}", disable-in-band="true"}}'
        )
        assert _get(lab, host, "Interface", "vxlan0", "ofport") == "1"
        assert _get(lab, host, "Interface", "vxlan0", "type") == "vxlan"
        assert _get(lab, host, "Interface", "vxlan0", "options") == "{key=flow, remote_ip=flow}"
        assert lab.vsctl(host, "get-controller", "br-int").split() == [openflow]
        assert _get(lab, host, "Controller", "br-int", "max_backoff") == "1000"

    # Agents are up, unregistered (no controller), and refuse to attach with a clear 503,
    # leaving nothing behind.
    with AgentClient(lab.host_paths(h1).agent_sock) as agent:
        health = agent.healthz()
        assert health["bridge_ready"] and not health["registered"]
        assert health["tunnel_port"] == 1
    with pytest.raises(AgentCallError) as err:
        lab.run("h1", f"{PREFIX}x", "net1")
    assert err.value.status == 503
    assert not netns_exists(f"{PREFIX}x")
    assert lab.status()["containers"] == []

    # Containers by hand and a pair of flows per host: VXLAN with remote_ip=flow.
    ofports = {ns: _plug(lab, ns, i, ip) for ns, (i, ip) in CONTAINERS.items()}
    for ns, (i, _) in CONTAINERS.items():
        other_host = 2 if i == 1 else 1
        host = lab.host_name(i)
        port = ofports[ns]
        _ofctl(
            lab, host, "add-flow",
            f"table=0,priority=100,in_port={port},"
            f"actions=set_field:{VNI}->tun_id,"
            f"set_field:{lab.underlay_ip(other_host)}->tun_dst,output:1",
        )  # fmt: skip
        _ofctl(
            lab, host, "add-flow",
            f"table=0,priority=100,in_port=1,tun_id={VNI},"
            f"tun_src={lab.underlay_ip(other_host)},actions=output:{port}",
        )  # fmt: skip
    c1, c2 = CONTAINERS
    ip2 = str(CONTAINERS[c2][1])
    ping = _sh("ip", "netns", "exec", c1, "ping", "-c", "3", "-i", "0.2", "-W", "2", ip2,
               check=False)  # fmt: skip
    assert ping.returncode == 0, ping.stdout + ping.stderr

    for host in (h1, h2):  # both directions went through the tunnel flows
        flows = _ofctl(lab, host, "dump-flows").splitlines()
        received = [f for f in flows if f"tun_id=0x{VNI:x}" in f and "in_port=1" in f]
        assert len(received) == 1 and "n_packets=0," not in received[0], flows

    # TCP across the overlay (fails when TX checksum offload is left on).
    server = subprocess.Popen(
        ["ip", "netns", "exec", c2, "iperf3", "-s", "-1", "-B", ip2],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not _sh("ip", "netns", "exec", c2, "ss", "-Hltn", "sport = :5201").stdout.strip():
            assert time.monotonic() < deadline, "iperf3 server never listened"
            time.sleep(0.05)
        done = _sh("ip", "netns", "exec", c1, "iperf3", "-J", "-c", ip2, "-t", "2", check=False)
        result = json.loads(done.stdout)
        assert done.returncode == 0 and "error" not in result, done.stdout[-2000:]
        bps = result["end"]["sum_received"]["bits_per_second"]
        assert bps > 10e6, f"overlay TCP only {bps / 1e6:.1f} Mbit/s"
        print(f"overlay TCP {bps / 1e6:.0f} Mbit/s")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)
