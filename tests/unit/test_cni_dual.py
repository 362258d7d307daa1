"""CNI results on a dual-stack network (``hostagent/cni.py``, pure): both families in
``ips`` and ``routes`` for every spec version, chained onto ``prevResult``, and CHECK
comparing both addresses. The agent is the fake of ``test_cni_proto.py``."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostagent import cni
from tests.unit.test_cni_proto import EP, conf, env

EP6: dict[str, Any] = {
    **EP,
    "ip6": "fd00:77::a00:5",
    "prefixlen6": 64,
    "gateway6": "fd00:77::a00:1",
}


class DualAgent:
    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, verb: str, body: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((verb, body))
        return {"endpoint": EP6, "mtu": 1450}


def run(e: dict[str, str], stdin: bytes) -> tuple[int, Any]:
    agent = DualAgent()
    rc, out = cni.run(e, stdin, lambda path: agent)
    return rc, json.loads(out) if out else None


def test_add_result_carries_both_families() -> None:
    rc, out = run(env(), conf())
    assert rc == 0
    assert out["ips"] == [
        {"address": "10.0.0.5/24", "gateway": "10.0.0.1", "interface": 0},
        {"address": "fd00:77::a00:5/64", "gateway": "fd00:77::a00:1", "interface": 0},
    ]
    assert out["routes"] == [
        {"dst": "0.0.0.0/0", "gw": "10.0.0.1"},
        {"dst": "::/0", "gw": "fd00:77::a00:1"},
    ]
    assert len(out["interfaces"]) == 1


@pytest.mark.parametrize(("version", "tagged"), [("0.3.1", True), ("0.4.0", True),
                                                 ("1.0.0", False), ("1.1.0", False)])  # fmt: skip
def test_each_version_shapes_both_addresses(version: str, tagged: bool) -> None:
    rc, out = run(env(), conf(cniVersion=version))
    assert rc == 0 and out["cniVersion"] == version
    if tagged:  # before 1.0 an IP config names its family
        assert [ip["version"] for ip in out["ips"]] == ["4", "6"]
    else:
        assert all("version" not in ip for ip in out["ips"])


def test_dual_stack_chains_onto_prev_result() -> None:
    prev = {
        "cniVersion": "1.1.0",
        "interfaces": [{"name": "tap0"}],
        "ips": [{"address": "192.168.9.2/24", "interface": 0}],
        "routes": [{"dst": "192.168.0.0/16"}],
    }
    rc, out = run(env(), conf(prevResult=prev))
    assert rc == 0
    assert [(ip["address"], ip["interface"]) for ip in out["ips"]] == [
        ("192.168.9.2/24", 0), ("10.0.0.5/24", 1), ("fd00:77::a00:5/64", 1),
    ]  # fmt: skip
    assert [r["dst"] for r in out["routes"]] == ["192.168.0.0/16", "0.0.0.0/0", "::/0"]


def test_check_compares_both_addresses() -> None:
    good = {
        "interfaces": [{"name": "eth0", "mac": EP["mac"], "sandbox": "/proc/self/ns/net"}],
        "ips": [
            {"address": "10.0.0.5/24", "interface": 0},
            {"address": "fd00:77::a00:5/64", "interface": 0},
        ],
    }
    assert run(env("CHECK"), conf(prevResult=good)) == (0, None)
    for ips in (
        good["ips"][:1],  # the IPv6 address missing
        [good["ips"][0], {"address": "fd00:77::a00:5/96", "interface": 0}],
        [good["ips"][0], {"address": "fd00:78::a00:5/64", "interface": 0}],
    ):
        rc, err = run(env("CHECK"), conf(prevResult={**good, "ips": ips}))
        assert rc == 1 and err["code"] == cni.NOT_AS_EXPECTED, ips
        assert "fd00:77::a00:5/64" in err["msg"]


@pytest.mark.parametrize("ips", [["fd00:77::a00:5"], ["10.0.0.5/24", "fd00:77::a00:5/64"]])
def test_asking_for_an_ipv6_address_is_refused_with_the_reason(ips: list[str]) -> None:
    rc, err = run(env(), conf(runtimeConfig={"ips": ips}))
    assert rc == 1 and err["code"] == cni.INVALID_CONFIG
    assert "IPv6 address follows from it" in err["msg"]
