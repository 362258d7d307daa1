"""Docker remote driver / IPAM protocol translation (``runtimes/docker/proto.py``), the pool
table (``pools.py``), and the driver's error mapping (``DockerDriver.dispatch``) for
requests refused before any work and its pool -> network resolution."""

from __future__ import annotations

import json
import threading
import time
from ipaddress import IPv4Address, IPv4Network
from types import SimpleNamespace
from typing import Any

import pytest

from hostagent.runtimes.docker import proto
from hostagent.runtimes.docker.driver import DockerDriver, pools_path
from hostagent.runtimes.docker.pools import PoolTable
from hostagent.runtimes.docker.proto import ProtocolError


def test_paths_and_error_shapes() -> None:
    assert proto.split_path("/NetworkDriver.Join") == ("NetworkDriver", "Join")
    assert proto.split_path("/IpamDriver.RequestPool") == ("IpamDriver", "RequestPool")
    assert proto.split_path("/Plugin.Activate") == ("Plugin", "Activate")
    for bad in ("/NetworkDriver.Nope", "/Foo.Join", "/", "/IpamDriver.Join"):
        with pytest.raises(ProtocolError):
            proto.split_path(bad)
    assert proto.error_reply("NetworkDriver", "x") == {"Err": "x"}
    assert proto.error_reply("IpamDriver", "x") == {"Error": "x"}
    assert proto.activate() == {"Implements": ["NetworkDriver", "IpamDriver"]}
    assert proto.capabilities("local") == {"Scope": "local", "ConnectivityScope": "global"}


def test_create_network() -> None:
    req = proto.create_network(
        {
            "NetworkID": "n1",
            "IPv4Data": [{"AddressSpace": "s", "Pool": "10.1.0.0/24", "Gateway": "10.1.0.254/24"}],
            "IPv6Data": [],
            "Options": {"com.docker.network.generic": {}},
        }
    )
    assert (req.network_id, req.subnet, req.gateway) == (
        "n1", IPv4Network("10.1.0.0/24"), IPv4Address("10.1.0.254")
    )  # fmt: skip
    assert req.address_space == "s" and not req.our_pool
    plain = proto.create_network({"NetworkID": "n1", "IPv4Data": [{"Pool": "10.1.0.0/24"}]})
    assert plain.gateway == IPv4Address("10.1.0.1") and not plain.our_pool
    ours = proto.create_network(
        {"NetworkID": "n1", "IPv4Data": [{"AddressSpace": "vxplane-local", "Pool": "10.1.0.0/24"}]}
    )
    assert ours.our_pool


@pytest.mark.parametrize(
    "body",
    [
        None,
        [],
        {"IPv4Data": [{"Pool": "10.1.0.0/24"}]},
        {"NetworkID": "n", "IPv4Data": [{"Pool": "10.1.0.0/24"}, {"Pool": "10.2.0.0/24"}]},
        {"NetworkID": "n", "IPv4Data": [{"Pool": "10.1.0.1/24"}]},
        {"NetworkID": "n", "IPv4Data": [{"Pool": "10.1.0.0/31"}]},
        {"NetworkID": "n", "IPv4Data": [{"Pool": "fd00::/64"}]},
        {"NetworkID": "n", "IPv4Data": [{"Pool": "10.1.0.0/24", "Gateway": "10.9.0.1/24"}]},
        {"NetworkID": "n", "IPv4Data": [{"Pool": "10.1.0.0/24", "Gateway": "10.1.0.1"}]},
        {"NetworkID": "n", "IPv4Data": [{"Pool": "10.1.0.0/24"}], "IPv6Data": [{"Pool": "x"}]},
        {
            "NetworkID": "n",
            "IPv4Data": [{"Pool": "10.1.0.0/24"}],
            "IPv6Data": [{"Pool": "fd00::/112"}],
        },
        {
            "NetworkID": "n",
            "IPv4Data": [{"Pool": "10.1.0.0/24"}],
            "IPv6Data": [{"Pool": "fd00::/64"}, {"Pool": "fd01::/64"}],
        },
        {
            "NetworkID": "n",
            "IPv4Data": [{"Pool": "10.1.0.0/24"}],
            "IPv6Data": [{"Pool": "fd00::/64", "Gateway": "fd01::1/64"}],
        },
        {"NetworkID": "n", "IPv4Data": [{"Pool": "10.1.0.0/24"}], "Options": []},
        {"NetworkID": 3, "IPv4Data": [{"Pool": "10.1.0.0/24"}]},
    ],
)
def test_create_network_rejects(body: Any) -> None:
    with pytest.raises(ProtocolError):
        proto.create_network(body)


def test_endpoint_requests() -> None:
    req = proto.create_endpoint(
        {"NetworkID": "n", "EndpointID": "e", "Interface": {"Address": "10.1.0.5/24"}}
    )
    assert str(req.address) == "10.1.0.5/24" and req.mac == ""
    assert proto.create_endpoint({"NetworkID": "n", "EndpointID": "e"}).address is None
    for bad in (
        {"NetworkID": "n"},
        {"NetworkID": "n", "EndpointID": "e", "Interface": {"Address": "10.1.0.5"}},
        {"NetworkID": "n", "EndpointID": "e", "Interface": {"AddressIPv6": "10.1.0.6/24"}},
        {"NetworkID": "n", "EndpointID": "e", "Interface": {"AddressIPv6": "fd00::5"}},
        {"NetworkID": "n", "EndpointID": "e", "Interface": []},
    ):
        with pytest.raises(ProtocolError):
            proto.create_endpoint(bad)
    assert proto.join({"NetworkID": "n", "EndpointID": "e", "SandboxKey": "/k"}).sandbox_key == "/k"
    with pytest.raises(ProtocolError):
        proto.join({"NetworkID": "n", "EndpointID": "e"})
    assert proto.create_endpoint_reply("", "0a:58:0a:01:00:05") == {
        "Interface": {"MacAddress": "0a:58:0a:01:00:05"}
    }
    assert proto.create_endpoint_reply("0a:58:0a:01:00:05", "0a:58:0a:01:00:05") == {}
    assert proto.join_reply("vpabc", "10.1.0.1") == {
        "InterfaceName": {"SrcName": "vpabc", "DstPrefix": "eth"},
        "DisableGatewayService": False,
        "Gateway": "10.1.0.1",
    }


def test_ipam_requests() -> None:
    pool = proto.request_pool({"AddressSpace": "vxplane-local", "Pool": "10.1.0.0/24"}).pool
    assert proto.pool_reply("vxplane:10.1.0.0/24:ab12", pool) == {
        "PoolID": "vxplane:10.1.0.0/24:ab12",
        "Pool": "10.1.0.0/24",
        "Data": {},
    }
    assert proto.pool_id(pool, "ab12") == "vxplane:10.1.0.0/24:ab12"
    assert proto.parse_pool_id(proto.pool_id(pool, "ab12")) == proto.PoolRef(
        "vxplane:10.1.0.0/24:ab12", pool, "ab12"
    )
    # the old form, one id per subnet, is still read
    assert proto.parse_pool_id("vxplane:10.1.0.0/24") == proto.PoolRef(
        "vxplane:10.1.0.0/24", pool, ""
    )
    tagged = "vxplane:10.1.0.0/24:"
    for bad in (tagged, tagged + "AB", tagged + "a:b", tagged + "a" * 33,
                "vxplane:10.1.0.1/24:ab", "vxplane:"):  # fmt: skip
        with pytest.raises(ProtocolError):
            proto.parse_pool_id(bad)
    with pytest.raises(ValueError):
        proto.pool_id(pool, "A B")
    gw = proto.request_address(
        {"PoolID": "vxplane:10.1.0.0/24:ab12", "Address": "10.1.0.1",
         "Options": {"RequestAddressType": "com.docker.network.gateway"}}
    )  # fmt: skip
    assert gw.gateway and gw.address == IPv4Address("10.1.0.1")
    assert gw.ref.pool_id == "vxplane:10.1.0.0/24:ab12" and gw.pool == pool
    ep = proto.request_address({"PoolID": "vxplane:10.1.0.0/24"})
    assert not ep.gateway and ep.address is None
    assert proto.address_reply("10.1.0.7", pool) == {"Address": "10.1.0.7/24", "Data": {}}
    assert proto.release({"PoolID": "vxplane:10.1.0.0/24:ab12", "Address": "10.1.0.7"}, True) == (
        proto.PoolRef("vxplane:10.1.0.0/24:ab12", pool, "ab12"),
        "10.1.0.7",
    )
    for bad in (
        {"Pool": "10.1.0.0/24"},
        {"AddressSpace": "a"},
        {"AddressSpace": "a", "Pool": "10.1.0.0/24", "SubPool": "10.1.0.0/25"},
        {"AddressSpace": "a", "SubPool": "10.1.0.0/25"},
        {"AddressSpace": "a", "V6": True},
        {"AddressSpace": "a", "Pool": "10.1.0.0/24", "V6": "no"},
    ):
        with pytest.raises(ProtocolError):
            proto.request_pool(bad)
    for bad in (
        {"PoolID": "default/10.1.0.0/24"},
        {"PoolID": "vxplane:10.1.0.0/24", "Address": "10.2.0.1"},
        {"PoolID": "vxplane:10.1.0.0/24", "Address": "nonsense"},
        {"PoolID": "vxplane:10.1.0.0/24", "Options": "x"},
        {},
    ):
        with pytest.raises(ProtocolError):
            proto.request_address(bad)


def _container(name: str, nets: dict[str, Any], state: str = "created") -> dict[str, Any]:
    return {"Names": [f"/{name}"], "State": state, "NetworkSettings": {"Networks": nets}}


def test_pick_container() -> None:
    starting = _container("web", {"blue": {"EndpointID": "", "IPAMConfig": None}})
    running = _container("db", {"blue": {"EndpointID": "abc"}}, "running")
    fixed = _container(
        "fixed", {"blue": {"EndpointID": "", "IPAMConfig": {"IPv4Address": "10.1.0.9"}}}
    )
    other = _container("red1", {"red": {"EndpointID": ""}})
    assert proto.pick_container([starting, running, other], "blue", None) == "web"
    assert proto.pick_container([starting, fixed], "blue", IPv4Address("10.1.0.9")) == "fixed"
    assert proto.pick_container([starting, fixed], "blue", None) == "web"
    assert proto.pick_container([running], "blue", None) is None
    twin = _container("web2", {"blue": {"EndpointID": ""}})
    assert proto.pick_container([starting, twin], "blue", None) is None  # ambiguous
    assert proto.pick_container([], "blue", None) is None


def test_pick_starting_carries_the_labels() -> None:
    web = _container("web", {"blue": {"EndpointID": ""}})
    web["Labels"] = {"app": "web", "org.opencontainers.image.source": "https://x.example/y"}
    got = proto.pick_starting([web], "blue", None)
    assert got is not None and got.name == "web" and got.labels == web["Labels"]
    bare = _container("bare", {"blue": {"EndpointID": ""}})  # no Labels key at all
    assert proto.pick_starting([bare], "blue", None) == proto.Starting("bare", {})


def test_endpoint_labels_keep_the_valid_ones() -> None:
    kept, skipped = proto.endpoint_labels(
        "web",
        {
            "app": "web",
            "com.docker.compose.service": "web",
            "org.opencontainers.image.source": "https://x.example/y",  # a URL: not a value
            "Maintainer Name": "someone",  # a space: not a key
            "tier": "",
        },
    )
    assert kept == {"app": "web", "com.docker.compose.service": "web", "tier": ""}
    assert skipped == ["Maintainer Name", "org.opencontainers.image.source"]
    with pytest.raises(ProtocolError, match="65 labels: an endpoint takes at most 64"):
        proto.endpoint_labels("big", {f"k{i}": "v" for i in range(65)})


def test_pick_network() -> None:
    web = _container("web", {"blue": {"EndpointID": ""}})
    red1 = _container("red1", {"red": {"EndpointID": "abc"}}, "running")
    fixed = _container(
        "fixed", {"red": {"EndpointID": "", "IPAMConfig": {"IPv4Address": "10.1.0.9"}}}
    )
    assert proto.pick_network([web, red1], ["blue", "red"], None) == "blue"
    assert proto.pick_network([web, fixed], ["blue", "red"], IPv4Address("10.1.0.9")) == "red"
    assert proto.pick_network([web, fixed], ["blue", "red"], None) == "blue"
    red2 = _container("red2", {"red": {"EndpointID": ""}})
    assert proto.pick_network([web, red2], ["blue", "red"], None) is None  # ambiguous
    assert proto.pick_network([red1], ["blue", "red"], None) is None


NET = IPv4Network("10.30.0.0/24")


def test_pool_table_pairs_each_pool_with_its_network(tmp_path: Any) -> None:
    path = str(tmp_path / "vxplane-pools.json")
    table = PoolTable(path)
    blue = table.request(NET)
    assert table.awaiting(blue) and table.network_of(blue) is None
    assert table.created(IPv4Network("10.31.0.0/24"), "other") is None  # not our pool
    assert table.created(NET, "n-blue") == blue
    assert table.created(NET, "n-blue") == blue  # again: the same pair
    red = table.request(NET)  # nothing awaits: at once
    assert red != blue and red.startswith("vxplane:10.30.0.0/24:")
    assert table.created(NET, "n-red") == red
    assert (table.network_of(blue), table.network_of(red)) == ("n-blue", "n-red")
    assert table.claimed() == {"n-blue", "n-red"} and table.claimed(red) == {"n-blue"}
    # the pairs survive a restart of the agent (a new table on the same file)
    again = PoolTable(path)
    assert (again.network_of(blue), again.network_of(red)) == ("n-blue", "n-red")
    assert not again.awaiting(blue)
    again.released(blue)
    assert PoolTable(path).network_of(blue) is None and PoolTable(path).network_of(red) == "n-red"
    again.learn("vxplane:10.30.0.0/24:abc", "n-x")
    assert PoolTable(path).network_of("vxplane:10.30.0.0/24:abc") == "n-x"
    # a network removed while the agent was down: pruned, unless paired just now
    assert again.prune({"n-red"}) == []
    assert again.prune({"n-red"}, older_than=-1) == ["vxplane:10.30.0.0/24:abc"]
    assert PoolTable(path).claimed() == {"n-red"}


def test_pool_table_serializes_creation_per_subnet() -> None:
    """A second RequestPool of a subnet waits for the first one's CreateNetwork, so that
    CreateNetwork pairs exactly, whatever the order of calls across two creations."""
    table = PoolTable(None, settle=5.0)
    first = table.request(NET)
    other_subnet = table.request(IPv4Network("10.31.0.0/24"))  # not held up
    got: list[str] = []
    waiter = threading.Thread(target=lambda: got.append(table.request(NET)))
    waiter.start()
    time.sleep(0.2)
    assert not got  # waits for the first network's CreateNetwork
    assert table.created(NET, "n1") == first
    waiter.join(2)
    assert got and table.created(NET, "n2") == got[0]
    assert table.network_of(other_subnet) is None
    # a pool whose CreateNetwork never comes (another driver's network) holds up no one
    # longer than ``settle``, and its late CreateNetwork pairs nothing wrongly
    short = PoolTable(None, settle=0.3)
    stray = short.request(NET)
    t0 = time.monotonic()
    later = short.request(NET)
    assert 0.2 < time.monotonic() - t0 < 2
    assert short.created(NET, "n3") == later and short.network_of(stray) is None
    # ReleasePool (a failed creation) lets the next one through at once
    quick = PoolTable(None, settle=30)
    failed = quick.request(NET)
    threading.Timer(0.1, quick.released, args=(failed,)).start()
    t0 = time.monotonic()
    quick.request(NET)
    assert time.monotonic() - t0 < 5


def test_pool_table_tolerates_a_bad_file(tmp_path: Any) -> None:
    path = tmp_path / "p.json"
    path.write_text("{not json")
    assert PoolTable(str(path)).claimed() == set()
    path.write_text(
        json.dumps({"pools": {"bogus": {"network": "n"}, "vxplane:10.30.0.0/24:ab": {}}})
    )
    assert PoolTable(str(path)).claimed() == set()
    assert (
        pools_path("/run/docker/plugins/vxplane.sock") == "/run/docker/plugins/vxplane-pools.json"
    )


def _net(nid: str, name: str, subnet: str = "10.30.0.0/24") -> dict[str, Any]:
    config = [{"Subnet": subnet, "Gateway": "10.30.0.1"}]
    return {"Id": nid, "Name": name, "Driver": "vxplane",
            "IPAM": {"Driver": "vxplane", "Config": config}}  # fmt: skip


NETS = [_net("n-blue", "blue"), _net("n-red", "red"), _net("n-green", "green", "10.40.0.0/24")]


def _known(d: DockerDriver) -> None:
    """The driver knows the networks, made sure of at the controller: no controller call."""
    for n in NETS:
        subnet = IPv4Network(n["IPAM"]["Config"][0]["Subnet"])
        d.networks[n["Id"]] = {
            "name": n["Name"], "subnet": subnet, "gateway": subnet[1], "ready": True,
        }  # fmt: skip


def _resolving_driver(containers: list[dict[str, Any]]) -> DockerDriver:
    engine = SimpleNamespace(networks=lambda driver: NETS, containers=lambda all_=True: containers)
    d = DockerDriver(SimpleNamespace(host="h1"), engine=engine)  # type: ignore[arg-type]
    _known(d)
    return d


def test_driver_finds_the_network_of_a_pool() -> None:
    d = _resolving_driver([])
    blue_pool = d.dispatch(
        "/IpamDriver.RequestPool", b'{"AddressSpace": "vxplane-local", "Pool": "10.30.0.0/24"}'
    )[1]["PoolID"]
    # the gateway of a network being created needs no network
    gw = {"PoolID": blue_pool, "Options": {"RequestAddressType": "com.docker.network.gateway"}}
    assert d.dispatch("/IpamDriver.RequestAddress", json.dumps(gw).encode())[1] == {
        "Address": "10.30.0.1/24", "Data": {}
    }  # fmt: skip
    # a container's address before CreateNetwork (--aux-address): refused
    early = d.dispatch("/IpamDriver.RequestAddress", json.dumps({"PoolID": blue_pool}).encode())
    assert "no network yet" in early[1]["Error"]
    create = {
        "NetworkID": "n-blue",
        "IPv4Data": [{"AddressSpace": "vxplane-local", "Pool": "10.30.0.0/24"}],
    }
    assert d.dispatch("/NetworkDriver.CreateNetwork", json.dumps(create).encode())[1] == {}
    _known(d)  # (the network's name is learned from the engine on another thread)
    red_pool = d.pools.request(IPv4Network("10.30.0.0/24"))
    d.pools.created(IPv4Network("10.30.0.0/24"), "n-red")
    assert d._network_of_pool(proto.parse_pool_id(blue_pool))[0] == "n-blue"
    assert d._network_of_pool(proto.parse_pool_id(red_pool))[0] == "n-red"
    # the table lost (a reboot emptied /run): one unclaimed network of the subnet left
    d.pools.released(red_pool)
    assert d._network_of_pool(proto.parse_pool_id(red_pool))[0] == "n-red"
    assert d.pools.network_of(red_pool) == "n-red"  # learned
    # an old-style id: the one network of its subnet, else refused
    assert d._network_of_pool(proto.parse_pool_id("vxplane:10.40.0.0/24"))[0] == "n-green"
    with pytest.raises(ProtocolError, match="2 vxplane networks"):
        d._network_of_pool(proto.parse_pool_id("vxplane:10.30.0.0/24"))


def test_driver_without_its_table_asks_which_network_a_container_joins() -> None:
    starting = _container(
        "web", {"red": {"EndpointID": "", "IPAMConfig": {"IPv4Address": "10.30.0.9"}}}
    )
    d = _resolving_driver([starting, _container("db", {"blue": {"EndpointID": "x"}}, "running")])
    ref = proto.parse_pool_id("vxplane:10.30.0.0/24:ab12")
    assert d._network_of_pool(ref, IPv4Address("10.30.0.9"))[0] == "n-red"
    assert d.pools.network_of(ref.pool_id) == "n-red"
    # two containers starting, one on each: refused rather than guessed
    w1, w2 = (
        _container(n, {net: {"EndpointID": ""}}) for n, net in (("w1", "red"), ("w2", "blue"))
    )
    both = _resolving_driver([w1, w2])
    with pytest.raises(ProtocolError, match="2 vxplane networks"):
        both._network_of_pool(proto.parse_pool_id("vxplane:10.30.0.0/24:cd34"))
    assert both.pools.network_of("vxplane:10.30.0.0/24:cd34") is None


def _driver() -> DockerDriver:
    agent = SimpleNamespace(host="h1")
    return DockerDriver(agent, engine=SimpleNamespace())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "raw", "key"),
    [
        ("/NetworkDriver.CreateNetwork", b"{oops", "Err"),
        ("/NetworkDriver.CreateNetwork", b'{"NetworkID": "n"}', "Err"),
        ("/NetworkDriver.CreateEndpoint", b'{"NetworkID": "n"}', "Err"),
        ("/NetworkDriver.Join", b"[]", "Err"),
        ("/NetworkDriver.Leave", b"{}", "Err"),
        ("/NetworkDriver.DeleteEndpoint", b'{"EndpointID": 1}', "Err"),
        ("/NetworkDriver.DiscoverNew", b'{"DiscoveryType": true}', "Err"),
        ("/IpamDriver.RequestPool", b"\xff\xfe", "Error"),
        ("/IpamDriver.RequestPool", b'{"AddressSpace": "a"}', "Error"),
        ("/IpamDriver.RequestAddress", b'{"PoolID": "x"}', "Error"),
        ("/IpamDriver.ReleaseAddress", b'{"PoolID": "vxplane:10.1.0.0/24"}', "Error"),
        ("/IpamDriver.ReleasePool", b'{"PoolID": "vxplane:10.1.0.0/24:X"}', "Error"),
        ("/IpamDriver.ReleasePool", b"{}", "Error"),
    ],
)
def test_dispatch_refuses_with_the_protocol_shape(path: str, raw: bytes, key: str) -> None:
    status, reply = _driver().dispatch(path, raw)
    assert (
        status == 200
        and list(reply) == [key]
        and reply[key].startswith(("vxplane", path[1:].split(".")[1]))
    )


def test_dispatch_simple_replies() -> None:
    d = _driver()
    assert d.dispatch("/Plugin.Activate", b"") == (200, proto.activate())
    assert d.dispatch("/NetworkDriver.GetCapabilities", b"{}")[1]["Scope"] == "local"
    assert d.dispatch("/IpamDriver.GetCapabilities", b"")[1] == proto.ipam_capabilities()
    assert d.dispatch("/NetworkDriver.AllocateNetwork", b'{"NetworkID": "n"}')[1] == {"Options": {}}
    pool = d.dispatch("/IpamDriver.RequestPool", b'{"AddressSpace": "a", "Pool": "10.1.0.0/24"}')
    assert pool[1]["PoolID"].startswith("vxplane:10.1.0.0/24:") and pool[1]["Pool"] == "10.1.0.0/24"
    assert d.dispatch("/IpamDriver.ReleasePool", json.dumps(pool[1]).encode()) == (200, {})
    status, reply = d.dispatch("/NetworkDriver.Frobnicate", b"{}")
    assert status == 404 and "Err" in reply


def test_endpoint_oper_info_in_the_bridge_drivers_shape() -> None:
    """``EndpointOperInfo``: libnetwork's ``netlabel.PortMap`` (``[]types.PortBinding``) and
    ``netlabel.ExposedPorts`` (``[]types.TransportPort``) keys, Proto as IANA numbers."""
    assert proto.oper_info([], "10.1.0.2", "198.18.0.9") == {"Value": {}}
    got = proto.oper_info([(8080, 80, "tcp"), (5353, 53, "udp")], "10.1.0.2", "198.18.0.9")
    assert got == {
        "Value": {
            "com.docker.network.portmap": [
                {"Proto": 6, "IP": "10.1.0.2", "Port": 80, "HostIP": "198.18.0.9",
                 "HostPort": 8080, "HostPortEnd": 8080},
                {"Proto": 17, "IP": "10.1.0.2", "Port": 53, "HostIP": "198.18.0.9",
                 "HostPort": 5353, "HostPortEnd": 5353},
            ],
            "com.docker.network.endpoint.exposedports": [
                {"Proto": 6, "Port": 80}, {"Proto": 17, "Port": 53}
            ],
        }
    }  # fmt: skip
    # the shape the engine sends in ProgramExternalConnectivity (no host address there)
    options = proto.oper_info([(8080, 80, "tcp"), (5353, 53, "udp")], "10.1.0.2", None)["Value"]
    body = {"NetworkID": "n", "EndpointID": "e", "Options": options}
    assert proto.external_connectivity(body).ports == [(8080, 80, "tcp"), (5353, 53, "udp")]


def test_port_bindings_of_program_external_connectivity() -> None:
    """libnetwork's ``[]types.PortBinding`` as the engine sends it (net.IP as text, "" when
    unset): -p 8080:80, -p 127.0.0.1... refused, -p 80 refused, ranges refused."""

    def body(*bindings: dict[str, Any]) -> dict[str, Any]:
        return {"NetworkID": "n", "EndpointID": "e", "Options": {proto.PORTMAP: list(bindings)}}

    web = {"Proto": 6, "IP": "", "Port": 80, "HostIP": "", "HostPort": 8080, "HostPortEnd": 8080}
    dns = {**web, "Proto": 17, "Port": 53, "HostPort": 5353, "HostPortEnd": 5353}
    req = proto.external_connectivity(body(web, dns))
    assert (req.network_id, req.endpoint_id) == ("n", "e")
    assert req.ports == [(8080, 80, "tcp"), (5353, 53, "udp")]
    assert proto.external_connectivity({"NetworkID": "n", "EndpointID": "e"}).ports == []
    assert proto.external_connectivity(body({**web, "HostIP": "0.0.0.0"})).ports == [
        (8080, 80, "tcp")
    ]
    for bad, why in (
        ({**web, "HostPort": 0, "HostPortEnd": 0}, "needs the host port"),
        ({**web, "HostPortEnd": 8090}, "ranges"),
        ({**web, "HostIP": "127.0.0.1"}, "leave the address out"),
        ({**web, "Proto": 132}, "tcp and udp"),
        ({**web, "Port": "80"}, "port number"),
        ("8080:80", "must be an object"),
    ):
        with pytest.raises(ProtocolError, match=why):
            proto.external_connectivity(body(bad))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="must be a list"):
        proto.external_connectivity({"NetworkID": "n", "EndpointID": "e",
                                     "Options": {proto.PORTMAP: {}}})  # fmt: skip


def test_published_port_lists() -> None:
    from hostagent.publish import PortMap, check, decode, encode

    maps = [PortMap(8080, 80), PortMap(53, 53, "udp"), PortMap(8080, 80)]
    assert check(maps) == [PortMap(53, 53, "udp"), PortMap(8080, 80)]
    assert decode(encode(check(maps))) == check(maps)
    assert encode([]) == "" and decode("") == [] and decode(None) == []
    assert decode("8080:80/tcp,junk,1:2/sctp") == [PortMap(8080, 80)]
    for bad, why in (
        ([PortMap(8080, 80), PortMap(8080, 81)], "twice"),
        ([PortMap(40000, 80)], "32768"),
        ([PortMap(8080, 0)], "container port"),
        ([PortMap(8080, 80, "sctp")], "tcp and udp"),
    ):
        with pytest.raises(ValueError, match=why):
            check(bad)
