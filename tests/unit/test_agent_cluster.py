"""The agent in a cluster: br-int follows the live members' OpenFlow targets and never passes
through zero targets (even when every lease looks lapsed); the API client fails over to the
next controller when one cannot be reached (real HTTP servers on loopback)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hostagent.client import ControllerClient
from hostagent.errors import ControllerUnavailable
from hostagent.plan import controller_targets
from hostagent.settings import AgentSettings
from tests.unit.agentfakes import BRIDGE, FakeHost


def member(name: str, alive: bool = True) -> dict[str, object]:
    return {"id": name, "alive": alive, "openflow": f"tcp:{name}:6653",
            "api_url": f"http://{name}:8080"}  # fmt: skip


def test_targets_are_the_live_members_only() -> None:
    assert controller_targets([member("b"), member("a"), member("c", alive=False)]) == [
        "tcp:a:6653", "tcp:b:6653",
    ]  # fmt: skip
    assert controller_targets([member("a", alive=False)]) == []
    unknown = {**member("c"), "openflow": ""}  # listens on a wildcard, advertises nothing
    assert controller_targets([member("a"), unknown]) == ["tcp:a:6653"]
    assert controller_targets([]) == []


def test_br_int_follows_membership_and_never_has_zero_targets() -> None:
    host = FakeHost()
    host.ctl.members = [member("a")]
    agent = host.agent(controller="http://a:8080")
    agent.setup_bridge()
    agent.register()
    assert host.ovs.controllers(BRIDGE) == ["tcp:a:6653"]  # from --controller
    host.ctl.members = [member("a"), member("b"), member("c")]
    assert agent.follow_members() == ["tcp:a:6653", "tcp:b:6653", "tcp:c:6653"]
    assert host.ctl.member_urls == ["http://a:8080", "http://b:8080", "http://c:8080"]
    host.ctl.members = [member("a", alive=False), member("b"), member("c")]  # a died
    assert agent.follow_members() == ["tcp:b:6653", "tcp:c:6653"]
    # database outage: every lease looks lapsed; the bridge keeps its targets
    host.ctl.members = [member("b", alive=False), member("c", alive=False)]
    assert agent.follow_members() is None
    host.ctl.members = []
    assert agent.follow_members() is None
    assert host.ovs.controllers(BRIDGE) == ["tcp:b:6653", "tcp:c:6653"]
    assert agent.follow_members() is None  # nothing changed: no OVSDB write
    assert all(host.ovs.target_history), "br-int never went through zero targets"
    assert len(host.ovs.target_history) == 3


def test_a_controller_before_clusters_leaves_the_target_as_given() -> None:
    host = FakeHost()  # its FakeController answers 404 to /api/v1/controllers
    agent = host.agent(controller="http://a:8080")
    agent.setup_bridge()
    agent.register()
    assert agent.follow_members() is None
    assert host.ovs.controllers(BRIDGE) == ["tcp:a:6653"]


def test_restarted_agent_keeps_the_members_it_finds_on_br_int() -> None:
    host = FakeHost()
    host.ctl.members = [member("a"), member("b")]
    first = host.agent(controller="http://a:8080")
    first.setup_bridge()
    first.register()
    first.follow_members()
    again = host.agent(controller="http://a:8080")  # a new agent process
    again.setup_bridge()
    assert host.ovs.controllers(BRIDGE) == ["tcp:a:6653", "tcp:b:6653"]


def test_settings_take_several_controllers() -> None:
    s = AgentSettings(controller="http://a:8080/, https://b:8443", host="h1",
                      underlay_ip="198.18.0.1")  # fmt: skip
    assert s.controllers == ["http://a:8080", "https://b:8443"]
    assert s.openflow_targets == ("tcp:a:6653", "tcp:b:6653")
    with pytest.raises(ValueError, match="ftp://x"):
        AgentSettings(controller="http://a:8080,ftp://x", host="h1", underlay_ip="198.18.0.1")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"status": "ok", "server": self.server.server_port}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def server() -> Iterator[int]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_port
    srv.shutdown()
    srv.server_close()


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # nothing listens once it is closed


def test_client_fails_over_to_the_next_controller_and_stays(server: int) -> None:
    dead = _closed_port()
    client = ControllerClient(f"http://127.0.0.1:{dead},http://127.0.0.1:{server}", timeout=2)
    try:
        assert client.healthz()["server"] == server
        assert client.base_url == f"http://127.0.0.1:{server}" and client.failovers == 1
        assert client.healthz()["server"] == server and client.failovers == 1  # stays
    finally:
        client.close()


def test_client_with_every_controller_down_raises_unavailable() -> None:
    client = ControllerClient([f"http://127.0.0.1:{_closed_port()}" for _ in range(2)], timeout=2)
    try:
        with pytest.raises(ControllerUnavailable):
            client.healthz()
    finally:
        client.close()


@pytest.fixture
def silent() -> Iterator[int]:
    """A port that accepts connections and never answers (a SIGSTOPped controller: the kernel
    completes the handshake from the listen backlog, nobody reads)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    yield int(sock.getsockname()[1])
    sock.close()


def test_a_controller_that_never_answers_is_replayed_elsewhere_only_if_idempotent(
    server: int, silent: int
) -> None:
    client = ControllerClient(f"http://127.0.0.1:{silent},http://127.0.0.1:{server}", timeout=0.5)
    try:
        # GET (and PUT, DELETE) may be sent again: answered by the next controller
        assert client.healthz()["server"] == server and client.failovers == 1
        client.base_url = f"http://127.0.0.1:{silent}"
        with pytest.raises(ControllerUnavailable, match="ReadTimeout"):
            client._call("POST", "/healthz")  # may have been applied there: not replayed
        assert client.base_url == f"http://127.0.0.1:{server}"  # the next one starts there
    finally:
        client.close()
