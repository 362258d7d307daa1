"""Docker remote driver / IPAM protocol translation (``hostagent/docker_proto.py``) and the
driver's error mapping (``DockerDriver.dispatch``) for requests refused before any work."""

from __future__ import annotations

import json
from ipaddress import IPv4Address, IPv4Network
from types import SimpleNamespace
from typing import Any

import pytest

from hostagent.runtimes.docker import proto
from hostagent.runtimes.docker.driver import DockerDriver
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
    assert proto.create_network(
        {"NetworkID": "n1", "IPv4Data": [{"Pool": "10.1.0.0/24"}]}
    ).gateway == IPv4Address("10.1.0.1")


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
        {"NetworkID": "n", "EndpointID": "e", "Interface": {"AddressIPv6": "fd00::5/64"}},
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
    assert proto.pool_reply(pool) == {
        "PoolID": "vxplane:10.1.0.0/24",
        "Pool": "10.1.0.0/24",
        "Data": {},
    }
    assert proto.parse_pool_id(proto.pool_id(pool)) == pool
    gw = proto.request_address(
        {"PoolID": "vxplane:10.1.0.0/24", "Address": "10.1.0.1",
         "Options": {"RequestAddressType": "com.docker.network.gateway"}}
    )  # fmt: skip
    assert gw.gateway and gw.address == IPv4Address("10.1.0.1")
    ep = proto.request_address({"PoolID": "vxplane:10.1.0.0/24"})
    assert not ep.gateway and ep.address is None
    assert proto.address_reply("10.1.0.7", pool) == {"Address": "10.1.0.7/24", "Data": {}}
    assert proto.release({"PoolID": "vxplane:10.1.0.0/24", "Address": "10.1.0.7"}, True)[1] == (
        "10.1.0.7"
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
    assert d.dispatch("/NetworkDriver.EndpointOperInfo", json.dumps(
        {"NetworkID": "n", "EndpointID": "e"}).encode())[1] == {"Value": {}}  # fmt: skip
    assert d.dispatch("/NetworkDriver.AllocateNetwork", b'{"NetworkID": "n"}')[1] == {"Options": {}}
    assert d.dispatch("/IpamDriver.RequestPool", b'{"AddressSpace": "a", "Pool": "10.1.0.0/24"}')[
        1
    ] == {"PoolID": "vxplane:10.1.0.0/24", "Pool": "10.1.0.0/24", "Data": {}}
    status, reply = d.dispatch("/NetworkDriver.Frobnicate", b"{}")
    assert status == 404 and "Err" in reply
