"""Host security on a real 2-host lab: port security, tunnel admission, the agent's sockets and
the namespaces it plugs into.

- From a container (a namespace plugged through the agent), frames with a spoofed source MAC
  or IP and ARP with a spoofed sender are dropped on its own port: the other endpoints (one
  on the same host, one across the tunnel) receive none of them and no ARP reply comes back,
  while the same frames with the container's own addresses do arrive (positive controls).
- VXLAN with a valid VNI sent from a namespace on the fabric that is not a registered host
  never reaches the container; the same packet sent from a registered host's underlay
  address does (so it is the source, not the packet, that is refused).
- The agent refuses to plug into the host's own namespace (``/proc/1/ns/net``, its own under
  any path) through its API and CNI, and nothing on the machine or in the lab changes.
- The agent's sockets: 0600 owned by root (0660 with ``--socket-group``), also the Docker
  plugin's; a non-root user cannot connect.

Frames are sent and captured with packet sockets opened inside the namespaces
(``hostagent.netlink.entered_netns``), so no tcpdump or scapy is needed. Prefix ``vxs-``,
underlay 198.18.11.0/24, ports from tests/slots.py (apart from the other labs).
"""

from __future__ import annotations

import grp
import os
import re
import shutil
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

import httpx
import pytest

from hostagent.agent_client import AgentCallError, AgentClient
from hostagent.netlink import entered_netns
from tests import slots
from tests.rawframes import Capture, mac_bytes, send_frames
from vxlab import fabric
from vxlab.lab import Lab
from vxlab.launch import ControllerProcess, controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

PREFIX = slots.prefix("vxs-")
UNDERLAY = slots.underlay("198.18.11.0/24")
API_PORT, OF_PORT = slots.ports("test_portsec", 2)
SUBNET = "10.41.0.0/24"
VXLAN_PORT = 4789
ETH_IP, ETH_ARP = 0x0800, 0x0806
SO_NO_CHECK = 11  # UDP checksum 0: the userspace tunnel drops a bad one, and a tap leaves it
ROGUE_IP = str(IPv4Network(UNDERLAY)[200])


# -- frames ---------------------------------------------------------------------------------


def _ip(text: str) -> bytes:
    return IPv4Address(text).packed


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF


def udp_frame(src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, payload: bytes) -> bytes:
    """Ethernet + IPv4 + UDP (port 9, checksum 0) carrying ``payload``."""
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(payload), 0) + payload
    head = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, _ip(src_ip), _ip(dst_ip)
    )
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    return mac_bytes(dst_mac) + mac_bytes(src_mac) + struct.pack("!H", ETH_IP) + head + udp


def arp_frame(eth_src: str, sha: str, spa: str, tpa: str, op: int = 1) -> bytes:
    """An ARP request (or, with ``op=2``, an unsolicited reply) to the broadcast MAC."""
    body = struct.pack(
        "!HHBBH6s4s6s4s", 1, ETH_IP, 6, 4, op, mac_bytes(sha), _ip(spa), bytes(6), _ip(tpa)
    )
    return b"\xff" * 6 + mac_bytes(eth_src) + struct.pack("!H", ETH_ARP) + body


@dataclass(frozen=True)
class Arp:
    op: int
    sha: str
    spa: str
    tha: str
    tpa: str


def parse_arp(frame: bytes) -> Arp | None:
    if len(frame) < 42 or struct.unpack("!H", frame[12:14])[0] != ETH_ARP:
        return None
    op, sha, spa, tha, tpa = struct.unpack("!6xH6s4s6s4s", frame[14:42])
    return Arp(op, sha.hex(":"), str(IPv4Address(spa)), tha.hex(":"), str(IPv4Address(tpa)))


def send_udp(netns: str, dst: str, port: int, payload: bytes, repeat: int = 3) -> None:
    """UDP datagrams (checksum 0) from namespace ``netns``'s own stack."""
    with entered_netns(fabric.netns_path(netns)):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.setsockopt(socket.SOL_SOCKET, SO_NO_CHECK, 1)
        for _ in range(repeat):
            sock.sendto(payload, (dst, port))
            time.sleep(0.1)


def seen(frames: list[bytes], marker: bytes) -> bool:
    return any(marker in f for f in frames)


# -- the lab --------------------------------------------------------------------------------


@dataclass
class Stack:
    lab: Lab
    ctl: ControllerProcess
    api: httpx.Client
    eps: dict[str, dict]  # container -> its endpoint

    def host_ns(self, i: int) -> str:
        return self.lab.host_name(i)


@pytest.fixture(scope="module")
def stack(lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with controller_and_lab(
        tmp_path_factory.mktemp("portsec"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=2,
    ) as (lab, ctl, api):
        api.post("/api/v1/networks", json={"name": "blue", "subnet": SUBNET}).raise_for_status()
        eps = {
            "a": lab.run("h1", f"{PREFIX}a", "blue"),  # the attacker
            "c": lab.run("h1", f"{PREFIX}c", "blue"),  # a neighbour on the same host
            "b": lab.run("h2", f"{PREFIX}b", "blue"),  # a peer across the tunnel
        }
        assert all(ep["state"] == "ready" for ep in eps.values()), eps
        yield Stack(lab, ctl, api, eps)


# -- port security --------------------------------------------------------------------------


def test_spoofed_source_mac_and_ip_from_a_container_are_dropped(stack: Stack) -> None:
    a, b, c = stack.eps["a"], stack.eps["b"], stack.eps["c"]
    caps = {peer: Capture(f"{PREFIX}{peer}") for peer in ("b", "c")}
    frames = []
    for peer in ("b", "c"):
        dst = stack.eps[peer]
        to = (dst["mac"], a["ip"], dst["ip"])
        frames += [
            udp_frame(a["mac"], to[0], a["ip"], to[2], f"own-{peer}".encode()),
            udp_frame("02:00:00:00:be:ef", to[0], a["ip"], to[2], f"mac-{peer}".encode()),
            udp_frame(a["mac"], to[0], "10.41.0.250", to[2], f"ip-{peer}".encode()),
            udp_frame(
                a["mac"],
                to[0],
                c["ip"] if peer == "b" else b["ip"],
                to[2],
                f"other-ip-{peer}".encode(),
            ),  # fmt: skip
            udp_frame(c["mac"], to[0], c["ip"], to[2], f"as-c-{peer}".encode()),
            udp_frame(a["mac"], to[0], "192.0.2.1", to[2], f"foreign-{peer}".encode()),
        ]
    try:
        send_frames(f"{PREFIX}a", frames)
        got = {peer: cap.drain() for peer, cap in caps.items()}
    finally:
        for cap in caps.values():
            cap.close()
    for peer in ("b", "c"):
        assert seen(got[peer], f"own-{peer}".encode()), f"the control frame never reached {peer}"
        for spoof in ("mac", "ip", "other-ip", "as-c", "foreign"):
            assert not seen(got[peer], f"{spoof}-{peer}".encode()), f"{spoof} reached {peer}"


def test_arp_with_a_spoofed_sender_is_dropped(stack: Stack) -> None:
    a, b, c = stack.eps["a"], stack.eps["b"], stack.eps["c"]
    fake_mac = "02:00:00:00:ba:d0"
    requests = [
        arp_frame(a["mac"], a["mac"], a["ip"], b["ip"]),  # the control: answered
        arp_frame(a["mac"], a["mac"], "10.41.0.251", b["ip"]),  # spoofed sender IP
        arp_frame(a["mac"], a["mac"], c["ip"], b["ip"]),  # a neighbour's IP
        arp_frame(a["mac"], fake_mac, a["ip"], c["ip"]),  # spoofed sender MAC
        arp_frame(fake_mac, fake_mac, a["ip"], c["ip"]),  # spoofed MAC everywhere
        arp_frame(a["mac"], a["mac"], b["ip"], c["ip"], op=2),  # "b's IP is at a" (poisoning)
    ]
    caps = {name: Capture(f"{PREFIX}{name}") for name in ("a", "b", "c")}
    try:
        send_frames(f"{PREFIX}a", requests)
        got = {name: cap.drain() for name, cap in caps.items()}
    finally:
        for cap in caps.values():
            cap.close()
    replies = [arp for f in got["a"] if (arp := parse_arp(f)) and arp.op == 2]
    assert any(r.spa == b["ip"] and (r.tpa, r.tha) == (a["ip"], a["mac"]) for r in replies), (
        "the control ARP request was not answered"
    )
    assert {(r.tpa, r.tha) for r in replies} == {(a["ip"], a["mac"])}, replies
    for peer in ("b", "c"):
        arps = [arp for f in got[peer] if (arp := parse_arp(f))]
        assert not [x for x in arps if x.sha in (a["mac"], fake_mac)], arps


# -- tunnel admission -----------------------------------------------------------------------


@pytest.fixture
def rogue(stack: Stack) -> Iterator[str]:
    """A namespace on the fabric with an unused underlay address: not a registered host."""
    ns = f"{PREFIX}rg"
    assert not fabric.netns_exists(ns), f"{ns} exists (a leftover?)"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        fabric.make_veth(f"{ns}u", ns, stack.lab.fabric_ns, f"{ns}f")
        prefixlen = IPv4Network(UNDERLAY).prefixlen
        subprocess.run(
            ["ip", "-n", ns, "addr", "add", f"{ROGUE_IP}/{prefixlen}", "dev", fabric.UNDERLAY_DEV],
            check=True,
        )
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        yield ns
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)  # takes its veth along
        if fabric.link_exists(f"{ns}u"):
            subprocess.run(["ip", "link", "del", f"{ns}u"], check=False)


def vxlan(vni: int, inner: bytes) -> bytes:
    return struct.pack("!II", 0x08000000, vni << 8) + inner


def test_vxlan_from_an_unregistered_underlay_address_never_reaches_a_container(
    stack: Stack, rogue: str
) -> None:
    a, b = stack.eps["a"], stack.eps["b"]
    vni = stack.api.get("/api/v1/networks/blue").json()["vni"]
    h2_ip = str(stack.lab.underlay_ip(2))
    hosts = {h["underlay_ip"] for h in stack.api.get("/api/v1/hosts").json()}
    assert ROGUE_IP not in hosts and h2_ip in hosts

    def packet(marker: bytes) -> bytes:
        return vxlan(vni, udp_frame(a["mac"], b["mac"], a["ip"], b["ip"], marker))

    cap = Capture(f"{PREFIX}b")
    try:
        send_udp(rogue, h2_ip, VXLAN_PORT, packet(b"rogue-vxlan"))
        send_udp(stack.host_ns(1), h2_ip, VXLAN_PORT, packet(b"host-vxlan"))
        got = cap.drain()
    finally:
        cap.close()
    assert seen(got, b"host-vxlan"), "the same packet from registered h1 did not arrive"
    assert not seen(got, b"rogue-vxlan"), "VXLAN from an unregistered address was delivered"


# -- the namespaces the agent plugs into ----------------------------------------------------


def _machine_state(stack: Stack) -> dict[str, str]:
    """Routes and links of the machine's namespace and of lab host h1, and h1's OVS ports."""

    def ip(*args: str) -> str:
        return subprocess.run(["ip", *args], capture_output=True, text=True, check=True).stdout

    h1 = stack.host_ns(1)
    return {
        "root routes": ip("route", "show", "table", "all"),
        "root links": ip("-o", "link", "show"),
        "h1 routes": ip("-n", h1, "route", "show", "table", "all"),
        "h1 links": ip("-n", h1, "-o", "link", "show"),
        "h1 ports": " ".join(sorted(stack.lab.ports("h1"))),
    }


def test_the_agent_refuses_the_hosts_own_namespace_and_changes_nothing(stack: Stack) -> None:
    h1 = stack.host_ns(1)
    paths = stack.lab.host_paths("h1")
    agent_pid = next(
        h["pids"]["agent"]["pid"] for h in stack.lab.status()["hosts"] if h["name"] == h1
    )
    before = _machine_state(stack)
    refused = {
        # The machine's own namespace; in a sandbox that hides PID 1, not even readable.
        "/proc/1/ns/net": "host's own|Permission denied",
        f"/proc/{agent_pid}/ns/net": "host's own",  # the agent's own (the lab host's)
        fabric.netns_path(h1): "host's own",  # the same, by its /run/netns name
        h1: "host's own",
        "/proc/self/ns/net": "host's own",  # the agent's self
        f"/proc/{agent_pid}/ns/uts": "not a network namespace",
        "/etc/hostname": "not a network namespace",
    }
    with AgentClient(paths.agent_sock) as agent:
        for i, (netns, why) in enumerate(refused.items()):
            with pytest.raises(AgentCallError) as err:
                agent.attach(netns, f"evil{i}", "blue")
            assert err.value.status == 422, (netns, err.value.detail)
            assert re.search(why, err.value.detail), (netns, err.value.detail)
        cni = httpx.Client(transport=httpx.HTTPTransport(uds=paths.agent_sock), base_url="http://a")
        with cni:
            body = {"netns": "/proc/1/ns/net", "name": "evilcni", "network": "blue",
                    "ifname": "eth0", "container_id": "x", "config": "c"}  # fmt: skip
            r = cni.post("/v1/cni/add", json=body)
            assert r.status_code == 422, r.text
            assert r.json()["cni_code"] == 7  # INVALID_CONFIG
    assert _machine_state(stack) == before
    names = {ep["name"] for ep in stack.api.get("/api/v1/endpoints?network=blue").json()}
    assert not {n for n in names if n.startswith("evil")}, names


# -- the agent's sockets --------------------------------------------------------------------


def _as_nobody_connects(path: str, group: str | None = None) -> bool:
    """Whether user ``nobody`` (with primary group ``group``) can connect to socket ``path``."""
    code = "import socket,sys; s=socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])"
    argv = ["runuser", "-u", "nobody", *(["-g", group] if group else []), "--"]
    python = shutil.which("python3", path="/usr/bin:/bin:/usr/local/bin")  # not root's venv
    assert python, "a system python3 is needed to try the socket as nobody"
    done = subprocess.run([*argv, python, "-c", code, path], capture_output=True)
    if done.returncode and b"PermissionError" not in done.stderr:
        raise AssertionError(f"connect as nobody failed otherwise: {done.stderr.decode()}")
    return done.returncode == 0


def _reachable_by_others(path: str) -> None:
    """Every directory above ``path`` is searchable by others: only the socket's mode can
    keep them out (else the test below could not fail)."""
    for parent in Path(path).parents:
        assert os.stat(parent).st_mode & 0o001, f"{parent} is not searchable by others"


def test_the_lab_agents_socket_is_root_only(stack: Stack) -> None:
    sock = stack.lab.host_paths("h1").agent_sock
    st = os.lstat(sock)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    _reachable_by_others(sock)
    assert not _as_nobody_connects(sock)


@pytest.fixture
def lone_agent(lab_prerequisites: None) -> Iterator[tuple[Path, str]]:
    """A real agent (umask 0) with ``--socket-group daemon`` and the Docker drivers, on an
    ovsdb of its own (no ovs-vswitchd, no controller, no engine: it serves its sockets and
    keeps retrying the rest, touching nothing of the machine), in a directory others may
    search (pytest's own temporary directories are 0700: they would keep others out
    whatever the sockets' modes)."""
    group = "daemon"
    grp.getgrnam(group)
    tmp_path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}sock-"))
    os.chmod(tmp_path, 0o755)
    try:
        yield from _lone_agent(tmp_path, group)
    finally:
        shutil.rmtree(tmp_path, ignore_errors=True)


def _lone_agent(tmp_path: Path, group: str) -> Iterator[tuple[Path, str]]:
    db = tmp_path / "conf.db"
    subprocess.run(["ovsdb-tool", "create", str(db), "/usr/share/openvswitch/vswitch.ovsschema"],
                   check=True)  # fmt: skip
    ovsdb = subprocess.Popen(
        ["ovsdb-server", str(db), f"--remote=punix:{tmp_path}/db.sock",
         f"--unixctl={tmp_path}/ovsdb.ctl", "--no-chdir", f"--log-file={tmp_path}/ovsdb.log"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    agent = None
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "db.sock").exists():
            assert time.monotonic() < deadline and ovsdb.poll() is None, "ovsdb-server failed"
            time.sleep(0.05)
        token = tmp_path / "agent-token"  # for an agent that needs one; no controller asks
        token.write_text("vx-not-a-real-token\n")
        token.chmod(0o600)
        with open(tmp_path / "agent.log", "wb") as log:
            agent = subprocess.Popen(
                [sys.executable, "-m", "hostagent", "--controller", "http://127.0.0.1:9",
                 "--host", f"{PREFIX}lone", "--underlay-ip", "198.51.100.7",
                 "--ovsdb", f"unix:{tmp_path}/db.sock", "--datapath-type", "netdev",
                 "--socket", f"{tmp_path}/run/agent.sock", "--socket-group", group,
                 "--docker-plugin", f"{tmp_path}/plugins/vxplane.sock",
                 "--docker-engine", f"unix://{tmp_path}/no-engine.sock"],
                stdout=subprocess.DEVNULL, stderr=log,
                env={**os.environ, "VXPLANE_AGENT_TOKEN_FILE": str(token)},
                umask=0,  # the modes must not depend on the umask it is started with
            )  # fmt: skip
        for sock in ("run/agent.sock", "plugins/vxplane.sock"):
            while not (tmp_path / sock).exists():
                assert agent.poll() is None, (tmp_path / "agent.log").read_text()
                assert time.monotonic() < deadline, f"no {sock}"
                time.sleep(0.05)
        yield tmp_path, group
    finally:
        for child in (agent, ovsdb):
            if child is not None and child.poll() is None:
                child.terminate()
                try:
                    child.wait(10)
                except subprocess.TimeoutExpired:
                    child.kill()
                    child.wait(5)


def test_agent_sockets_with_a_group_and_the_docker_plugins(lone_agent: tuple[Path, str]) -> None:
    if shutil.which("runuser") is None:
        pytest.fail("runuser (util-linux) is needed to try the sockets as another user")
    tmp, group = lone_agent
    api, plugin = str(tmp / "run" / "agent.sock"), str(tmp / "plugins" / "vxplane.sock")
    gid = grp.getgrnam(group).gr_gid
    st = os.lstat(api)
    assert stat.S_IMODE(st.st_mode) == 0o660 and (st.st_uid, st.st_gid) == (0, gid)
    st = os.lstat(plugin)  # only dockerd (root) talks to the Docker plugin
    assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    for path in (api, plugin):
        _reachable_by_others(path)
        assert not _as_nobody_connects(path)
    assert _as_nobody_connects(api, group)  # the group may
    assert not _as_nobody_connects(plugin, group)
    with AgentClient(api) as agent:  # and it is the agent answering there
        assert agent.healthz()["registered"] is False
    for path in tmp.rglob("*"):  # nothing the agent made is writable by others
        assert not os.lstat(path).st_mode & 0o022 or path.is_socket(), oct(os.lstat(path).st_mode)
