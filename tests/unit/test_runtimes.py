"""The runtimes on top of the agent, through the fakes of ``agentfakes.py``: the CNI verbs
(``hostagent/runtimes/cni_service.py``) and the Docker network and IPAM drivers
(``hostagent/runtimes/docker/driver.py``, called as Docker calls them)."""

from __future__ import annotations

import json
import time
from ipaddress import IPv4Interface
from pathlib import Path
from typing import Any

import pytest

from hostagent import cni as cni_proto
from hostagent.agent import Agent
from hostagent.errors import InvalidRequest, NotFound
from hostagent.plug import EXT_IP, device_names
from hostagent.runtimes.cni_service import (
    CNI_CONFIG,
    CNI_CONTAINER,
    CNI_IFNAME,
    CNI_NETNS,
    CheckFailed,
    CniService,
    NotAvailable,
    cni_code,
)
from hostagent.runtimes.docker.driver import EXT_EP, EXT_SINCE, DockerDriver
from tests.unit.agentfakes import HOST, MTU, FakeHost

A_IF = device_names("blue", "a")[0]


def up(host: FakeHost) -> Agent:
    agent = host.agent()
    agent.setup_bridge()
    agent.register()
    return agent


# -- CNI ------------------------------------------------------------------------------------


class Cni:
    """A host with an agent and its CNI service; namespaces are files under ``tmp`` (CHECK
    looks for the namespace's path itself)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.host = FakeHost()
        self.agent = up(self.host)
        self.svc = CniService(self.agent)

    def netns(self, name: str) -> str:
        path = self.tmp / name
        path.touch()
        self.host.links.add_netns(str(path))
        return str(path)

    def add(self, name: str, cid: str, netns: str | None = None, **kw: Any) -> dict[str, Any]:
        kw.setdefault("ifname", "eth0")
        kw.setdefault("config", "cfg")
        return self.svc.add(netns or self.netns(cid), name, "blue", container_id=cid, **kw)  # type: ignore[arg-type]


@pytest.fixture
def cni(tmp_path: Path) -> Cni:
    return Cni(tmp_path)


def test_cni_add_into_the_hosts_own_namespace_is_refused_as_invalid_config(cni: Cni) -> None:
    netns = cni.netns("host")
    cni.host.links.host_netns.add(netns)  # e.g. CNI_NETNS=/proc/1/ns/net
    with pytest.raises(InvalidRequest, match="host's own") as refused:
        cni.add("a", "c1", netns)
    assert cni_code(refused.value) == cni_proto.INVALID_CONFIG
    assert cni.host.is_empty() and cni.host.ctl.view() == {}


def test_cni_add_labels_the_port_in_the_plug_itself(cni: Cni) -> None:
    netns = cni.netns("c1")
    out = cni.add("a", "c1", netns, labels={"pod": "web"})

    assert (out["mtu"], out["port_name"], out["endpoint"]["state"]) == (MTU, A_IF, "ready")
    owner = {CNI_CONTAINER: "c1", CNI_IFNAME: "eth0", CNI_CONFIG: "cfg", CNI_NETNS: netns}
    assert owner.items() <= cni.host.ovs.added[A_IF].items()  # in the port's own transaction
    port = cni.host.ovs.port(A_IF)
    assert port is not None and owner.items() <= port.external_ids.items()
    assert port.external_ids[EXT_IP] == "10.0.0.2"
    ep = cni.host.ctl.ep("blue", "a")
    assert ep is not None and ep.ready and ep.labels == {"pod": "web"}
    assert cni.host.links.names_in(netns) == {"eth0"}


@pytest.mark.parametrize("release", [False, True])
def test_cni_del_finds_the_attachment_by_container_id(cni: Cni, release: bool) -> None:
    cni.add("a", "c1")
    out = cni.svc.delete("renamed-since", "blue", "eth0", "c1", "cfg", release=release)

    assert (out["network"], out["name"], out["detached"], out["released"]) == (
        "blue", "a", True, release,
    )  # fmt: skip
    assert cni.host.is_empty()
    held = {} if release else {("blue", "a"): ("10.0.0.2", None, None, "reserved")}
    assert cni.host.ctl.view() == held
    again = cni.svc.delete("a", "blue", "eth0", "c1", "cfg", release=True)  # idempotent
    assert again["released"] is not release and cni.host.ctl.view() == {}


def test_a_stale_cni_del_leaves_the_newer_sandbox_alone(cni: Cni) -> None:
    old_ns, new_ns = cni.netns("old"), cni.netns("new")
    cni.add("a", "c-old", old_ns)
    cni.add("a", "c-new", new_ns)  # the pod's sandbox was replaced; the old DEL comes late

    out = cni.svc.delete("a", "blue", "eth0", "c-old", "cfg", release=True)

    assert out["detached"] is False and out["released"] is False
    port = cni.host.ovs.port(A_IF)
    assert port is not None and port.external_ids[CNI_CONTAINER] == "c-new"
    assert cni.host.links.names_in(new_ns) == {"eth0"} and cni.host.links.names_in(old_ns) == set()
    assert cni.host.ctl.view() == {("blue", "a"): ("10.0.0.2", HOST, port.ofport, "ready")}
    assert cni.svc.check(new_ns, "a", "blue", "eth0", "c-new", "cfg")["port_name"] == A_IF


def test_cni_check_passes_on_a_good_attachment(cni: Cni) -> None:
    netns = cni.netns("c1")
    cni.add("a", "c1", netns)
    out = cni.svc.check(netns, "a", "blue", "eth0", "c1", "cfg")
    assert out["endpoint"]["ip"] == "10.0.0.2" and out["mtu"] == MTU


def _wrong_mac(c: Cni, ns: str) -> None:
    c.host.links.dev("eth0", ns).mac = "02:00:00:00:00:01"


def _wrong_mtu(c: Cni, ns: str) -> None:
    c.host.links.dev("eth0", ns).mtu = 1500


def _wrong_address(c: Cni, ns: str) -> None:
    c.host.links.dev("eth0", ns).addresses = [IPv4Interface("10.0.0.99/24")]


def _no_interface(c: Cni, ns: str) -> None:
    c.host.links.delete("eth0", ns)


def _unbound(c: Cni, ns: str) -> None:
    c.host.ctl.unbind("blue", "a")


def _pending(c: Cni, ns: str) -> None:
    c.host.ctl.confirms = 0
    c.host.ctl.bind("blue", "a", HOST, 40, move=True)


@pytest.mark.parametrize(
    "spoil", [_wrong_mac, _wrong_mtu, _wrong_address, _no_interface, _unbound, _pending]
)
def test_cni_check_detects_a_spoiled_attachment(cni: Cni, spoil: Any) -> None:
    netns = cni.netns("c1")
    cni.add("a", "c1", netns)
    spoil(cni, netns)
    with pytest.raises(CheckFailed):
        cni.svc.check(netns, "a", "blue", "eth0", "c1", "cfg")


def test_cni_check_of_someone_elses_or_a_missing_attachment(cni: Cni) -> None:
    netns = cni.netns("c1")
    cni.add("a", "c1", netns)
    with pytest.raises(CheckFailed):
        cni.svc.check(netns, "a", "blue", "eth0", "c2", "cfg")
    with pytest.raises(CheckFailed):
        cni.svc.check(netns, "b", "blue", "eth0", "c1", "cfg")
    with pytest.raises(NotFound):
        cni.svc.check(str(cni.tmp / "nope"), "a", "blue", "eth0", "c1", "cfg")


def test_cni_gc_removes_only_invalid_attachments_of_its_config(cni: Cni) -> None:
    cni.add("a", "c1")
    cni.add("b", "c2")
    cni.add("c", "c3", config="other")
    cni.add("d", "c4", ifname="net1")

    out = cni.svc.gc("cfg", [("c1", "eth0"), ("c4", "")], release=True)

    assert out == {"removed": [{"container_id": "c2", "ifname": "eth0"}]}
    owners = {p.external_ids[CNI_CONTAINER] for p in cni.host.ovs.endpoint_ports().values()}
    assert owners == {"c1", "c3", "c4"}
    assert sorted(k[1] for k in cni.host.ctl.view()) == ["a", "c", "d"]  # b's address freed
    assert cni.svc.gc("cfg", [], release=False)["removed"] == [
        {"container_id": "c1", "ifname": "eth0"},
        {"container_id": "c4", "ifname": "net1"},
    ]


def test_cni_status(cni: Cni) -> None:
    assert cni.svc.status("blue")["registered"]
    with pytest.raises(NotAvailable):
        cni.svc.status("nope")
    cni.host.ctl.down = True
    with pytest.raises(NotAvailable):
        cni.svc.status("blue")
    cni.agent.registered = False
    with pytest.raises(NotAvailable):
        cni.svc.status("blue")


# -- Docker ---------------------------------------------------------------------------------

SUBNET = "10.30.0.0/24"


class FakeEngine:
    """The engine calls the driver makes (``EngineClient``): containers, networks."""

    def __init__(self) -> None:
        self.nets: dict[str, dict[str, Any]] = {}
        self.ctrs: dict[str, dict[str, Any]] = {}

    def containers(self, all_: bool = True) -> list[dict[str, Any]]:
        return [c for c in self.ctrs.values() if all_ or c["State"] == "running"]

    def network(self, network_id: str) -> dict[str, Any] | None:
        return self.nets.get(network_id)

    def networks(self, driver: str) -> list[dict[str, Any]]:
        return [n for n in self.nets.values() if n["Driver"] == driver]

    def add_network(self, nid: str, name: str, subnet: str, gateway: str) -> None:
        config = {"Subnet": subnet, "Gateway": gateway}
        ipam = {"Driver": "vxplane", "Config": [config]}
        self.nets[nid] = {"Id": nid, "Name": name, "Driver": "vxplane", "IPAM": ipam}

    def starting(self, name: str, network: str) -> None:
        """``docker run --network <network> --name <name>``: created, no endpoint yet."""
        nets = {network: {"EndpointID": "", "IPAMConfig": None}}
        self.ctrs[name] = {"Names": [f"/{name}"], "State": "created", "NetworkSettings": {
            "Networks": nets}}  # fmt: skip

    def running(self, name: str, network: str, endpoint_id: str) -> None:
        self.ctrs[name]["State"] = "running"
        self.ctrs[name]["NetworkSettings"]["Networks"][network]["EndpointID"] = endpoint_id

    def died(self, name: str) -> None:
        self.ctrs[name]["State"] = "exited"


class Docker:
    """A host with an agent and its Docker drivers, called as Docker calls them."""

    def __init__(self) -> None:
        self.host = FakeHost()
        self.agent = up(self.host)
        self.engine = FakeEngine()
        self.driver = DockerDriver(self.agent, self.engine)  # type: ignore[arg-type]

    def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        status, reply = self.driver.dispatch(f"/{method}", json.dumps(body).encode())
        assert status == 200 and not {"Err", "Error"} & set(reply), reply
        return reply

    def create_network(self, nid: str, name: str) -> None:
        """``docker network create -d vxplane --ipam-driver vxplane --subnet ... <name>``."""
        pool = self.call(
            "IpamDriver.RequestPool", {"AddressSpace": "vxplane-local", "Pool": SUBNET}
        )
        gateway = self.call("IpamDriver.RequestAddress", {
            "PoolID": pool["PoolID"], "Address": "",
            "Options": {"RequestAddressType": "com.docker.network.gateway"},
        })["Address"]  # fmt: skip
        self.call("NetworkDriver.CreateNetwork", {
            "NetworkID": nid, "Options": {}, "IPv6Data": [],
            "IPv4Data": [{"AddressSpace": "vxplane-local", "Pool": SUBNET, "Gateway": gateway}],
        })  # fmt: skip
        self.engine.add_network(nid, name, SUBNET, gateway.split("/")[0])
        self.pool = pool["PoolID"]
        deadline = time.monotonic() + 5  # the driver learns the name right after (a thread)
        while name not in self.host.ctl.networks and time.monotonic() < deadline:
            time.sleep(0.01)

    def start(self, name: str, nid: str, eid: str) -> dict[str, Any]:
        """RequestAddress, CreateEndpoint, Join of container ``name``; the Join's reply."""
        self.engine.starting(name, self.engine.nets[nid]["Name"])
        address = self.call("IpamDriver.RequestAddress", {"PoolID": self.pool, "Address": ""})
        self.created = self.call("NetworkDriver.CreateEndpoint", {
            "NetworkID": nid, "EndpointID": eid, "Options": {},
            "Interface": {"Address": address["Address"], "MacAddress": ""},
        })  # fmt: skip
        return self.call("NetworkDriver.Join", {
            "NetworkID": nid, "EndpointID": eid, "SandboxKey": f"/var/run/docker/netns/{eid}",
        })  # fmt: skip


@pytest.fixture
def docker() -> Docker:
    d = Docker()
    d.create_network("n1", "green")
    return d


def test_docker_network_create_makes_the_vxplane_network(docker: Docker) -> None:
    net = docker.host.ctl.networks["green"]
    assert (net.subnet, net.gateway) == (SUBNET, "10.30.0.1")


def test_docker_create_endpoint_and_join(docker: Docker) -> None:
    host_if, peer_if = device_names("green", "web")
    join = docker.start("web", "n1", "e1")

    assert docker.created == {"Interface": {"MacAddress": "0a:58:0a:1e:00:02"}}
    assert join["InterfaceName"] == {"SrcName": peer_if, "DstPrefix": "eth"}
    assert join["Gateway"] == "10.30.0.1"
    links = docker.host.links
    assert links.names_in() == {host_if, peer_if}  # Docker moves the peer itself
    assert not links.dev(peer_if).tx_offload
    port = docker.host.ovs.port(host_if)
    assert port is not None and port.external_ids[EXT_EP] == "e1"
    assert docker.host.ctl.view()[("green", "web")] == ("10.30.0.2", HOST, port.ofport, "ready")


def test_docker_leave_keeps_the_binding_until_delete_endpoint(docker: Docker) -> None:
    """Leave unbinds nothing (DeleteEndpoint, which libnetwork always sends next, unplugs and
    unbinds): a Join after it finds the endpoint still bound and ready."""
    docker.start("web", "n1", "e1")
    ofport = docker.host.ctl.view()[("green", "web")][2]
    docker.call("NetworkDriver.Leave", {"NetworkID": "n1", "EndpointID": "e1"})
    assert docker.host.ctl.view()[("green", "web")] == ("10.30.0.2", HOST, ofport, "ready")

    docker.call("NetworkDriver.Join", {"NetworkID": "n1", "EndpointID": "e1", "SandboxKey": "/x"})
    assert docker.host.ctl.view()[("green", "web")] == ("10.30.0.2", HOST, ofport, "ready")

    docker.call("NetworkDriver.DeleteEndpoint", {"NetworkID": "n1", "EndpointID": "e1"})
    assert docker.host.ctl.view()[("green", "web")] == ("10.30.0.2", None, None, "reserved")


def test_docker_delete_endpoint_unplugs_and_keeps_the_name(docker: Docker) -> None:
    docker.start("web", "n1", "e1")
    docker.call("NetworkDriver.Leave", {"NetworkID": "n1", "EndpointID": "e1"})
    docker.call("NetworkDriver.DeleteEndpoint", {"NetworkID": "n1", "EndpointID": "e1"})
    assert docker.host.is_empty()
    assert docker.host.ctl.view() == {("green", "web"): ("10.30.0.2", None, None, "reserved")}
    docker.call("NetworkDriver.DeleteEndpoint", {"NetworkID": "n1", "EndpointID": "e1"})
    # the same container starts again: the same address
    docker.start("web", "n1", "e2")
    assert docker.host.ctl.view()[("green", "web")][:2] == ("10.30.0.2", HOST)


def age_ports(docker: Docker, seconds: float) -> None:
    """Make the Docker ports look ``seconds`` older (their creation time label)."""
    for name, port in docker.host.ovs.endpoint_ports().items():
        since = float(port.external_ids[EXT_SINCE]) - seconds
        docker.host.ovs.set_port_ids(name, {EXT_SINCE: f"{since:.3f}"})


def test_docker_reconcile_unplugs_the_dead_and_spares_the_starting(docker: Docker) -> None:
    docker.start("web", "n1", "e1")
    docker.engine.running("web", "green", "e1")
    docker.start("db", "n1", "e2")  # created and joined, not running yet
    age_ports(docker, 60)  # not spared as young ports: only being in flight spares db
    assert docker.driver.reconcile() == []  # web is live, db is in flight
    docker.engine.died("web")  # kill -9: no Leave, no DeleteEndpoint

    assert docker.driver.reconcile() == ["green/web"]

    ports = docker.host.ovs.endpoint_ports().values()
    assert [p.external_ids[EXT_EP] for p in ports] == ["e2"]
    assert docker.host.ctl.view() == {
        ("green", "db"): ("10.30.0.3", HOST, 3, "ready"),
        ("green", "web"): ("10.30.0.2", None, None, "reserved"),
    }
    docker.driver.grace = 0  # db never started within the grace: cleaned up too
    assert docker.driver.reconcile() == ["green/db"] and docker.host.is_empty()
