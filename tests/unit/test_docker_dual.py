"""The Docker drivers on a dual-stack network (``docker network create --ipv6 --subnet V4
--subnet V6``), called in the order libnetwork calls them, on the in-memory host and
controller of ``agentfakes.py``; and the IPv6 parts of the protocol (``proto.py``)."""

from __future__ import annotations

import json
import threading
import time
from ipaddress import IPv4Network, IPv6Network
from typing import Any

import pytest

from hostagent.runtimes.docker import proto
from hostagent.runtimes.docker.pools import PoolTable
from hostagent.runtimes.docker.proto import ProtocolError
from tests.unit.test_runtimes import SUBNET, Docker

SUBNET6 = "fd00:30::/64"
GATEWAY_REQUEST = {"RequestAddressType": "com.docker.network.gateway"}


class Dual(Docker):
    """A host whose Docker networks are created with ``--ipv6``."""

    def reply(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """The driver's reply, errors included."""
        return self.driver.dispatch(f"/{method}", json.dumps(body).encode())[1]

    def create_dual(self, nid: str, name: str, gateway6: str = "") -> dict[str, Any]:
        """libnetwork's calls: the IPv4 pool and gateway, the IPv6 pool and gateway, then
        CreateNetwork; returns CreateNetwork's reply."""
        pool = self.call("IpamDriver.RequestPool", {"AddressSpace": "vxplane-local",
                                                     "Pool": SUBNET})  # fmt: skip
        gw_request = {"PoolID": pool["PoolID"], "Options": GATEWAY_REQUEST}
        gw = self.call("IpamDriver.RequestAddress", gw_request)["Address"]
        pool6 = self.call("IpamDriver.RequestPool", {"AddressSpace": "vxplane-local",
                                                      "Pool": SUBNET6, "V6": True})  # fmt: skip
        gw6 = self.call("IpamDriver.RequestAddress", {
            "PoolID": pool6["PoolID"], "Address": gateway6, "Options": GATEWAY_REQUEST,
        })["Address"]  # fmt: skip
        self.pool, self.pool6, self.gw6 = pool["PoolID"], pool6["PoolID"], gw6
        created = self.reply("NetworkDriver.CreateNetwork", {
            "NetworkID": nid, "Options": {},
            "IPv4Data": [{"AddressSpace": "vxplane-local", "Pool": SUBNET, "Gateway": gw}],
            "IPv6Data": [{"AddressSpace": "vxplane-local", "Pool": SUBNET6, "Gateway": gw6}],
        })  # fmt: skip
        if created:
            return created
        config = [{"Subnet": SUBNET, "Gateway": gw.split("/")[0]},
                  {"Subnet": SUBNET6, "Gateway": gw6.split("/")[0]}]  # fmt: skip
        self.engine.nets[nid] = {"Id": nid, "Name": name, "Driver": "vxplane", "EnableIPv6": True,
                                 "IPAM": {"Driver": "vxplane", "Config": config}}  # fmt: skip
        deadline = time.monotonic() + 5  # the driver learns the name right after (a thread)
        while name not in self.host.ctl.networks and time.monotonic() < deadline:
            time.sleep(0.01)
        return created

    def address(self, ip6: str = "") -> tuple[str, dict[str, Any]]:
        """An endpoint's two RequestAddress calls: (its IPv4 address, the IPv6 reply)."""
        v4 = self.call("IpamDriver.RequestAddress", {"PoolID": self.pool})["Address"]
        return v4, self.reply("IpamDriver.RequestAddress", {"PoolID": self.pool6, "Address": ip6})

    def start6(self, name: str, nid: str, eid: str) -> dict[str, Any]:
        """Container ``name`` on the dual-stack network: its Join's reply."""
        self.engine.starting(name, self.engine.nets[nid]["Name"])
        v4, v6 = self.address()
        self.created = self.call("NetworkDriver.CreateEndpoint", {
            "NetworkID": nid, "EndpointID": eid, "Options": {},
            "Interface": {"Address": v4, "AddressIPv6": v6["Address"], "MacAddress": ""},
        })  # fmt: skip
        return self.call("NetworkDriver.Join", {
            "NetworkID": nid, "EndpointID": eid, "SandboxKey": f"/var/run/docker/netns/{eid}",
        })  # fmt: skip


@pytest.fixture
def dual() -> Dual:
    d = Dual()
    assert d.create_dual("n6", "teal") == {}
    return d


def test_network_create_with_ipv6_makes_a_dual_stack_network(dual: Dual) -> None:
    net = dual.host.ctl.networks["teal"]
    assert (net.subnet, net.subnet6, net.gateway6) == (SUBNET, SUBNET6, "fd00:30::a1e:1")
    assert dual.gw6 == "fd00:30::a1e:1/64"  # the prefix plus the IPv4 gateway 10.30.0.1
    assert dual.driver.pools.network_of(dual.pool6) == "n6"


def test_a_container_gets_both_families(dual: Dual) -> None:
    join = dual.start6("web", "n6", "e1")

    ep = dual.host.ctl.ep("teal", "web")
    assert ep is not None and ep.ready and str(ep.ip6) == "fd00:30::a1e:2"
    assert join["Gateway"] == "10.30.0.1" and join["GatewayIPv6"] == "fd00:30::a1e:1"
    assert dual.created == {"Interface": {"MacAddress": "0a:58:0a:1e:00:02"}}  # no address back


def test_the_same_name_gets_the_same_ipv6_address_again(dual: Dual) -> None:
    dual.start6("web", "n6", "e1")
    dual.call("NetworkDriver.DeleteEndpoint", {"NetworkID": "n6", "EndpointID": "e1"})
    dual.engine.ctrs.pop("web")  # docker rm web
    dual.start6("db", "n6", "e2")  # takes the next free address meanwhile
    dual.engine.running("db", "teal", "e2")

    dual.engine.starting("web", "teal")
    v4, v6 = dual.address()

    assert (v4, v6["Address"]) == ("10.30.0.2/24", "fd00:30::a1e:2/64")


def test_concurrent_starts_pair_each_ipv6_request_with_its_own_ipv4_one(dual: Dual) -> None:
    """libnetwork asks for an endpoint's IPv4 then its IPv6 address, naming neither: a second
    endpoint's IPv4 request waits until the first one's IPv6 request came."""
    dual.engine.starting("a", "teal")
    a4 = dual.call("IpamDriver.RequestAddress", {"PoolID": dual.pool})["Address"]
    dual.engine.ctrs.pop("a")  # (the name of b's container is then unambiguous)
    dual.engine.starting("b", "teal")
    got: list[str] = []
    b = threading.Thread(target=lambda: got.append(
        dual.call("IpamDriver.RequestAddress", {"PoolID": dual.pool})["Address"]))  # fmt: skip
    b.start()
    time.sleep(0.3)
    assert not got  # held until a's IPv6 request

    a6 = dual.reply("IpamDriver.RequestAddress", {"PoolID": dual.pool6})["Address"]
    b.join(5)
    b6 = dual.reply("IpamDriver.RequestAddress", {"PoolID": dual.pool6})["Address"]

    assert (a4, a6) == ("10.30.0.2/24", "fd00:30::a1e:2/64")
    assert (got, b6) == (["10.30.0.3/24"], "fd00:30::a1e:3/64")


def test_a_rolled_back_ipv4_address_frees_the_ipv6_slot(dual: Dual) -> None:
    dual.driver.settle6 = 60.0
    v4 = dual.call("IpamDriver.RequestAddress", {"PoolID": dual.pool})["Address"]
    dual.call("IpamDriver.ReleaseAddress", {"PoolID": dual.pool, "Address": v4.split("/")[0]})
    t0 = time.monotonic()
    dual.call("IpamDriver.RequestAddress", {"PoolID": dual.pool})
    assert time.monotonic() - t0 < 30  # not held for settle6


def test_an_ipv6_slot_whose_request_never_comes_holds_no_one_for_long(dual: Dual) -> None:
    dual.driver.settle6 = 0.3
    dual.call("IpamDriver.RequestAddress", {"PoolID": dual.pool})
    assert dual.call("IpamDriver.RequestAddress", {"PoolID": dual.pool})["Address"]


def test_ipv6_refusals(dual: Dual) -> None:
    # an IPv6 request with no IPv4 one before it
    assert "without an IPv4 address" in dual.reply(
        "IpamDriver.RequestAddress", {"PoolID": dual.pool6})["Error"]  # fmt: skip
    # --ip6 that is not the derived address
    dual.engine.starting("web", "teal")
    _, v6 = dual.address("fd00:30::99")
    assert "fd00:30::a1e:2" in v6["Error"]
    # CreateEndpoint with another IPv6 address than the endpoint's
    v4, _ = dual.address()
    bad = dual.reply("NetworkDriver.CreateEndpoint", {
        "NetworkID": "n6", "EndpointID": "e9", "Options": {},
        "Interface": {"Address": v4, "AddressIPv6": "fd00:30::7/64", "MacAddress": ""},
    })  # fmt: skip
    assert "fd00:30::a1e:2" in bad["Err"]


def test_an_ipv6_gateway_off_the_rule_is_refused() -> None:
    d = Dual()
    reply = d.create_dual("n7", "plum", gateway6="fd00:30::1")
    assert "must be fd00:30::a1e:1" in reply["Err"]
    assert "plum" not in d.host.ctl.networks


def test_the_ipv6_gateway_needs_one_network_being_created() -> None:
    d = Dual()
    for subnet in ("10.30.0.0/24", "10.31.0.0/24"):  # two creations under way at once
        pool = d.call("IpamDriver.RequestPool", {"AddressSpace": "a", "Pool": subnet})
        d.call("IpamDriver.RequestAddress", {"PoolID": pool["PoolID"], "Options": GATEWAY_REQUEST})
    pool6 = d.call("IpamDriver.RequestPool", {"AddressSpace": "a", "Pool": SUBNET6, "V6": True})
    reply = d.reply(
        "IpamDriver.RequestAddress", {"PoolID": pool6["PoolID"], "Options": GATEWAY_REQUEST}
    )
    assert "give its --gateway" in reply["Error"]


def test_an_adopted_engine_network_keeps_its_ipv6_subnet(dual: Dual) -> None:
    """A restarted agent learns the network from the engine (both IPAM configs)."""
    dual.driver.networks.clear()
    info = dual.driver.network_info("n6")
    assert (str(info["subnet6"]), str(info["gateway6"])) == (SUBNET6, "fd00:30::a1e:1")


def test_proto_ipv6_pools_and_addresses() -> None:
    pool = proto.request_pool({"AddressSpace": "a", "Pool": "fd00:30::/64", "V6": True}).pool
    assert pool == IPv6Network("fd00:30::/64")
    pid = proto.pool_id(pool, "ab12")
    assert pid == "vxplane6:fd00:30::/64:ab12"
    ref = proto.parse_pool_id(pid)
    assert (ref.pool, ref.tag, ref.v6) == (pool, "ab12", True)
    assert not proto.parse_pool_id("vxplane:10.1.0.0/24:ab").v6
    for bad in ("vxplane6:fd00:30::/64", "vxplane6:fd00:30::/64:A B", "vxplane6:fd00::/120:ab"):
        with pytest.raises(ProtocolError):
            proto.parse_pool_id(bad)
    with pytest.raises(ProtocolError, match="at most /96"):
        proto.request_pool({"AddressSpace": "a", "Pool": "fd00:30::/112", "V6": True})
    with pytest.raises(ProtocolError, match="IPv6 subnet"):
        proto.request_pool({"AddressSpace": "a", "Pool": "10.1.0.0/24", "V6": True})
    with pytest.raises(ProtocolError, match="not an IPv6 address"):
        proto.request_address({"PoolID": pid, "Address": "10.1.0.5"})
    with pytest.raises(ProtocolError, match="outside"):
        proto.request_address({"PoolID": pid, "Address": "fd00:31::5"})
    net = proto.create_network({
        "NetworkID": "n", "IPv4Data": [{"Pool": "10.30.0.0/24"}],
        "IPv6Data": [{"Pool": "fd00:30::/64", "Gateway": "fd00:30::a1e:1/64"}],
    })  # fmt: skip
    assert (str(net.subnet6), str(net.gateway6)) == ("fd00:30::/64", "fd00:30::a1e:1")
    ep = proto.create_endpoint({"NetworkID": "n", "EndpointID": "e", "Interface": {
        "Address": "10.30.0.2/24", "AddressIPv6": "fd00:30::a1e:2/64"}})  # fmt: skip
    assert str(ep.address6) == "fd00:30::a1e:2/64"
    assert proto.join_reply("vp1", "10.30.0.1", "fd00:30::a1e:1")["GatewayIPv6"] == (
        "fd00:30::a1e:1"
    )


def test_pool_table_pairs_both_families_with_one_network() -> None:
    table = PoolTable(None)
    v4 = table.request(IPv4Network(SUBNET))
    v6 = table.request(IPv6Network(SUBNET6))
    assert table.created(IPv4Network(SUBNET), "n1") == v4
    assert table.created(IPv6Network(SUBNET6), "n1") == v6  # not the IPv4 pool again
    assert (table.network_of(v4), table.network_of(v6)) == ("n1", "n1")
    assert table.claimed(version=6) == {"n1"} and table.claimed(v6, version=6) == set()
