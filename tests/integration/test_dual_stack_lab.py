"""IPv6 dual stack on a real 2-host lab (issue 11 item 3): ping6 and TCP over IPv6 on one
host and between hosts (inside the IPv4 VXLAN underlay), neighbour discovery answered by the
switches with the derived MACs, migration keeps the IPv6 address, isolation between
networks, and port security: spoofed IPv6 sources, forged neighbour advertisements and
router advertisements from a container are dropped.

Each container's IPv6 address comes from the API (``ip6``, ``prefixlen6``, ``gateway6``)
and is set in its namespace here (``ip -6 addr replace ... nodad``, idempotent: the agent
may set it too). Frames are sent and captured with packet sockets inside the namespaces, as
in test_portsec.py. Prefix ``vx6-``, underlay 198.18.16.0/24, ports from tests/slots.py
(apart from the other labs).
"""

from __future__ import annotations

import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv6Address

import httpx
import pytest

from tests import slots
from tests.rawframes import Capture, mac_bytes, send_frames
from vxcommon.addr6 import link_local
from vxlab.lab import Lab
from vxlab.launch import controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

PREFIX = slots.prefix("vx6-")
UNDERLAY = slots.underlay("198.18.16.0/24")
API_PORT, OF_PORT = slots.ports("test_dual_stack_lab", 2)
SUBNET = "10.46.0.0/24"
BLUE6, RED6 = "fd00:46:b::/64", "fd00:46:c::/64"
ETH_IPV6 = 0x86DD
UDP, ICMPV6 = 17, 58
NA, RA = 136, 134

SERVER = """
import socket, sys
s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::", int(sys.argv[1])))
s.listen(1)
s.settimeout(20)
print("ready", flush=True)
conn, peer = s.accept()
data = conn.recv(100)
conn.sendall(peer[0].encode() + b"|" + data)
conn.close()
"""
CLIENT = """
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=5)
c.sendall(sys.argv[3].encode())
print(c.recv(200).decode(), flush=True)
"""


# -- frames ----------------------------------------------------------------------------------


def _sum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total >> 16) + (total & 0xFFFF)
    return ~total & 0xFFFF


def ipv6_frame(
    eth_src: str, eth_dst: str, src: str, dst: str, proto: int, body: bytes, hops: int = 64
) -> bytes:
    """Ethernet + IPv6 + ``body`` (UDP or ICMPv6, its checksum filled in)."""
    s, d = IPv6Address(src).packed, IPv6Address(dst).packed
    pseudo = s + d + struct.pack("!I3xB", len(body), proto)
    at = 6 if proto == UDP else 2
    body = body[:at] + struct.pack("!H", _sum(pseudo + body)) + body[at + 2 :]
    head = struct.pack("!IHBB16s16s", 6 << 28, len(body), proto, hops, s, d)
    return mac_bytes(eth_dst) + mac_bytes(eth_src) + struct.pack("!H", ETH_IPV6) + head + body


def udp6(eth_src: str, eth_dst: str, src: str, dst: str, payload: bytes) -> bytes:
    return ipv6_frame(
        eth_src,
        eth_dst,
        src,
        dst,
        UDP,
        struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload,
    )


def forged_na(eth_src: str, eth_dst: str, src: str, dst: str, target: str, tll: str) -> bytes:
    """An advertisement "``target`` is at ``tll``" (override: it would replace a cache entry)."""
    body = struct.pack(
        "!BBHI16sBB6s", NA, 0, 0, 0xA0000000, IPv6Address(target).packed, 2, 1, mac_bytes(tll)
    )
    return ipv6_frame(eth_src, eth_dst, src, dst, ICMPV6, body, hops=255)


def router_advert(eth_src: str, src: str) -> bytes:
    """A router advertisement to all nodes: "I am your default router"."""
    body = struct.pack("!BBHBBHII", RA, 0, 0, 64, 0, 1800, 0, 0)
    return ipv6_frame(eth_src, "33:33:00:00:00:01", src, "ff02::1", ICMPV6, body, hops=255)


def icmp6_of(frame: bytes) -> tuple[int, bytes] | None:
    """(type, body) of an ICMPv6 frame without extension headers."""
    if len(frame) < 58 or struct.unpack("!H", frame[12:14])[0] != ETH_IPV6 or frame[20] != ICMPV6:
        return None
    return frame[54], frame[54:]


# -- the lab ---------------------------------------------------------------------------------


@dataclass
class Stack:
    lab: Lab
    api: httpx.Client

    def run(self, host: str, name: str, network: str = "blue", ip: str | None = None) -> dict:
        """Run container ``name`` and give its namespace the IPv6 address the API says."""
        self.lab.run(host, f"{PREFIX}{name}", network, ip=ip)
        ep = self.ep(name, network)
        assert ep["ip6"] and ep["gateway6"], ep
        ns = f"{PREFIX}{name}"
        sh(
            [
                "ip",
                "-n",
                ns,
                "-6",
                "addr",
                "replace",
                f"{ep['ip6']}/{ep['prefixlen6']}",
                "dev",
                "eth0",
                "nodad",
            ]
        )
        sh(
            [
                "ip",
                "-n",
                ns,
                "-6",
                "route",
                "replace",
                "default",
                "via",
                ep["gateway6"],
                "dev",
                "eth0",
            ]
        )
        return ep

    def ep(self, name: str, network: str = "blue") -> dict:
        r = self.api.get(f"/api/v1/networks/{network}/endpoints/{PREFIX}{name}")
        r.raise_for_status()
        return dict(r.json())

    def ping6(self, src: str, ip6: str, count: int = 3) -> bool:
        argv = ["ping", "-6", "-c", str(count), "-W", "1", "-i", "0.2", "-q", ip6]
        return self.lab.exec(f"{PREFIX}{src}", argv, quiet=True) == 0

    def neigh(self, name: str, ip6: str) -> str:
        return sh(["ip", "-n", f"{PREFIX}{name}", "-6", "neigh", "show", ip6])


def sh(argv: list[str]) -> str:
    return subprocess.run(argv, capture_output=True, text=True, check=True).stdout


def tcp6(server: str, client: str, ip6: str, port: int, text: str) -> str:
    """Connect from ``client`` to ``server``'s ``ip6``; the server answers "peer|text"."""
    srv = subprocess.Popen(
        ["ip", "netns", "exec", f"{PREFIX}{server}", sys.executable, "-c", SERVER, str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert srv.stdout is not None and srv.stdout.readline().strip() == "ready", srv.stderr
        out = subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                f"{PREFIX}{client}",
                sys.executable,
                "-c",
                CLIENT,
                ip6,
                str(port),
                text,
            ],
            capture_output=True,
            text=True,
            timeout=20,
        )
        return out.stdout.strip() if out.returncode == 0 else f"failed: {out.stderr.strip()[-200:]}"
    finally:
        if srv.poll() is None:
            srv.kill()
        srv.wait(5)


@pytest.fixture(scope="module")
def stack(lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with controller_and_lab(
        tmp_path_factory.mktemp("dualstack"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=2,
    ) as (lab, _ctl, api):
        for name, six in (("blue", BLUE6), ("red", RED6)):
            body = {"name": name, "subnet": SUBNET, "subnet6": six}
            api.post("/api/v1/networks", json=body).raise_for_status()
        st = Stack(lab, api)
        st.run("h1", "a")  # the sender (and attacker)
        st.run("h1", "c")  # a neighbour on the same host
        st.run("h2", "b")  # a peer across the tunnel
        yield st


def test_ping6_and_tcp_on_one_host_and_across_hosts(stack: Stack) -> None:
    a, b, c = stack.ep("a"), stack.ep("b"), stack.ep("c")
    assert stack.ping6("a", b["ip6"]) and stack.ping6("b", a["ip6"])  # inside the IPv4 tunnel
    assert stack.ping6("a", c["ip6"])  # port to port
    # the server sees the client's own IPv6 address: routed, not translated
    assert tcp6("b", "a", b["ip6"], 7006, "over-v6") == f"{a['ip6']}|over-v6"
    assert tcp6("c", "b", c["ip6"], 7007, "back") == f"{b['ip6']}|back"


def test_neighbours_are_answered_with_the_derived_macs(stack: Stack) -> None:
    a, b = stack.ep("a"), stack.ep("b")
    assert stack.ping6("a", b["ip6"], count=1)
    assert f"lladdr {b['mac']}" in stack.neigh("a", b["ip6"])
    stack.ping6("a", a["gateway6"], count=1)  # nothing answers the ping; ND is answered
    gw_mac = "0a:58:" + ":".join(f"{int(x):02x}" for x in "10.46.0.1".split("."))
    assert f"lladdr {gw_mac}" in stack.neigh("a", a["gateway6"])


def test_migration_keeps_the_ipv6_address(stack: Stack) -> None:
    web1 = stack.run("h1", "web")
    assert stack.ping6("b", web1["ip6"])  # from h2 to h1
    stack.lab.rm(f"{PREFIX}web")
    assert not stack.ping6("b", web1["ip6"], count=2)
    web2 = stack.run("h2", "web")
    assert (web2["ip6"], web2["mac"], web2["host"]) == (web1["ip6"], web1["mac"], f"{PREFIX}h2")
    assert stack.ping6("b", web2["ip6"])  # now on the same host
    assert stack.ping6("a", web2["ip6"])  # from h1, across the tunnel
    assert tcp6("web", "a", web2["ip6"], 7008, "moved") == f"{stack.ep('a')['ip6']}|moved"


def test_networks_are_isolated_for_ipv6(stack: Stack) -> None:
    a = stack.ep("a")
    r1 = stack.run("h2", "r1", "red", ip=a["ip"])  # red twin of blue's a: the same IPv4
    stack.run("h1", "r2", "red")
    assert r1["ip"] == a["ip"] and r1["ip6"] != a["ip6"]
    assert stack.ping6("r2", r1["ip6"])  # red to red: the control
    assert not stack.ping6("a", r1["ip6"], count=2)  # blue to red's prefix, routed via gateway6
    assert not stack.ping6("r2", a["ip6"], count=2)
    assert not stack.ping6("r1", stack.ep("b")["ip6"], count=2)  # red on h2 to blue's b on h2
    # red's container claims blue's prefix as its own address: still nothing
    sh(["ip", "-n", f"{PREFIX}r2", "-6", "addr", "add", f"{a['ip6']}/64", "dev", "eth0", "nodad"])
    try:
        assert not stack.ping6("r2", stack.ep("b")["ip6"], count=2)
    finally:
        sh(["ip", "-n", f"{PREFIX}r2", "-6", "addr", "del", f"{a['ip6']}/64", "dev", "eth0"])


def test_spoofed_sources_forged_na_and_ra_are_dropped(stack: Stack) -> None:
    a, b, c = stack.ep("a"), stack.ep("b"), stack.ep("c")
    gw6 = a["gateway6"]
    frames = []
    for peer in ("b", "c"):
        dst = stack.ep(peer)
        to = (dst["mac"], dst["ip6"])
        other = c if peer == "b" else b
        frames += [
            udp6(a["mac"], to[0], a["ip6"], to[1], f"own6-{peer}".encode()),  # the control
            udp6(a["mac"], to[0], other["ip6"], to[1], f"other6-{peer}".encode()),
            udp6(a["mac"], to[0], "fd00:46:b::99", to[1], f"rand6-{peer}".encode()),
            udp6(a["mac"], to[0], "fd00:46:c::a2e:2", to[1], f"red6-{peer}".encode()),
            udp6(a["mac"], to[0], link_local(a["mac"]), to[1], f"ll6-{peer}".encode()),
            udp6("02:00:00:00:be:ef", to[0], a["ip6"], to[1], f"mac6-{peer}".encode()),
            forged_na(a["mac"], to[0], a["ip6"], to[1], gw6, a["mac"]),  # "the gateway is me"
            forged_na(a["mac"], to[0], link_local(a["mac"]), to[1], other["ip6"], a["mac"]),
        ]
    frames.append(router_advert(a["mac"], link_local(a["mac"])))
    caps = {peer: Capture(f"{PREFIX}{peer}") for peer in ("b", "c")}
    try:
        send_frames(f"{PREFIX}a", frames)
        got = {peer: cap.drain() for peer, cap in caps.items()}
    finally:
        for cap in caps.values():
            cap.close()
    for peer in ("b", "c"):
        assert any(f"own6-{peer}".encode() in f for f in got[peer]), f"control never reached {peer}"
        for spoof in ("other6", "rand6", "red6", "ll6", "mac6"):
            assert not any(f"{spoof}-{peer}".encode() in f for f in got[peer]), (
                f"{spoof} reached {peer}"
            )
        icmp = [m for f in got[peer] if (m := icmp6_of(f))]
        assert not [m for m in icmp if m[0] == RA], f"a router advertisement reached {peer}"
        forged = [m for m in icmp if m[0] == NA and mac_bytes(a["mac"]) in m[1]]
        assert not forged, f"a forged advertisement reached {peer}"
    # b still knows the gateway by its derived MAC
    stack.ping6("b", gw6, count=1)
    assert a["mac"] not in stack.neigh("b", gw6)


def test_trace_of_ipv6_agrees_with_the_real_switches(stack: Stack) -> None:
    """``vxplane trace`` with an IPv6 destination: the model's path and each switch's
    ``ofproto/trace`` of the same IPv6 packet agree, delivered and dropped."""
    a, b = stack.ep("a"), stack.ep("b")
    params = {"src": f"{PREFIX}a", "dst": b["ip6"], "protocol": "tcp", "port": 7006}
    got = stack.api.get("/api/v1/networks/blue/trace", params=params, timeout=30).json()
    assert got["verdict"] == "delivered" and got["agree"] is True, got
    assert [sw["host"] for sw in got["switches"]] == [f"{PREFIX}h1", f"{PREFIX}h2"]
    params["dst"] = "fd00:46:b::a2e:fe"  # in the prefix, nobody there
    got = stack.api.get("/api/v1/networks/blue/trace", params=params, timeout=30).json()
    assert got["verdict"] == "dropped" and got["agree"] is True, got
    assert a["ip6"] == got["src_ip"]


def test_a_new_subnet6_replaces_the_address_of_a_replugged_container(stack: Stack) -> None:
    """PATCH subnet6, then plug the running container again: it has the new address and
    default route only, not the stale old address beside it (which it would source from)."""

    def global6(name: str) -> list[str]:
        out = sh(["ip", "-n", f"{PREFIX}{name}", "-6", "-o", "addr", "show", "dev", "eth0",
                  "scope", "global"])  # fmt: skip
        return [line.split()[3] for line in out.splitlines()]

    body = {"name": "green", "subnet": SUBNET, "subnet6": "fd00:46:d::/64"}
    stack.api.post("/api/v1/networks", json=body).raise_for_status()
    stack.lab.run("h1", f"{PREFIX}g1", "green")
    stack.lab.run("h2", f"{PREFIX}g2", "green")
    old = stack.ep("g1", "green")
    assert global6("g1") == [f"{old['ip6']}/64"]
    patch = stack.api.patch("/api/v1/networks/green", json={"subnet6": "fd00:46:e::/64"})
    assert patch.status_code == 200, patch.text
    for host, name in (("h1", "g1"), ("h2", "g2")):
        stack.lab.run(host, f"{PREFIX}{name}", "green")  # plugged again, as a runtime would
    new = stack.ep("g1", "green")
    assert new["ip6"].startswith("fd00:46:e::") and new["ip6"] != old["ip6"]
    assert global6("g1") == [f"{new['ip6']}/64"]
    route = sh(["ip", "-n", f"{PREFIX}g1", "-6", "route", "show", "default"])
    assert new["gateway6"] in route and old["gateway6"] not in route, route
    assert stack.ping6("g1", stack.ep("g2", "green")["ip6"])
