"""Issue 8: CNI DEL and the Docker driver free an address only if it is still unbound, checked
by the controller in the deleting transaction. Before, they read "unbound", then deleted in
another request: a bind that came in between (the name started on another host) lost its
live endpoint's address. Each test makes that bind happen just before the delete."""

from __future__ import annotations

import json
from typing import Any

import pytest

from hostagent.runtimes.docker.driver import ANON
from tests.unit.agentfakes import FakeController
from tests.unit.test_runtimes import Cni, Docker


def _bind_before_every_delete(ctl: FakeController, monkeypatch: pytest.MonkeyPatch) -> None:
    """Host h2 binds the endpoint right before each delete reaches the controller."""
    ctl.register_host("h2", "198.18.0.2")
    original = ctl.delete_endpoint

    def racing(network: str, name: str, **kwargs: Any) -> None:
        ctl.bind(network, name, "h2", 7)
        original(network, name, **kwargs)

    monkeypatch.setattr(ctl, "delete_endpoint", racing)


@pytest.fixture
def cni(tmp_path: Any) -> Cni:
    return Cni(tmp_path)


@pytest.fixture
def docker() -> Docker:
    d = Docker()
    d.create_network("n1", "green")
    return d


def test_cni_del_keeps_an_address_bound_meanwhile(
    cni: Cni, monkeypatch: pytest.MonkeyPatch
) -> None:
    cni.add("a", "c1")
    _bind_before_every_delete(cni.host.ctl, monkeypatch)
    out = cni.svc.delete("a", "blue", "eth0", "c1", "cfg", release=True)
    assert out["detached"] is True and out["released"] is False
    assert cni.host.ctl.view() == {("blue", "a"): ("10.0.0.2", "h2", 7, "ready")}
    (call,) = cni.host.ctl.calls_of("delete_endpoint")
    assert call[1] == {"if_unbound": True}


def test_cni_del_still_releases_an_unbound_address(cni: Cni) -> None:
    cni.add("a", "c1")
    out = cni.svc.delete("a", "blue", "eth0", "c1", "cfg", release=True)
    assert out["released"] is True and cni.host.ctl.view() == {}


def test_docker_release_address_keeps_an_endpoint_bound_meanwhile(
    docker: Docker, monkeypatch: pytest.MonkeyPatch
) -> None:
    got = docker.call("IpamDriver.RequestAddress", {"PoolID": docker.pool, "Address": ""})
    ctl = docker.host.ctl
    (name,) = [key[1] for key in ctl.view() if key[1].startswith(ANON)]
    _bind_before_every_delete(ctl, monkeypatch)
    docker.call("IpamDriver.ReleaseAddress", {"PoolID": docker.pool, "Address": got["Address"]})
    assert ctl.view()[("green", name)][1:3] == ("h2", 7)


def test_docker_release_address_frees_an_unbound_one(docker: Docker) -> None:
    got = docker.call("IpamDriver.RequestAddress", {"PoolID": docker.pool, "Address": ""})
    docker.call("IpamDriver.ReleaseAddress", {"PoolID": docker.pool, "Address": got["Address"]})
    assert docker.host.ctl.view() == {}


def test_docker_ip_request_keeps_an_old_reservation_bound_meanwhile(
    docker: Docker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``docker run --ip`` for a name whose old reservation holds another address deletes
    that reservation first, but only while it is still the unbound one it read."""
    ctl = docker.host.ctl
    ctl.create_endpoint("green", "web", ip="10.30.0.50")  # the name's old reservation
    docker.engine.starting("web", "green")
    docker.engine.ctrs["web"]["NetworkSettings"]["Networks"]["green"]["IPAMConfig"] = {
        "IPv4Address": "10.30.0.60"
    }
    _bind_before_every_delete(ctl, monkeypatch)
    body = json.dumps({"PoolID": docker.pool, "Address": "10.30.0.60"}).encode()
    _, reply = docker.driver.dispatch("/IpamDriver.RequestAddress", body)
    assert "bound to host 'h2'" in reply["Error"], reply
    assert ctl.view()[("green", "web")] == ("10.30.0.50", "h2", 7, "ready")
    (call,) = ctl.calls_of("delete_endpoint")
    assert call[1]["if_unbound"] is True and call[1]["if_revision"] == 0
