"""CNI protocol translation (``hostagent/cni.py``) against a fake agent: parsing, naming,
results of each spec version, error objects, and the agent-error -> CNI-code mapping."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostagent import cni
from hostagent.client import ControllerError
from hostagent.cni_service import CheckFailed, NotAvailable, cni_code
from hostagent.errors import (
    ControllerUnavailable,
    InvalidRequest,
    LinkError,
    NotFound,
    NotReady,
    OvsError,
)

EP = {
    "network": "blue",
    "name": "x",
    "ip": "10.0.0.5",
    "prefixlen": 24,
    "gateway": "10.0.0.1",
    "mac": "0a:58:0a:00:00:05",
}


class FakeAgent:
    def __init__(self, fail: cni.CniError | None = None) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.fail = fail

    def call(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((verb, body))
        if self.fail:
            raise self.fail
        return {"endpoint": EP, "mtu": 1450}


def env(command: str = "ADD", **kw: str) -> dict[str, str]:
    base = {
        "CNI_COMMAND": command,
        "CNI_CONTAINERID": "abc123",
        "CNI_NETNS": "/proc/self/ns/net",
        "CNI_IFNAME": "eth0",
        "CNI_PATH": "/opt/cni/bin",
    }
    base.update(kw)
    return {k: v for k, v in base.items() if v != ""}


def conf(**kw: Any) -> bytes:
    return json.dumps({"cniVersion": "1.1.0", "name": "blue", "type": "vxplane-cni", **kw}).encode()


def run(e: dict[str, str], stdin: bytes, agent: FakeAgent | None = None) -> tuple[int, Any]:
    agent = agent or FakeAgent()
    rc, out = cni.run(e, stdin, lambda path: agent)
    return rc, json.loads(out) if out else None


@pytest.mark.parametrize(
    ("cni_args", "ifname", "runtime", "want"),
    [
        ("", "eth0", {}, "abc123"),
        ("", "net1", {}, "abc123:net1"),
        ("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;IgnoreUnknown=1;X=1", "eth0", {}, "ns/p"),
        ("K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", "net2", {}, "ns/p:net2"),
        ("VXPLANE_ENDPOINT=db-0;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p", "eth0", {}, "db-0"),
        ("VXPLANE_ENDPOINT=db-0", "eth0", {"endpointName": "web"}, "web"),
    ],
)
def test_endpoint_name(cni_args: str, ifname: str, runtime: dict[str, Any], want: str) -> None:
    inv = cni.parse(env(CNI_ARGS=cni_args, CNI_IFNAME=ifname), conf(runtimeConfig=runtime))
    assert inv.endpoint == want


def test_requested_ip_precedence_and_forms() -> None:
    both = conf(runtimeConfig={"ips": ["10.0.0.9/24"]}, args={"cni": {"ips": ["10.0.0.8"]}})
    assert cni.parse(env(CNI_ARGS="IP=10.0.0.7"), both).ip == "10.0.0.9"
    assert cni.parse(env(), conf(args={"cni": {"ips": ["10.0.0.8"]}})).ip == "10.0.0.8"
    assert cni.parse(env(CNI_ARGS="IP=10.0.0.7"), conf()).ip == "10.0.0.7"
    assert cni.parse(env(), conf()).ip is None
    assert cni.parse(env(), conf(runtimeConfig={"ips": []})).ip is None


def test_add_result_per_version_and_body() -> None:
    agent = FakeAgent()
    rc, out = run(env(CNI_ARGS="IP=10.0.0.5"), conf(dns={"nameservers": ["10.0.0.1"]}), agent)
    assert rc == 0
    assert out == {
        "cniVersion": "1.1.0",
        "interfaces": [
            {"name": "eth0", "mac": EP["mac"], "sandbox": "/proc/self/ns/net", "mtu": 1450}
        ],
        "ips": [{"address": "10.0.0.5/24", "gateway": "10.0.0.1", "interface": 0}],
        "routes": [{"dst": "0.0.0.0/0", "gw": "10.0.0.1"}],
        "dns": {"nameservers": ["10.0.0.1"]},
    }
    assert agent.calls == [
        (
            "add",
            {
                "name": "abc123",
                "network": "blue",
                "ifname": "eth0",
                "container_id": "abc123",
                "config": "blue",
                "netns": "/proc/self/ns/net",
                "ip": "10.0.0.5",
            },
        )
    ]
    rc, old = run(env(), json.dumps({"cniVersion": "0.3.1", "name": "n", "type": "t"}).encode())
    assert rc == 0 and old["ips"][0]["version"] == "4" and "mtu" not in old["interfaces"][0]
    rc, v1 = run(env(), conf(cniVersion="1.0.0"))
    assert "version" not in v1["ips"][0] and "mtu" not in v1["interfaces"][0]


def test_add_chains_onto_prev_result() -> None:
    prev = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "tap0"}],
        "ips": [{"address": "192.168.9.2/24", "interface": 0}],
    }
    rc, out = run(env(), conf(prevResult=prev))
    assert rc == 0
    assert [i["name"] for i in out["interfaces"]] == ["tap0", "eth0"]
    assert out["ips"][1] == {"address": "10.0.0.5/24", "gateway": "10.0.0.1", "interface": 1}


def test_network_field_and_socket_sources() -> None:
    inv = cni.parse(env(VXPLANE_AGENT_SOCKET="/e.sock"), conf(network="red"))
    assert (inv.network, inv.agent_socket) == ("red", "/e.sock")
    inv = cni.parse(env(VXPLANE_AGENT_SOCKET="/e.sock"), conf(agentSocket="/c.sock"))
    assert (inv.network, inv.agent_socket) == ("blue", "/c.sock")
    assert cni.parse(env(), conf()).agent_socket == cni.DEFAULT_SOCKET


def test_del_without_netns_and_release_flag() -> None:
    agent = FakeAgent()
    assert run(env("DEL", CNI_NETNS=""), conf(), agent) == (0, None)
    assert run(env("DEL"), conf(keepAddress=True), agent) == (0, None)
    assert [b["release"] for _, b in agent.calls] == [True, False]
    assert "netns" not in agent.calls[0][1]


def test_check_compares_prev_result() -> None:
    good = {
        "interfaces": [{"name": "eth0", "mac": EP["mac"].upper(), "sandbox": "/proc/self/ns/net"}],
        "ips": [{"address": "10.0.0.5/24", "interface": 0}],
    }
    assert run(env("CHECK"), conf(prevResult=good)) == (0, None)
    for broken in (
        {**good, "interfaces": [{**good["interfaces"][0], "mac": "0a:58:0a:00:00:06"}]},
        {**good, "interfaces": [{**good["interfaces"][0], "sandbox": "/other"}]},
        {**good, "ips": [{"address": "10.0.0.5/25", "interface": 0}]},
        {**good, "ips": []},
    ):
        rc, err = run(env("CHECK"), conf(prevResult=broken))
        assert rc == 1 and err["code"] == cni.NOT_AS_EXPECTED, broken


def test_gc_and_status_bodies() -> None:
    agent = FakeAgent()
    valid = [{"containerID": "a", "ifname": "eth0"}, {"containerID": "b"}]
    gc_env = {"CNI_COMMAND": "GC", "CNI_PATH": "/x"}
    assert run(gc_env, conf(**{"cni.dev/valid-attachments": valid}), agent) == (0, None)
    assert agent.calls[-1] == (
        "gc",
        {
            "config": "blue",
            "valid": [{"container_id": "a", "ifname": "eth0"}, {"container_id": "b", "ifname": ""}],
            "release": True,
        },
    )
    assert run({"CNI_COMMAND": "STATUS"}, conf(network="red"), agent) == (0, None)
    assert agent.calls[-1] == ("status", {"network": "red"})
    down = FakeAgent(cni.CniError(cni.TRY_AGAIN, "no agent"))
    rc, err = run({"CNI_COMMAND": "STATUS"}, conf(), down)
    assert rc == 1 and err == {"cniVersion": "1.1.0", "code": 50, "msg": "no agent"}


def test_version_needs_no_agent() -> None:
    def connect(path: str) -> Any:
        raise AssertionError("VERSION must not call the agent")

    rc, out = cni.run({"CNI_COMMAND": "VERSION"}, b"", connect)
    assert rc == 0 and json.loads(out) == {
        "cniVersion": "1.1.0",
        "supportedVersions": list(cni.SUPPORTED_VERSIONS),
    }
    rc, out = cni.run({"CNI_COMMAND": "VERSION"}, b'{"cniVersion":"0.4.0"}', connect)
    assert json.loads(out)["cniVersion"] == "0.4.0"


@pytest.mark.parametrize(
    ("e", "stdin", "code"),
    [
        ({}, conf(), 4),
        (env("BOGUS"), conf(), 4),
        (env(CNI_CONTAINERID=""), conf(), 4),
        (env(CNI_IFNAME="a/b"), conf(), 4),
        (env(CNI_IFNAME=".."), conf(), 4),
        (env(CNI_NETNS=""), conf(), 4),
        (env(CNI_NETNS="relative/ns"), conf(), 4),
        (env(CNI_ARGS="K8S_POD_NAME"), conf(), 4),
        (env(CNI_ARGS="IP=10.0.0.5,10.0.0.6"), conf(), 4),
        (env(CNI_ARGS="IP=nonsense"), conf(), 4),
        (env(CNI_NETNS="/nonexistent/ns"), conf(), 3),
        (env(), b"\xff\xfe", 6),
        (env(), b'"text"', 6),
        (env(), conf(cniVersion="0.2.0"), 1),
        (env("CHECK"), conf(cniVersion="0.3.0", prevResult={}), 1),
        (env(), conf(ipMasq=True), 2),
        (env(), conf(ipam={"type": "dhcp"}), 2),
        (env(), conf(name="bad name"), 7),
        (env(), conf(type=""), 7),
        (env(), conf(network="x" * 70), 7),
        (env(), conf(keepAddress="yes"), 7),
        (env(), conf(prevResult=[1]), 7),
        (env(), conf(runtimeConfig={"ips": "10.0.0.5"}), 7),
        (env(), conf(runtimeConfig={"endpointName": "bad//name"}), 7),
        (env("CHECK"), conf(), 7),
        ({"CNI_COMMAND": "GC"}, conf(**{"cni.dev/valid-attachments": [{"ifname": "x"}]}), 7),
    ],
)
def test_errors_are_spec_error_objects(e: dict[str, str], stdin: bytes, code: int) -> None:
    agent = FakeAgent()
    rc, err = run(e, stdin, agent)
    assert rc == 1 and err["code"] == code and err["msg"], err
    assert set(err) <= {"cniVersion", "code", "msg", "details"}
    assert agent.calls == []  # refused before anything was asked of the agent


def test_agent_errors_map_to_cni_codes() -> None:
    assert cni_code(NotAvailable("x")) == 50
    assert cni_code(CheckFailed("x")) == 101
    assert cni_code(ControllerUnavailable("x")) == 11
    assert cni_code(NotReady("x")) == 11
    assert cni_code(NotFound("x")) == 3
    assert cni_code(ControllerError(404, "no network")) == 7
    assert cni_code(ControllerError(422, "bad ip")) == 7
    assert cni_code(ControllerError(409, "taken")) == 100
    assert cni_code(InvalidRequest("x")) == 7
    assert cni_code(OvsError("x")) == 5 and cni_code(LinkError("x")) == 5


def test_agent_error_code_passes_through() -> None:
    rc, err = run(env(), conf(), FakeAgent(cni.CniError(100, "10.0.0.5 is taken")))
    assert (rc, err["code"], err["msg"]) == (1, 100, "10.0.0.5 is taken")
