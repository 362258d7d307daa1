"""The Docker drivers with real engines: one dockerd per emulated host, 2 hosts.

``docker network create -d vxplane --ipam-driver vxplane``, containers on both hosts, ping
and TCP, isolation, stable addresses across hosts, an engine SIGKILL, a dual-stack network
(``--ipv6``), malformed plugin calls, and a full cleanup. Prefix ``vxd-``, underlay
198.18.9.0/24, ports from tests/slots.py. The lab starts (and stops by pid) its
own dockerd processes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from hostagent.plug import device_names
from tests import slots
from vxcommon.addr6 import derive_ip6, link_local
from vxlab.docker import IMAGE, engine_paths
from vxlab.lab import Lab
from vxlab.launch import controller_and_lab
from vxlab.proc import pid_alive

pytestmark = [pytest.mark.root, pytest.mark.timeout(300)]

PREFIX = slots.prefix("vxd-")
UNDERLAY = slots.underlay("198.18.9.0/24")
API_PORT, OF_PORT = slots.ports("test_docker", 2)
H1, H2 = f"{PREFIX}h1", f"{PREFIX}h2"
BLUE, RED = ("vxd-blue", "10.60.0.0/24"), ("vxd-red", "10.61.0.0/24")
TEAL, TEAL6 = ("vxd-teal", "10.62.0.0/24"), "fd00:62::/64"  # dual stack


@dataclass
class Stack:
    lab: Lab
    api: httpx.Client

    def docker(self, host: str, *args: str, check: bool = True) -> str:
        done = subprocess.run(
            self.lab.docker_argv(host, list(args)), capture_output=True, text=True, timeout=90
        )
        if check and done.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} on {host}: {done.stderr.strip()}")
        return done.stdout.strip() if check else done.stdout + done.stderr

    def run(self, host: str, name: str, network: str, *extra: str) -> dict[str, Any]:
        self.docker(host, "run", "-d", "--name", name, "--network", network, *extra, IMAGE,
                    "sleep", "3600")  # fmt: skip
        doc = json.loads(self.docker(host, "inspect", name))[0]
        cfg = doc["NetworkSettings"]["Networks"][network]
        return {
            "ip": cfg["IPAddress"], "mac": cfg["MacAddress"], "endpoint": cfg["EndpointID"],
            "ip6": cfg["GlobalIPv6Address"], "prefixlen6": cfg["GlobalIPv6PrefixLen"],
            "gateway6": cfg["IPv6Gateway"],
        }  # fmt: skip

    def ping(self, host: str, container: str, ip: str) -> bool:
        argv = self.lab.docker_argv(host, ["exec", container, "ping", "-c", "1", "-W", "2", ip])
        return subprocess.run(argv, capture_output=True, timeout=30).returncode == 0

    def ports(self, host: str) -> list[str]:
        return sorted(self.lab.ports(host))

    def links(self, host: str) -> list[str]:
        out = subprocess.run(
            ["ip", "-n", host, "-o", "link"], capture_output=True, text=True, check=True
        ).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]

    def flows_with(self, text: str) -> list[str]:
        found = []
        for host in (H1, H2):
            out = subprocess.run(
                ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", self.lab.ofctl_target(host)],
                capture_output=True, text=True, check=True,
            ).stdout  # fmt: skip
            found += [f for f in out.splitlines() if text in f]
        return found

    def endpoint(self, network: str, name: str) -> dict[str, Any] | None:
        resp = self.api.get(f"/api/v1/networks/{network}/endpoints/{name}")
        return None if resp.status_code == 404 else resp.raise_for_status().json()

    def plugin(self, host: str, method: str, body: Any) -> tuple[int, Any]:
        """POST to the host's plugin socket as the engine does."""
        sock = f"{engine_paths(self.lab.host_paths(host).dir)['plugins']}/vxplane.sock"
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        with httpx.Client(
            transport=httpx.HTTPTransport(uds=sock), base_url="http://plugin", timeout=30
        ) as http:
            resp = http.post(f"/{method}", content=raw)
        return resp.status_code, resp.json()


def network(stack: Stack, name: str) -> Any:
    """The vxplane network ``name`` once the controller has it (the agents create it right
    after ``docker network create`` returned)."""
    return wait_for(
        name, lambda: (r := stack.api.get(f"/api/v1/networks/{name}")).is_success and r.json()
    )


def wait_for(what: str, check: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def orphan_port(stack: Stack, host: str, name: str) -> str:
    """A bound Docker attachment on ``host`` that no container holds (as left by a crash).

    It is made "just created": the agent spares a Docker port younger than 5 s that it has
    never seen in use (it may be an earlier agent's, still starting), so the running agent
    cannot clean it up while it is being made (``age_port`` makes it old)."""
    port, peer = device_names(BLUE[0], name)
    db = stack.lab.host_paths(host).db
    subprocess.run(["ip", "-n", host, "link", "add", port, "type", "veth", "peer", "name", peer],
                   check=True)  # fmt: skip
    subprocess.run(["ip", "-n", host, "link", "set", port, "up"], check=True)
    ep = stack.api.post(
        f"/api/v1/networks/{BLUE[0]}/endpoints", json={"name": name, "host": host}
    ).json()
    subprocess.run(
        ["ovs-vsctl", f"--db={db}", "add-port", "br-int", port, "--", "set", "Interface", port,
         f"external_ids:vxplane-network={BLUE[0]}", f"external_ids:vxplane-endpoint={name}",
         f"external_ids:vxplane-ip={ep['ip']}", f"external_ids:vxplane-docker-endpoint={name}0",
         "external_ids:vxplane-docker-network=none",
         f"external_ids:vxplane-docker-since={time.time():.3f}"],
        check=True,
    )  # fmt: skip
    ofport = subprocess.run(
        ["ovs-vsctl", f"--db={db}", "get", "Interface", port, "ofport"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    stack.api.put(
        f"/api/v1/networks/{BLUE[0]}/endpoints/{name}/binding",
        json={"host": host, "ofport": int(ofport)},
    ).raise_for_status()
    return port


def age_port(stack: Stack, host: str, port: str) -> None:
    """Make a Docker port look created long ago (no longer spared as just created)."""
    subprocess.run(
        ["ovs-vsctl", f"--db={stack.lab.host_paths(host).db}", "set", "Interface", port,
         "external_ids:vxplane-docker-since=1"],
        check=True,
    )  # fmt: skip


@pytest.fixture(scope="module")
def stack(docker_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with controller_and_lab(
        tmp_path_factory.mktemp("docker"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=2,
        docker=True,
    ) as (lab, _ctl, api):
        try:
            st = Stack(lab, api)
            for host in (H1, H2):
                for name, subnet in (BLUE, RED):
                    st.docker(host, "network", "create", "-d", "vxplane", "--ipam-driver",
                              "vxplane", "--subnet", subnet, name)  # fmt: skip
            yield st
        finally:
            dirs = [lab.host_paths(h).dir for h in (H1, H2)]
            pids = [
                p["pid"] for h in lab.status()["hosts"] for k, p in h["pids"].items()
                if k in ("dockerd", "mnt-holder")
            ]  # fmt: skip
    # the lab is down: the engines and their files are gone
    wait_for("engines stopped", lambda: not [p for p in pids if pid_alive(p)], 10)
    assert not [d for d in dirs if Path(d).exists()], "engine data roots left behind"


def test_network_create_adopts_one_vxplane_network_per_name(stack: Stack) -> None:
    for name, subnet in (BLUE, RED):
        net = network(stack, name)
        assert net["subnet"] == subnet and net["gateway"] == subnet.replace("0/24", "1")
    names = [n["name"] for n in stack.api.get("/api/v1/networks").json()]
    assert names.count(BLUE[0]) == 1 and names.count(RED[0]) == 1


def test_ping_tcp_across_hosts_and_isolation(stack: Stack) -> None:
    b1 = stack.run(H1, "b1", BLUE[0])
    b2 = stack.run(H2, "b2", BLUE[0])
    r1 = stack.run(H2, "r1", RED[0])
    ep = stack.endpoint(BLUE[0], "b1")
    assert ep and ep["state"] == "ready" and ep["host"] == H1
    assert (ep["ip"], ep["mac"]) == (b1["ip"], b1["mac"])
    # the container started only once its flows were in: the first ping is answered
    assert stack.ping(H2, "b2", b1["ip"]) and stack.ping(H1, "b1", b2["ip"])
    stack.docker(H1, "exec", "-d", "b1", "sh", "-c", "nc -l -p 7000 > /tmp/got")
    time.sleep(0.3)
    sent = stack.docker(H2, "exec", "b2", "sh", "-c",
                        f"echo over vxlan | nc -w 2 {b1['ip']} 7000; echo rc=$?")  # fmt: skip
    assert sent.endswith("rc=0"), sent
    got = wait_for("tcp data", lambda: stack.docker(H1, "exec", "b1", "cat", "/tmp/got"))
    assert got == "over vxlan"
    # red reaches neither blue container, blue does not reach red
    assert not stack.ping(H2, "r1", b1["ip"]) and not stack.ping(H2, "r1", b2["ip"])
    assert not stack.ping(H1, "b1", r1["ip"])


def test_same_name_on_the_other_host_keeps_ip_and_mac(stack: Stack) -> None:
    first = stack.run(H1, "mover", BLUE[0])
    stack.docker(H1, "rm", "-f", "mover")
    ep = stack.endpoint(BLUE[0], "mover")
    assert ep and ep["state"] == "reserved" and ep["host"] is None
    again = stack.run(H2, "mover", BLUE[0])
    assert (again["ip"], again["mac"]) == (first["ip"], first["mac"])
    mac = stack.docker(H2, "exec", "mover", "cat", "/sys/class/net/eth0/address")
    assert mac == first["mac"]
    assert stack.ping(H1, "b1", again["ip"]) and stack.ping(H2, "mover", first["ip"])
    # --ip on any host
    fixed = stack.run(H1, "fixed", BLUE[0], "--ip", "10.60.0.200")
    assert fixed["ip"] == "10.60.0.200" and fixed["mac"] == "0a:58:0a:3c:00:c8"
    assert stack.ping(H2, "mover", "10.60.0.200")
    # the same address for another container: refused with the driver's message
    out = stack.docker(H2, "run", "-d", "--name", "clash", "--network", BLUE[0], "--ip",
                       "10.60.0.200", IMAGE, "sleep", "60", check=False)  # fmt: skip
    assert "vxplane" in out and "10.60.0.200" in out, out
    stack.docker(H2, "rm", "-f", "clash")
    assert stack.endpoint(BLUE[0], "clash") is None or not stack.endpoint(BLUE[0], "clash")["host"]  # type: ignore[index]


def _labelled_from_the_bind(stack: Stack, network: str, name: str) -> dict[str, Any]:
    """The endpoint, checked to carry no change since its newest bind: its labels came in
    the binding request itself, so they were there when it first became ready."""
    ep = stack.endpoint(network, name)
    assert ep and ep["state"] == "ready", ep
    steps = stack.api.get(f"/api/v1/networks/{network}/endpoints/{name}/history").json()
    assert steps and steps[0]["kind"] == "bound", steps
    assert ep["revision"] == steps[0]["revision"], (ep, steps[0])
    return ep


def _db_may_reach_only_web(stack: Stack, net: str, name: str) -> None:
    """A policy on ``net``: tier=db sends only to tier=web (and, Kubernetes' default policy
    types, accepts nothing)."""
    policy = {
        "name": name,
        "selector": {"matchLabels": {"tier": "db"}},
        "policy_types": ["Egress"],
        "egress": [{"to": [{"selector": {"matchLabels": {"tier": "web"}}}]}],
    }
    r = stack.api.post(f"/api/v1/networks/{net}/policies", json=policy)
    assert r.status_code == 201, r.text


def _first_pings(other: str, web: str, before: str | None = None) -> str:
    """An entrypoint that (after ``before``) pings ``other`` then ``web`` once each, logs
    ``other-open|closed`` and ``web-open|closed`` in /tmp/log, and sleeps."""
    probe = "if ping -c 1 -W 2 {ip} >/dev/null 2>&1; then echo {n}-open; else echo {n}-closed; fi"
    steps = [before] if before else []
    steps += [
        probe.format(ip=other, n="other") + " >> /tmp/log",
        probe.format(ip=web, n="web") + " >> /tmp/log",
        "exec sleep 3600",
    ]
    return "; ".join(steps)


def _ping_log(stack: Stack, host: str, container: str) -> list[str]:
    """The two lines ``_first_pings`` logs, once both are there."""
    log = wait_for(
        "the entrypoint's pings",
        lambda: (
            len((t := stack.docker(host, "exec", container, "cat", "/tmp/log")).split()) == 2 and t
        ),
        20,
    )
    return str(log).split()


def test_container_labels_select_it_from_its_first_packet(stack: Stack) -> None:
    """``docker run --label tier=db``: the endpoint carries the label from the bind on, so an
    egress policy on tier=db holds for the very first packet the container's entrypoint
    sends (to an unlabelled peer: dropped; to tier=web: passes). A label no selector can
    name (an image-style URL value) is left out; a later container of the same name
    without labels does not inherit them."""
    net = BLUE[0]
    web = stack.run(H2, "lweb", net, "--label", "tier=web")
    other = stack.run(H2, "lother", net)
    _db_may_reach_only_web(stack, net, "db-out")
    first = _first_pings(other["ip"], web["ip"])
    try:
        stack.docker(H1, "run", "-d", "--name", "ldb", "--network", net, "--label", "tier=db",
                     "--label", "org.opencontainers.image.source=https://example.invalid/x",
                     IMAGE, "sh", "-c", first)  # fmt: skip
        ep = _labelled_from_the_bind(stack, net, "ldb")
        assert ep["labels"] == {"tier": "db"}
        assert _ping_log(stack, H1, "ldb") == ["other-closed", "web-open"]
        # unselected endpoints stay open (the policy does not touch them)
        assert stack.ping(H2, "lother", web["ip"])
        # the same name again, without labels: the endpoint's labels are replaced, not kept
        stack.docker(H1, "rm", "-f", "ldb")
        stack.run(H1, "ldb", net)
        assert _labelled_from_the_bind(stack, net, "ldb")["labels"] == {}
        assert stack.ping(H1, "ldb", other["ip"])
    finally:
        stack.api.delete(f"/api/v1/networks/{net}/policies/db-out")
        stack.docker(H1, "rm", "-f", "ldb", check=False)
        stack.docker(H2, "rm", "-f", "lweb", "lother", check=False)


def test_network_connect_carries_the_running_containers_labels(stack: Stack) -> None:
    """``docker network connect`` of a running ``--label tier=db`` container: the engine's
    listing names no connecting container then (the endpoint is anonymous), so the driver
    finds the container through Join's sandbox and binds the endpoint again with its labels,
    ready before Join answers. The container's entrypoint, already running, waits for the
    new interface's address and pings at once: the first packet to an unlabelled peer is
    dropped by the tier=db egress policy, to tier=web it passes."""
    net = BLUE[0]
    web = stack.run(H2, "cweb", net, "--label", "tier=web")
    other = stack.run(H2, "cother", net)
    _db_may_reach_only_web(stack, net, "cdb-out")
    wait_eth1 = "until grep -q eth1 /proc/net/route; do usleep 1000; done"  # its address
    script = _first_pings(other["ip"], web["ip"], before=wait_eth1)
    try:
        stack.docker(H1, "run", "-d", "--name", "cdb", "--network", RED[0], "--label",
                     "tier=db", IMAGE, "sh", "-c", script)  # fmt: skip
        stack.docker(H1, "network", "connect", net, "cdb")
        # read at once: Join answered only once the labels were in (a bind of their own)
        (ep,) = [e for e in stack.api.get(f"/api/v1/endpoints?network={net}&host={H1}").json()
                 if e["name"].startswith("docker-anon-")]  # fmt: skip
        assert ep["labels"] == {"tier": "db"} and ep["state"] == "ready", ep
        doc = json.loads(stack.docker(H1, "inspect", "cdb"))[0]
        assert doc["NetworkSettings"]["Networks"][net]["IPAddress"] == ep["ip"]
        assert _ping_log(stack, H1, "cdb") == ["other-closed", "web-open"]
    finally:
        stack.api.delete(f"/api/v1/networks/{net}/policies/cdb-out")
        stack.docker(H1, "rm", "-f", "cdb", check=False)
        stack.docker(H2, "rm", "-f", "cweb", "cother", check=False)


def test_agent_survives_an_engine_sigkill(stack: Stack) -> None:
    peer = stack.run(H1, "kpeer", BLUE[0])
    k1 = stack.run(H2, "k1", BLUE[0])
    k1_if = device_names(BLUE[0], "k1")[0]
    # an attachment whose container is gone without any teardown (as after a crash)
    ghost_if = orphan_port(stack, H2, "ghost")
    assert k1_if in stack.ports(H2) and ghost_if in stack.ports(H2)
    age_port(stack, H2, ghost_if)

    stack.lab.restart_dockerd("h2", kill=True)
    # k1 died with the engine; the ghost never had a container: both are cleaned up
    wait_for("stale ports removed", lambda: not {k1_if, ghost_if} & set(stack.ports(H2)), 20)
    assert ghost_if not in stack.links(H2) and k1_if not in stack.links(H2)
    for name in ("k1", "ghost"):
        ep = wait_for(
            name, lambda n=name: (e := stack.endpoint(BLUE[0], n)) and not e["host"] and e
        )
        assert ep["state"] == "reserved"
    assert stack.flows_with(f"nw_dst={k1['ip']},") == []
    # the agent still serves the restarted engine
    k2 = stack.run(H2, "k2", BLUE[0])
    assert stack.ping(H2, "k2", peer["ip"])
    assert stack.ping(H1, "kpeer", k2["ip"])
    stack.docker(H2, "rm", "-f", "k1", "k2", "b2", "r1", "mover")
    stack.docker(H1, "rm", "-f", "kpeer")


def test_restarted_agent_reconciles_with_the_engine(stack: Stack) -> None:
    live = stack.run(H1, "live1", BLUE[0])
    ghost_if = orphan_port(stack, H1, "ghost1")
    agent = next(h for h in stack.lab.status()["hosts"] if h["name"] == H1)["pids"]["agent"]
    os.kill(agent["pid"], signal.SIGKILL)
    age_port(stack, H1, ghost_if)
    stack.lab.up(
        hosts=2,
        controller_url=f"http://{stack.lab.gateway_ip}:{API_PORT}",
        openflow=f"tcp:{stack.lab.gateway_ip}:{OF_PORT}",
        docker=True,
    )
    wait_for("orphan removed", lambda: ghost_if not in stack.ports(H1), 20)
    wait_for("orphan unbound", lambda: not stack.endpoint(BLUE[0], "ghost1")["host"])  # type: ignore[index]
    # the running container's attachment is kept and still works
    assert device_names(BLUE[0], "live1")[0] in stack.ports(H1)
    assert stack.endpoint(BLUE[0], "live1")["state"] == "ready"  # type: ignore[index]
    assert stack.ping(H1, "b1", live["ip"])
    stack.docker(H1, "rm", "-f", "live1")


def test_two_networks_with_the_same_subnet_on_one_host(stack: Stack) -> None:
    """Same CIDR, two Docker networks on each host: each container lands in its own network
    (even with the same --ip in both), reaches only its own peers, across an agent restart
    and an engine restart."""
    subnet = "10.62.0.0/24"
    nets = ("vxd-sa", "vxd-sb")
    for host in (H1, H2):
        for net in nets:
            stack.docker(host, "network", "create", "-d", "vxplane", "--ipam-driver", "vxplane",
                         "--subnet", subnet, net)  # fmt: skip
    vnis = {n: network(stack, n) for n in nets}
    assert vnis["vxd-sa"]["subnet"] == vnis["vxd-sb"]["subnet"] == subnet
    assert vnis["vxd-sa"]["vni"] != vnis["vxd-sb"]["vni"]
    # the same address in both networks on H1; a different one per network on H2
    a1 = stack.run(H1, "sa1", "vxd-sa", "--ip", "10.62.0.10")
    b1 = stack.run(H1, "sb1", "vxd-sb", "--ip", "10.62.0.10")
    a2 = stack.run(H2, "sa2", "vxd-sa", "--ip", "10.62.0.20")
    b2 = stack.run(H2, "sb2", "vxd-sb", "--ip", "10.62.0.21")
    assert a1["ip"] == b1["ip"] == "10.62.0.10"
    for net, name, host in (("vxd-sa", "sa1", H1), ("vxd-sb", "sb1", H1),
                            ("vxd-sa", "sa2", H2), ("vxd-sb", "sb2", H2)):  # fmt: skip
        ep = stack.endpoint(net, name)
        assert ep and ep["host"] == host and ep["state"] == "ready", (net, name, ep)
    other = {"vxd-sa": "vxd-sb", "vxd-sb": "vxd-sa"}
    for net, name in (("vxd-sa", "sa1"), ("vxd-sb", "sb1")):
        assert stack.endpoint(other[net], name) is None

    def isolated() -> None:
        assert stack.ping(H1, "sa1", a2["ip"]) and stack.ping(H1, "sb1", b2["ip"])
        assert not stack.ping(H1, "sa1", b2["ip"]) and not stack.ping(H1, "sb1", a2["ip"])
        assert stack.ping(H2, "sa2", a1["ip"]) and stack.ping(H2, "sb2", b1["ip"])

    isolated()
    # the agent restarts: containers started afterwards still find their own network
    agent = next(h for h in stack.lab.status()["hosts"] if h["name"] == H1)["pids"]["agent"]
    os.kill(agent["pid"], signal.SIGKILL)
    stack.lab.up(
        hosts=2,
        controller_url=f"http://{stack.lab.gateway_ip}:{API_PORT}",
        openflow=f"tcp:{stack.lab.gateway_ip}:{OF_PORT}",
        docker=True,
    )
    a3 = stack.run(H1, "sa3", "vxd-sa")
    b3 = stack.run(H1, "sb3", "vxd-sb", "--ip", "10.62.0.30")
    assert (stack.endpoint("vxd-sa", "sa3") or {}).get("ip") == a3["ip"]
    assert (stack.endpoint("vxd-sb", "sb3") or {}).get("ip") == b3["ip"]
    assert stack.endpoint("vxd-sb", "sa3") is None and stack.endpoint("vxd-sa", "sb3") is None
    assert stack.ping(H1, "sa3", a2["ip"]) and not stack.ping(H1, "sa3", b2["ip"])
    assert stack.ping(H1, "sb3", b2["ip"]) and not stack.ping(H1, "sb3", a2["ip"])
    isolated()
    # the engine restarts (its containers stop): new containers still find their network
    stack.docker(H1, "rm", "-f", "sa1", "sb1", "sa3", "sb3")
    stack.lab.restart_dockerd(H1)
    a4 = stack.run(H1, "sa4", "vxd-sa", "--ip", "10.62.0.40")
    b4 = stack.run(H1, "sb4", "vxd-sb", "--ip", "10.62.0.40")
    assert (stack.endpoint("vxd-sa", "sa4") or {}).get("host") == H1
    assert (stack.endpoint("vxd-sb", "sb4") or {}).get("host") == H1
    assert stack.ping(H1, "sa4", a2["ip"]) and not stack.ping(H1, "sa4", b2["ip"])
    assert stack.ping(H1, "sb4", b2["ip"]) and not stack.ping(H1, "sb4", a2["ip"])
    assert a4["ip"] == b4["ip"]
    for host in (H1, H2):
        left = stack.docker(host, "ps", "-aq").split()
        if left:
            stack.docker(host, "rm", "-f", *left)
        for net in nets:
            stack.docker(host, "network", "rm", net)
    names = [n["name"] for n in stack.api.get("/api/v1/networks").json()]
    assert not set(nets) & set(names), [
        (e["network"], e["name"], e["host"], e["state"])
        for n in nets
        if n in names
        for e in stack.api.get("/api/v1/endpoints", params={"network": n}).json()
    ]


NET_CALLS: list[tuple[str, Any]] = [
    ("NetworkDriver.CreateNetwork", b"{not json"),
    ("NetworkDriver.CreateNetwork", [1, 2]),
    ("NetworkDriver.CreateNetwork", {"IPv4Data": [{"Pool": "10.70.0.0/24"}]}),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "IPv4Data": []}),
    ("NetworkDriver.CreateNetwork", {"NetworkID": "n1", "IPv4Data": [{"Pool": "10.70.0.1/24"}]}),
    ("NetworkDriver.CreateNetwork", {"NetworkID": 5, "IPv4Data": [{"Pool": "10.70.0.0/24"}]}),
    (
        "NetworkDriver.CreateNetwork",
        {"NetworkID": "n1", "IPv4Data": [{"Pool": "10.70.0.0/24", "Gateway": "10.71.0.1/24"}]},
    ),
    (
        "NetworkDriver.CreateNetwork",
        {
            "NetworkID": "n1",
            "IPv4Data": [{"Pool": "10.70.0.0/24"}],
            "IPv6Data": [{"Pool": "fd00::/112"}],  # the low 32 bits carry the IPv4 address
        },
    ),
    (
        "NetworkDriver.CreateEndpoint",
        {"NetworkID": "nope", "EndpointID": "e1", "Interface": {"Address": "10.70.0.5/24"}},
    ),
    (
        "NetworkDriver.CreateEndpoint",
        {"NetworkID": "n1", "EndpointID": "e1", "Interface": {"Address": "10.70.0.5"}},
    ),
    ("NetworkDriver.CreateEndpoint", {"NetworkID": "n1", "EndpointID": "e1", "Interface": "x"}),
    ("NetworkDriver.Join", {"NetworkID": "n1", "EndpointID": "nope", "SandboxKey": "/x"}),
    ("NetworkDriver.Join", {"NetworkID": "n1", "EndpointID": "e1"}),
    ("NetworkDriver.Leave", {"NetworkID": "n1"}),
    ("NetworkDriver.DeleteEndpoint", {}),
    ("NetworkDriver.DeleteNetwork", None),
    ("NetworkDriver.EndpointOperInfo", {"EndpointID": "e"}),
    ("NetworkDriver.DiscoverNew", {"DiscoveryType": "one"}),
    ("NetworkDriver.ProgramExternalConnectivity", {"NetworkID": "n1"}),
]
IPAM_CALLS: list[tuple[str, Any]] = [
    ("IpamDriver.RequestPool", b"\xff"),
    ("IpamDriver.RequestPool", {"Pool": "10.70.0.0/24"}),
    ("IpamDriver.RequestPool", {"AddressSpace": "vxplane-local"}),
    ("IpamDriver.RequestPool", {"AddressSpace": "a", "Pool": "10.70.0.0/33"}),
    (
        "IpamDriver.RequestPool",
        {"AddressSpace": "a", "Pool": "10.70.0.0/24", "SubPool": "10.70.0.0/25"},
    ),
    ("IpamDriver.RequestPool", {"AddressSpace": "a", "SubPool": "10.70.0.0/25"}),
    ("IpamDriver.RequestPool", {"AddressSpace": "a", "V6": True}),
    ("IpamDriver.RequestAddress", {"PoolID": "other:10.70.0.0/24"}),
    ("IpamDriver.RequestAddress", {"PoolID": "vxplane:10.70.0.0/24", "Address": "10.99.0.1"}),
    ("IpamDriver.RequestAddress", {"PoolID": "vxplane:10.70.0.0/24", "Address": "x"}),
    ("IpamDriver.RequestAddress", {"PoolID": "vxplane:10.70.0.0/24"}),
    ("IpamDriver.ReleaseAddress", {"PoolID": "vxplane:10.70.0.0/24"}),
    ("IpamDriver.ReleasePool", {"PoolID": 7}),
    ("IpamDriver.DiscoverDelete", {}),
]


SHOP, SHOP6 = ("vxd-shop", "10.62.0.0/24"), "fd00:64::/64"  # dual stack
SERVE = ["sh", "-c", "echo published page > /tmp/page.txt && exec httpd -f -p 80 -h /tmp"]


def _from_outside(stack: Stack, address: str, port: int) -> subprocess.CompletedProcess[str]:
    """``curl`` from the lab's outside namespace to ``address:port``."""
    argv = ["ip", "netns", "exec", stack.lab.status()["outside"], "curl", "-sS", "--max-time",
            "3", f"http://{address}:{port}/page.txt"]  # fmt: skip
    return subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)


def _applied(stack: Stack, timeout: float = 20.0) -> None:
    """Wait until every switch applied the controller's current revision."""
    rev = stack.api.get("/healthz").json()["revision"]
    wait_for(
        f"switches at revision {rev}",
        lambda: all(
            (h.get("switch") or {}).get("applied_revision", -1) >= rev
            for h in stack.api.get("/api/v1/hosts").json()
        ),
        timeout,
    )


def _pubs(stack: Stack) -> list[tuple[str, int, int, str, str | None]]:
    rows = stack.api.get(f"/api/v1/networks/{SHOP[0]}/publications").json()
    return [(p["endpoint"], p["host_port"], p["port"], p["proto"], p["host"]) for p in rows]


def test_docker_run_p_publishes_and_stop_closes(stack: Stack) -> None:
    """``docker run -p HOSTPORT:PORT`` on a dual-stack vxplane network an admin made
    external: the lab's outside namespace reaches the container at its host's egress
    address and at its IPv6 egress address; the same host port on the other host fails
    that start with the controller's message and nothing of it stays; ``docker stop``
    closes the port (both families), ``docker start`` opens it again."""
    for host in (H1, H2):
        stack.docker(host, "network", "create", "--ipv6", "-d", "vxplane", "--ipam-driver",
                     "vxplane", "--subnet", SHOP[1], "--subnet", SHOP6, SHOP[0])  # fmt: skip
    network(stack, SHOP[0])
    r = stack.api.patch(f"/api/v1/networks/{SHOP[0]}", json={"external": True})
    assert r.status_code == 200, r.text
    hosts = {h["name"]: h for h in stack.lab.status()["hosts"]}
    egress, egress6 = hosts[H1]["egress_ip"], hosts[H1]["egress_ip6"]
    assert egress6, "the lab's agent runs without --egress-ip6"
    try:
        stack.docker(H1, "run", "-d", "--name", "pw", "--network", SHOP[0], "-p", "8092:80",
                     IMAGE, *SERVE)  # fmt: skip
        assert _pubs(stack) == [("pw", 8092, 80, "tcp", H1)]
        (pub,) = stack.api.get(f"/api/v1/networks/{SHOP[0]}/publications").json()
        assert (pub["address"], pub["address6"]) == (egress, egress6)
        _applied(stack)
        for address in (egress, f"[{egress6}]"):
            got = wait_for(
                f"the page from the outside at {address}",
                lambda a=address: g if (g := _from_outside(stack, a, 8092)).returncode == 0
                else None,
            )  # fmt: skip
            assert got.stdout == "published page\n", got.stderr
            assert _from_outside(stack, address, 8093).returncode != 0  # nothing else is open
        cfg = json.loads(stack.docker(H1, "inspect", "pw"))[0]["NetworkSettings"]
        ep = cfg["Networks"][SHOP[0]]
        ids = {"NetworkID": ep["NetworkID"], "EndpointID": ep["EndpointID"]}
        assert stack.plugin(H1, "NetworkDriver.EndpointOperInfo", ids) == (200, {"Value": {
            "com.docker.network.portmap": [{"Proto": 6, "IP": ep["IPAddress"], "Port": 80,
                "HostIP": egress, "HostPort": 8092, "HostPortEnd": 8092}],
            "com.docker.network.endpoint.exposedports": [{"Proto": 6, "Port": 80}]}})  # fmt: skip
        # dockerd 28 reads that reply only as Go values of its own drivers (a type
        # assertion, docs/architecture.md): `docker port` shows nothing or the right thing
        assert cfg["Ports"] in ({}, {"80/tcp": [{"HostIp": egress, "HostPort": "8092"}]})

        # the host port is taken: the start fails with the 409's message, nothing half-made
        before = (stack.ports(H2), stack.links(H2))
        out = stack.docker(H2, "run", "-d", "--name", "pw2", "--network", SHOP[0], "-p",
                           "8092:80", IMAGE, "sleep", "3600", check=False)  # fmt: skip
        assert "host port 8092/tcp is already published for vxd-shop/pw" in out, out
        state = stack.docker(H2, "inspect", "-f", "{{.State.Running}}", "pw2")
        assert state == "false"
        assert (stack.ports(H2), stack.links(H2)) == before
        assert _pubs(stack) == [("pw", 8092, 80, "tcp", H1)]
        stack.docker(H2, "rm", "-f", "pw2")
        assert _pubs(stack) == [("pw", 8092, 80, "tcp", H1)]  # its cleanup spared pw's port

        stack.docker(H1, "stop", "-t", "1", "pw")
        assert _pubs(stack) == []
        _applied(stack)
        assert _from_outside(stack, egress, 8092).returncode != 0
        assert _from_outside(stack, f"[{egress6}]", 8092).returncode != 0

        stack.docker(H1, "start", "pw")
        assert _pubs(stack) == [("pw", 8092, 80, "tcp", H1)]
        _applied(stack)
        wait_for("the page again", lambda: _from_outside(stack, egress, 8092).returncode == 0)
        wait_for("the page again over IPv6",
                 lambda: _from_outside(stack, f"[{egress6}]", 8092).returncode == 0)  # fmt: skip

        for bad, why in (("80", "needs the host port"), ("40000:80", "32768 and up")):
            out = stack.docker(H1, "run", "-d", "--name", "pwbad", "--network", SHOP[0],
                               "-p", bad, IMAGE, "sleep", "3600", check=False)  # fmt: skip
            assert why in out, out
            stack.docker(H1, "rm", "-f", "pwbad")
    finally:
        for host in (H1, H2):
            stack.docker(host, "rm", "-f", "pw", "pw2", "pwbad", check=False)
            stack.docker(host, "network", "rm", SHOP[0], check=False)
    assert stack.api.get(f"/api/v1/networks/{SHOP[0]}").status_code == 404  # and its ports


def test_dual_stack_network_gives_containers_both_families(stack: Stack) -> None:
    """``docker network create --ipv6 --subnet V4 --subnet V6``: a dual-stack vxplane network
    (adopted by the second host), containers with their derived IPv6 address and gateway,
    the MAC's link-local address, ping6 across the hosts, and a name keeping its IPv6
    address on the other host."""
    for host in (H1, H2):
        stack.docker(host, "network", "create", "--ipv6", "-d", "vxplane", "--ipam-driver",
                     "vxplane", "--subnet", TEAL[1], "--subnet", TEAL6, TEAL[0])  # fmt: skip
    net = network(stack, TEAL[0])
    assert (net["subnet6"], net["gateway6"]) == (TEAL6, "fd00:62::a3e:1")
    inspected = json.loads(stack.docker(H1, "network", "inspect", TEAL[0]))[0]
    subnets = sorted(c["Subnet"] for c in inspected["IPAM"]["Config"])
    assert inspected["EnableIPv6"] and subnets == sorted([TEAL[1], TEAL6])
    t1, t2 = stack.run(H1, "t1", TEAL[0]), stack.run(H2, "t2", TEAL[0])
    for host, name, got in ((H1, "t1", t1), (H2, "t2", t2)):
        ep = stack.endpoint(TEAL[0], name)
        assert ep is not None and ep["state"] == "ready"
        assert got["ip6"] == ep["ip6"] == derive_ip6(TEAL6, got["ip"])
        assert (got["prefixlen6"], got["gateway6"]) == (64, "fd00:62::a3e:1")
        # inside: the address, the link-local one of the derived MAC, the default route
        addrs = stack.docker(host, "exec", name, "ip", "-6", "addr", "show", "dev", "eth0")
        assert f"inet6 {got['ip6']}/64 scope global" in addrs, addrs
        assert f"inet6 {link_local(got['mac'])}/64 scope link" in addrs, addrs
        routes = stack.docker(host, "exec", name, "ip", "-6", "route")
        assert "default via fd00:62::a3e:1 dev eth0" in routes, routes
    ping6 = ["exec", "t1", "ping", "-6", "-c", "1", "-W", "3", t2["ip6"]]
    assert "1 packets received" in stack.docker(H1, *ping6)
    # the same name on the other host: the same IPv6 address
    stack.docker(H1, "rm", "-f", "t1")
    again = stack.run(H2, "t1", TEAL[0])
    assert (again["ip"], again["ip6"]) == (t1["ip"], t1["ip6"])
    stack.docker(H2, "rm", "-f", "t1", "t2")
    for host in (H1, H2):
        stack.docker(host, "network", "rm", TEAL[0])
    wait_for("teal removed", lambda: stack.api.get(f"/api/v1/networks/{TEAL[0]}").status_code
             == 404)  # fmt: skip


def test_malformed_plugin_calls_get_the_protocol_error_shape(stack: Stack) -> None:
    assert stack.plugin(H1, "Plugin.Activate", None) == (
        200, {"Implements": ["NetworkDriver", "IpamDriver"]}
    )  # fmt: skip
    assert stack.plugin(H1, "NetworkDriver.GetCapabilities", None) == (
        200, {"Scope": "local", "ConnectivityScope": "global"}
    )  # fmt: skip
    assert stack.plugin(H1, "IpamDriver.GetDefaultAddressSpaces", None)[1] == {
        "LocalDefaultAddressSpace": "vxplane-local",
        "GlobalDefaultAddressSpace": "vxplane-global",
    }
    before = (stack.ports(H1), stack.api.get("/api/v1/endpoints").json(),
              stack.api.get("/api/v1/networks").json())  # fmt: skip
    for method, body in NET_CALLS:
        status, reply = stack.plugin(H1, method, body)
        assert status == 200 and set(reply) == {"Err"} and reply["Err"], (method, body, reply)
        assert "Traceback" not in reply["Err"]
    for method, body in IPAM_CALLS:
        status, reply = stack.plugin(H1, method, body)
        assert status == 200 and set(reply) == {"Error"} and reply["Error"], (method, body, reply)
    status, reply = stack.plugin(H1, "NetworkDriver.Frobnicate", {})
    assert status == 404 and "Err" in reply
    after = (stack.ports(H1), stack.api.get("/api/v1/endpoints").json(),
             stack.api.get("/api/v1/networks").json())  # fmt: skip
    assert after == before


def test_rm_and_network_rm_leave_nothing_behind(stack: Stack) -> None:
    ips = [e["ip"] for e in stack.api.get("/api/v1/endpoints").json()]
    for host in (H1, H2):
        left = stack.docker(host, "ps", "-aq").split()
        if left:
            stack.docker(host, "rm", "-f", *left)
        for name, _ in (BLUE, RED):
            stack.docker(host, "network", "rm", name)
    for host in (H1, H2):
        # vxgw0 is the host's own gateway port (the agent's --egress-ip), no container's
        assert [p for p in stack.ports(host) if p != "vxgw0"] == ["vxlan0"]
        links = [link for link in stack.links(host) if link.startswith(("vx", "vp"))]
        assert [link for link in links if link != "vxgw0"] == []
    names = [n["name"] for n in stack.api.get("/api/v1/networks").json()]
    assert BLUE[0] not in names and RED[0] not in names
    assert stack.api.get("/api/v1/endpoints").json() == []
    for ip in ips:
        assert stack.flows_with(f"={ip},") == [] and stack.flows_with(f"={ip} ") == []
