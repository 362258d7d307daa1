"""CNI protocol translation (``hostagent/cni.py``) against a fake agent: parsing, naming,
results of each spec version, error objects, and the agent-error -> CNI-code mapping; and the
plugin's HTTP transport against a real HTTP server on a unix socket answering like the agent."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from hostagent import cni
from hostagent.client import ControllerError
from hostagent.errors import (
    ControllerUnavailable,
    InvalidRequest,
    LinkError,
    NotFound,
    NotReady,
    OvsError,
)
from hostagent.runtimes.cni_service import CheckFailed, NotAvailable, cni_code
from vxcommon.retry import BUSY_RETRIES

EP: dict[str, Any] = {
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


def test_args_cni_labels_go_to_the_agent_on_add_only() -> None:
    labels = [{"key": "app", "value": "web"}, {"key": "example.com/tier", "value": ""}]
    agent = FakeAgent()
    rc, _ = run(env(), conf(args={"cni": {"labels": labels}}), agent)
    assert rc == 0 and agent.calls[0][1]["labels"] == {"app": "web", "example.com/tier": ""}
    # an empty list clears the endpoint's labels; none given keeps them (no key at all)
    assert cni.parse(env(), conf(args={"cni": {"labels": []}})).body["labels"] == {}
    assert "labels" not in cni.parse(env(), conf()).body
    assert cni.parse(env("DEL"), conf(args={"cni": {"labels": labels}})).labels is None


@pytest.mark.parametrize(
    ("labels", "why"),
    [
        ({"key": "app"}, "want a list"),
        (["app=web"], '"key", "value"'),
        ([{"key": "app", "value": "web", "x": 1}], '"key", "value"'),
        ([{"key": "app", "value": "a b"}], "not a valid label value"),
        ([{"key": "-app", "value": "web"}], "not a valid label key"),
        ([{"key": "app", "value": 5}], "must be strings"),
        ([{"key": "app", "value": "a"}, {"key": "app", "value": "b"}], "given twice"),
        ([{"key": f"k{i}", "value": "v"} for i in range(65)], "at most 64"),
    ],
)
def test_bad_args_cni_labels_fail_the_add_before_the_agent(labels: Any, why: str) -> None:
    agent = FakeAgent()
    rc, out = run(env(), conf(args={"cni": {"labels": labels}}), agent)
    assert rc == 1 and out["code"] == cni.INVALID_CONFIG and why in out["msg"], out
    assert agent.calls == []


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


# -- the transport: a real HTTP server on a unix socket ----------------------------------


def http_reply(status: int, doc: Any, headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 response with a JSON body and Content-Length."""
    body = json.dumps(doc).encode()
    head = [
        f"HTTP/1.1 {status} X",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    head += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return "\r\n".join([*head, "", ""]).encode() + body


class AgentServer(socketserver.ThreadingUnixStreamServer):
    """Parses each request with the standard library's HTTP server, records it, and writes
    back the raw bytes that ``reply(path, body)`` returns (so a test can send anything)."""

    daemon_threads = True

    def __init__(self, path: str) -> None:
        self.path = path
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.reply: Callable[[str, bytes], bytes] = lambda path, body: http_reply(200, {})
        super().__init__(path, Handler)


class Handler(BaseHTTPRequestHandler):
    server: AgentServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, dict(self.headers), body))
        self.wfile.write(self.server.reply(self.path, body))
        self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def sock_dir() -> Iterator[str]:
    path = tempfile.mkdtemp(prefix="vxcni")  # short: unix socket paths end at 108 bytes
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def agent_server(sock_dir: str) -> Iterator[AgentServer]:
    server = AgentServer(os.path.join(sock_dir, "agent.sock"))
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def plug(server: AgentServer, command: str = "ADD", **conf_kw: Any) -> tuple[int, Any]:
    """``cni.run`` with the real transport against ``server``."""
    rc, out = cni.run(env(command), conf(**conf_kw, agentSocket=server.path), cni.SocketAgent)
    return rc, json.loads(out) if out else None


def test_add_over_the_socket(agent_server: AgentServer) -> None:
    agent_server.reply = lambda path, body: http_reply(200, {"endpoint": EP, "mtu": 1450})
    rc, out = plug(agent_server)
    assert rc == 0 and out["ips"][0]["address"] == "10.0.0.5/24", out
    [(path, headers, body)] = agent_server.requests
    assert path == "/v1/cni/add" and headers["Content-Type"] == "application/json"
    assert json.loads(body) == {
        "name": "abc123", "network": "blue", "ifname": "eth0", "container_id": "abc123",
        "config": "blue", "netns": "/proc/self/ns/net",
    }  # fmt: skip


def test_agent_error_reply_keeps_its_cni_code(agent_server: AgentServer) -> None:
    doc = {"detail": "10.0.0.5 is taken", "cni_code": 100}
    agent_server.reply = lambda path, body: http_reply(409, doc)
    assert plug(agent_server) == (1, {"cniVersion": "1.1.0", "code": 100, "msg": doc["detail"]})
    # no cni_code: a 4xx is the request's fault, a 5xx the agent's (try again)
    agent_server.reply = lambda path, body: http_reply(422, {"detail": [{"msg": "bad ip"}]})
    rc, err = plug(agent_server)
    assert (rc, err["code"]) == (1, cni.INVALID_CONFIG) and "bad ip" in err["msg"]
    agent_server.reply = lambda path, body: b"HTTP/1.1 500 Oops\r\nContent-Length: 4\r\n\r\noops"
    rc, err = plug(agent_server)
    assert (rc, err["code"], err["msg"]) == (1, cni.TRY_AGAIN, "oops")


def test_agent_down_is_try_again_and_status_not_available(sock_dir: str) -> None:
    missing = os.path.join(sock_dir, "none.sock")
    rc, out = cni.run(env(), conf(agentSocket=missing), cni.SocketAgent)
    err = json.loads(out)
    assert (rc, err["code"]) == (1, cni.TRY_AGAIN) and "does not exist" in err["msg"]
    # the socket file is there but nobody listens (an agent that died): refused
    dead = os.path.join(sock_dir, "dead.sock")
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(dead)
    rc, out = cni.run(env(), conf(agentSocket=dead), cni.SocketAgent)
    err = json.loads(out)
    assert (rc, err["code"]) == (1, cni.TRY_AGAIN) and "ConnectionRefusedError" in err["msg"]
    rc, out = cni.run({"CNI_COMMAND": "STATUS"}, conf(agentSocket=dead), cni.SocketAgent)
    assert (rc, json.loads(out)["code"]) == (1, cni.NOT_AVAILABLE)


def test_large_bodies_both_ways(agent_server: AgentServer) -> None:
    valid = [{"containerID": f"c{i:06d}", "ifname": "eth0"} for i in range(40_000)]  # ~1.5 MB
    removed = [f"endpoint-{i:06d}" for i in range(60_000)]
    agent_server.reply = lambda path, body: http_reply(200, {"removed": removed})
    agent = cni.SocketAgent(agent_server.path)
    assert cni.run(
        {"CNI_COMMAND": "GC"}, conf(**{"cni.dev/valid-attachments": valid}), lambda p: agent
    ) == (0, "")
    [(path, _, body)] = agent_server.requests
    assert path == "/v1/cni/gc" and len(json.loads(body)["valid"]) == len(valid)
    assert agent.call("gc", {}) == {"removed": removed}


@pytest.mark.parametrize(
    ("raw", "want"),
    [
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
         b"5;x=y\r\n{\"a\":\r\n3\r\n 1}\r\n0\r\nTrailer: t\r\n\r\n", {"a": 1}),
        (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{\"a\": 2}", {"a": 2}),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"a\": 3}trailing", {"a": 3}),
    ],
)  # fmt: skip
def test_reply_framings(agent_server: AgentServer, raw: bytes, want: Any) -> None:
    agent_server.reply = lambda path, body: raw
    assert cni.SocketAgent(agent_server.path).call("status", {}) == want


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"SSH-2.0-OpenSSH\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{}",
        b"HTTP/1.1 200 OK\r\nContent-Le",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_broken_replies_are_try_again(agent_server: AgentServer, raw: bytes) -> None:
    agent_server.reply = lambda path, body: raw
    with pytest.raises(cni.CniError) as caught:
        cni.SocketAgent(agent_server.path).call("status", {})
    assert caught.value.code == cni.TRY_AGAIN


def invoke(environ: dict[str, str], stdin: bytes) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    rc = cni.invoke(environ, io.BytesIO(stdin), stdout, stderr)
    return rc, stdout.getvalue(), stderr.getvalue()


def test_timing_is_reported_when_asked(agent_server: AgentServer) -> None:
    headers = {"X-Vxplane-Agent-Seconds": "0.0125"}
    agent_server.reply = lambda path, body: http_reply(200, {"endpoint": EP, "mtu": 1450}, headers)
    environ = env(VXPLANE_AGENT_SOCKET=agent_server.path)
    rc, out, err = invoke(environ, conf())
    assert rc == 0 and json.loads(out)["interfaces"][0]["mac"] == EP["mac"] and err == ""
    rc, out, err = invoke({**environ, "VXPLANE_CNI_TIMING": "1"}, conf())
    timing = json.loads(err)
    assert timing["agent_seconds"] == 0.0125 and 0 < timing["request_seconds"] < 10
    spent = timing["replied_at"] - timing["started_at"]
    assert timing["request_seconds"] <= spent < 10 and timing["replied_at"] <= time.monotonic()
    agent_server.reply = lambda path, body: http_reply(200, {"endpoint": EP, "mtu": 1450})
    rc, out, err = invoke({**environ, "VXPLANE_CNI_TIMING": "1"}, conf())
    assert rc == 0 and json.loads(err)["agent_seconds"] is None


def test_the_executable_flushes_before_its_quick_exit(agent_server: AgentServer) -> None:
    agent_server.reply = lambda path, body: http_reply(200, {"endpoint": EP, "mtu": 1450})
    environ = {**env(VXPLANE_AGENT_SOCKET=agent_server.path), "PATH": os.environ["PATH"]}
    argv = [sys.executable, "-c", "from hostagent.cni import main; main()"]
    done = subprocess.run(argv, input=conf(), env=environ, capture_output=True, timeout=30)
    assert done.returncode == 0 and json.loads(done.stdout)["cniVersion"] == "1.1.0", done
    environ["CNI_COMMAND"] = "FROB"
    done = subprocess.run(argv, input=conf(), env=environ, capture_output=True, timeout=30)
    assert done.returncode == 1 and json.loads(done.stdout)["code"] == cni.INVALID_ENV, done


# What each exec would pay for (python -X importtime, Python 3.11): the reason the plugin
# speaks HTTP itself and keeps its types for mypy. hostagent/__init__ must stay trivial too.
HEAVY = {
    "httpx", "http.client", "ssl", "email", "pydantic", "fastapi", "typing", "dataclasses",
    "inspect", "ipaddress", "socket", "hostagent.agent", "hostagent.api", "hostagent.client",
    "hostagent.settings", "hostagent.runtimes",
}  # fmt: skip


def test_plugin_import_stays_light() -> None:
    # -S: no site, so nothing but the plugin's own imports is in sys.modules
    code = "import sys, hostagent.cni; print(' '.join(sys.modules))"
    root = str(Path(cni.__file__).parents[1])
    out = subprocess.run(
        [sys.executable, "-S", "-c", code], env={"PYTHONPATH": root}, capture_output=True,
        text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert "hostagent.cni" in out and HEAVY.isdisjoint(out), sorted(HEAVY.intersection(out))


def test_busy_agent_is_retried_after_its_retry_after(agent_server: AgentServer) -> None:
    """503 with Retry-After (the controller's write path was saturated): the plugin sends the
    same request again after the advised delay, a bounded number of times."""
    replies = [http_reply(503, {"detail": "busy", "cni_code": 11}, {"Retry-After": "2"})]
    ok = http_reply(200, {"endpoint": EP, "mtu": 1450})
    agent_server.reply = lambda path, body: replies.pop(0) if replies else ok
    agent = cni.SocketAgent(agent_server.path)
    slept: list[float] = []
    agent.sleep = slept.append
    rc, out = cni.run(env(), conf(agentSocket=agent_server.path), lambda p: agent)
    assert rc == 0 and json.loads(out)["ips"][0]["address"] == "10.0.0.5/24"
    assert slept == [2.0] and len(agent_server.requests) == 2
    # always busy: BUSY_RETRIES retries, then TRY_AGAIN with the agent's message
    busy = http_reply(503, {"detail": "still busy", "cni_code": 11}, {"Retry-After": "60"})
    agent_server.reply = lambda path, body: busy
    agent_server.requests.clear()
    slept.clear()
    rc, out = cni.run(env(), conf(agentSocket=agent_server.path), lambda p: agent)
    err = json.loads(out)
    assert (rc, err["code"], err["msg"]) == (1, cni.TRY_AGAIN, "still busy")
    assert slept == [5.0] * BUSY_RETRIES  # the advice, capped at MAX_WAIT
    assert len(agent_server.requests) == BUSY_RETRIES + 1
    # a 503 without Retry-After is not retried
    agent_server.reply = lambda path, body: http_reply(503, {"detail": "down", "cni_code": 11})
    agent_server.requests.clear()
    rc, out = cni.run(env(), conf(agentSocket=agent_server.path), lambda p: agent)
    assert rc == 1 and len(agent_server.requests) == 1


def test_port_mappings_capability() -> None:
    """runtimeConfig.portMappings become the agent's ``ports`` on ADD and DEL only."""
    pm = [
        {"hostPort": 8080, "containerPort": 80, "protocol": "tcp"},
        {"hostPort": 5353, "containerPort": 53, "protocol": "UDP", "hostIP": ""},
        {"hostPort": 8080, "containerPort": 80},  # the same again: once
    ]
    want = [
        {"host_port": 8080, "port": 80, "proto": "tcp"},
        {"host_port": 5353, "port": 53, "proto": "udp"},
    ]
    for command in ("ADD", "DEL"):
        inv = cni.parse(env(command), conf(runtimeConfig={"portMappings": pm}))
        assert inv.ports == want and inv.body["ports"] == want
    assert "ports" not in cni.parse(env(), conf()).body
    check = cni.parse(env("CHECK"), conf(runtimeConfig={"portMappings": pm}, prevResult={}))
    assert check.ports == [] and "ports" not in check.body
    one = {"hostPort": 8080, "containerPort": 80}
    for bad, why in (
        ({**one, "hostPort": 40000}, "32768 and up"),
        ({**one, "hostPort": 0}, "hostPort"),
        ({**one, "containerPort": "80"}, "containerPort"),
        ({**one, "protocol": "sctp"}, "tcp or udp"),
        ({**one, "hostIP": "127.0.0.1"}, "egress address"),
        ("8080:80", "want objects"),
    ):
        with pytest.raises(cni.CniError, match=why) as err:
            cni.parse(env(), conf(runtimeConfig={"portMappings": [bad]}))
        assert err.value.code == cni.INVALID_CONFIG
    with pytest.raises(cni.CniError, match="want a list"):
        cni.parse(env(), conf(runtimeConfig={"portMappings": {}}))
