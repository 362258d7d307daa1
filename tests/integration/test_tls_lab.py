"""OpenFlow over TLS on a real 2-host lab: the lab's own CA, br-int on ``ssl:``, agents with
their host's certificate; switches with a wrong certificate are refused.

Prefix ``vtl-``, underlay 198.18.12.0/24, ports from tests/slots.py (apart from
the other labs). The wrong switches are fake ones (``tests/ofswitch.py``) dialling the
controller from the root namespace with a real TLS client: a certificate from another CA,
the lab CA's certificate of another host, no certificate, and no TLS at all.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import httpx
import pytest

from controller import pki
from hostagent.ovs import OvsdbOps
from tests import slots
from tests.ofswitch import FakeSwitch
from vxlab.lab import Lab
from vxlab.launch import ControllerProcess, controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

PREFIX = slots.prefix("vtl-")
UNDERLAY = slots.underlay("198.18.12.0/24")
API_PORT, OF_PORT = slots.ports("test_tls_lab", 2)


@dataclass
class Stack:
    lab: Lab
    ctl: ControllerProcess
    api: httpx.Client
    tmp: Path

    def host(self, i: int) -> dict:
        name = self.lab.host_name(i)
        return next(h for h in self.lab.status()["hosts"] if h["name"] == name)

    def dpid(self, i: int) -> int:
        return int(IPv4Address(self.host(i)["underlay_ip"]))

    def switch(self, i: int) -> dict:
        return self.api.get(f"/api/v1/hosts/{self.lab.host_name(i)}").json().get("switch") or {}

    def client_ctx(self, pki_dir: Path | str, name: str | None) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(Path(self.lab.pki_dir) / "ca.pem")
        if name is not None:
            ctx.load_cert_chain(Path(pki_dir) / f"{name}.pem", Path(pki_dir) / f"{name}.key")
        return ctx

    def fake(self, dpid: int, tls: ssl.SSLContext | None) -> FakeSwitch:
        return FakeSwitch(self.lab.gateway_ip, OF_PORT, dpid, tls=tls)


@pytest.fixture(scope="module")
def stack(lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("tls")
    with controller_and_lab(
        tmp, prefix=PREFIX, underlay=UNDERLAY, api_port=API_PORT, openflow_port=OF_PORT,
        hosts=2, tls=True,
    ) as (lab, ctl, api):  # fmt: skip
        api.post("/api/v1/networks", json={"name": "sec", "subnet": "10.41.0.0/24"})
        yield Stack(lab, ctl, api, tmp)


def _wait(what: str, predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} not within {timeout} s"
        time.sleep(0.1)


def test_switches_connect_over_tls_and_traffic_flows(stack: Stack) -> None:
    for i in (1, 2):
        target = stack.lab.vsctl(stack.lab.host_name(i), "get-controller", "br-int").split()
        assert target == [f"ssl:{stack.lab.gateway_ip}:{OF_PORT}"]
        _wait(f"h{i}'s switch over TLS", lambda i=i: stack.switch(i).get("connected"))
    a = stack.lab.run("h1", f"{PREFIX}a", "sec")
    b = stack.lab.run("h2", f"{PREFIX}b", "sec")
    assert a["state"] == b["state"] == "ready"
    argv = ["ping", "-c", "2", "-W", "1", "-i", "0.2", "-q", b["ip"]]
    assert stack.lab.exec(f"{PREFIX}a", argv, quiet=True) == 0


def _refused(stack: Stack, sw: FakeSwitch, what: str) -> None:
    try:
        assert sw.wait_closed(10), f"{what}: the connection was not closed"
        assert (sw.dump_requests, sw.flow_mods) == (0, []), f"{what}: it was written to"
    finally:
        sw.close()
    assert stack.switch(2).get("connected"), f"{what}: the real h2 lost its connection"


def test_certificate_from_another_ca_is_refused(stack: Stack) -> None:
    before = len(stack.ctl.log_path.read_text())
    other = stack.tmp / "other-ca"
    pki.init_ca(other)
    pki.issue(other, stack.lab.host_name(2), "host")
    tls = stack.client_ctx(other, stack.lab.host_name(2))
    _refused(stack, stack.fake(stack.dpid(2), tls), "another CA's certificate")
    _wait("the refusal in the log", lambda: "CERTIFICATE_VERIFY_FAILED" in _log(stack, before))


def _log(stack: Stack, start: int) -> str:
    return stack.ctl.log_path.read_text()[start:]


def test_certificate_naming_another_host_is_refused(stack: Stack) -> None:
    before = stack.ctl.log_path.read_text()
    tls = stack.client_ctx(stack.lab.pki_dir, stack.lab.host_name(1))  # h1's, for h2's dpid
    _refused(stack, stack.fake(stack.dpid(2), tls), "h1's certificate for h2's dpid")

    def reasons() -> list[str]:  # the event is in the log once the controller wrote it there
        events = stack.api.get("/api/v1/events/recent", params={"types": "switch.refused"})
        return [e["data"]["reason"] for e in events.json()["events"]]

    _wait("the refusal's event", lambda: any(stack.lab.host_name(1) in r for r in reasons()))
    assert "refused" in stack.ctl.log_path.read_text()[len(before) :]


def test_no_certificate_or_no_tls_is_refused(stack: Stack) -> None:
    before = len(stack.ctl.log_path.read_text())
    _refused(stack, stack.fake(stack.dpid(2), stack.client_ctx("", None)), "no certificate")
    _refused(stack, stack.fake(stack.dpid(2), None), "plain TCP")
    _wait("both refusals in the log", lambda: _log(stack, before).count("TLS handshake") >= 2)


def test_agent_sets_the_switch_ssl_files(stack: Stack) -> None:
    """The agent's own set-ssl (OvsdbOps, which the lab's set-up already did by hand)."""
    name = stack.lab.host_name(2)
    key, cert, ca = stack.lab.host_ssl(name)
    ops = OvsdbOps(stack.lab.host_paths(name).db)
    try:
        ops._ensure_ssl(key + ".x", cert, ca)
        assert f"Private key: {key}.x" in stack.lab.vsctl(name, "get-ssl")
        ops._ensure_ssl(key, cert, ca)
        shown = stack.lab.vsctl(name, "get-ssl")
    finally:
        ops.close()
    assert f"Private key: {key}\n" in shown and f"CA Certificate: {ca}" in shown
    _wait("h2's switch", lambda: stack.switch(2).get("connected"))
