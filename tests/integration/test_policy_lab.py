"""Network policy on the real lab: a matrix of TCP connections between endpoints labelled
role=web, role=db and role=other on three emulated hosts, and what removing an allow rule
does to the connections it allowed (cut both ways, see ``controller.policy``).

Policies (network ``shop``):

- ``db-in`` selects role=db: ingress from the other endpoint's address (a CIDR) on tcp/6000;
- ``db-from-web`` selects role=db: ingress from role=web on tcp/5432;
- ``web-out`` selects role=web, Egress only: to role=db on tcp/5432, to the other endpoint's
  address (a CIDR) on tcp/8080.

``other`` is selected by none: it stays open both ways. Every target port has a listener,
so a refused connection (RST) is never mistaken for a policy drop: a denied connection is one
whose SYN goes unanswered. Listeners echo what they get, so an allowed connection also
proves that its replies pass (stateful: web may only *send* to db and other, yet what db and
other answer reaches it).

Prefix ``vxp-``, underlay 198.18.27.0/24, ports from tests/slots.py (moved by
``VXTEST_SLOT``). All traffic stays between the lab's namespaces.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest

from tests import slots
from vxlab.lab import Lab
from vxlab.launch import ControllerProcess, controller_and_lab

pytestmark = [pytest.mark.root, pytest.mark.timeout(600)]

PREFIX = slots.prefix("vxp-")
UNDERLAY = slots.underlay("198.18.27.0/24")
API_PORT, OF_PORT = slots.ports("test_policy_lab", 2)
NET = "shop"
POLS = f"/api/v1/networks/{NET}/policies"
PROBE_TIMEOUT = 4.0  # a SYN unanswered this long counts as dropped
LISTEN = {"web": (8080,), "db": (5432, 6000, 7000), "other": (8080, 9090)}

# An echo server on the given ports; "push" on stdin sends "push\n" to every open connection.
SERVER = r"""
import socket, sys, threading
conns, lock = [], threading.Lock()
def serve(c):
    with lock:
        conns.append(c)
    try:
        while (data := c.recv(4096)):
            c.sendall(data)
    except OSError:
        pass
def accept(s):
    while True:
        c, _ = s.accept()
        threading.Thread(target=serve, args=(c,), daemon=True).start()
for p in sys.argv[1:]:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", int(p)))
    s.listen(16)
    threading.Thread(target=accept, args=(s,), daemon=True).start()
print("listening", flush=True)
for line in sys.stdin:
    if line.strip() == "push":
        with lock:
            for c in conns:
                try:
                    c.sendall(b"push\n")
                except OSError:
                    pass
        print("pushed", flush=True)
"""

# Connect to every IP:PORT at once, send a line, expect it echoed: prints {target: outcome}.
PROBE = r"""
import concurrent.futures as cf, json, socket, sys
T = float(sys.argv[1])
def one(target):
    ip, port = target.rsplit(":", 1)
    try:
        s = socket.create_connection((ip, int(port)), timeout=T)
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return f"error {e}"
    with s:
        s.settimeout(T)
        try:
            s.sendall(b"hello\n")
            return "ok" if s.recv(64) == b"hello\n" else "garbled"
        except socket.timeout:
            return "no reply"
        except OSError as e:
            return f"error {e}"
with cf.ThreadPoolExecutor(len(sys.argv) - 2) as ex:
    print(json.dumps(dict(zip(sys.argv[2:], ex.map(one, sys.argv[2:])))))
"""


# One long-lived connection. Each stdin line "send" sends "ping\n" and waits for an answer,
# "recv" only waits; either prints "got LINE", "timeout", "closed" or "error ...".
CLIENT = r"""
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.settimeout(float(sys.argv[3]))
print("connected", flush=True)
for line in sys.stdin:
    try:
        if line.strip() == "send":
            s.sendall(b"ping\n")
        data = s.recv(64)
        print("got " + data.decode().strip() if data else "closed", flush=True)
    except socket.timeout:
        print("timeout", flush=True)
    except OSError as e:
        print(f"error {e}", flush=True)
"""


def _in(ns: str, code: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args]


class Peer:
    """A python helper in a lab namespace, driven line by line over its stdin and stdout."""

    def __init__(self, ns: str, code: str, *args: str, ready: str) -> None:
        self.proc = subprocess.Popen(
            _in(ns, code, *args),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.read()
        assert line == ready, (
            f"{ns}: {line!r}, stderr: {self.proc.stderr and self.proc.stderr.read()}"
        )

    def read(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@dataclass
class Stack:
    lab: Lab
    ctl: ControllerProcess
    api: httpx.Client
    ns: dict[str, str]
    ip: dict[str, str]
    servers: dict[str, Peer] = field(default_factory=dict)

    def applied(self, timeout: float = 30.0) -> int:
        """Wait until every host's switch applied the controller's current revision."""
        rev = int(self.api.get("/healthz").json()["revision"])
        deadline = time.monotonic() + timeout
        while any(
            (h.get("switch") or {}).get("applied_revision", -1) < rev
            for h in self.api.get("/api/v1/hosts").json()
        ):
            assert time.monotonic() < deadline, f"switches did not apply revision {rev}"
            time.sleep(0.05)
        return rev

    def probe(self, src: str, *targets: tuple[str, int]) -> dict[tuple[str, int], str]:
        """Connect from ``src`` to each (endpoint, port) at once; the outcome of each."""
        args = [f"{self.ip[dst]}:{port}" for dst, port in targets]
        out = subprocess.run(
            _in(self.ns[src], PROBE, str(PROBE_TIMEOUT), *args),
            capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        got = json.loads(out.stdout)
        return {t: got[a] for t, a in zip(targets, args, strict=True)}

    def policy(self, body: dict) -> None:
        r = self.api.post(POLS, json=body)
        assert r.status_code == 201, r.text

    def delete_policy(self, name: str) -> None:
        r = self.api.delete(f"{POLS}/{name}")
        assert r.status_code == 204, r.text


def _role(value: str) -> dict:
    return {"selector": {"matchLabels": {"role": value}}}


def _tcp(*ports: int) -> list[dict]:
    return [{"protocol": "tcp", "port": p} for p in ports]


def db_in(other_ip: str) -> dict:
    return {
        "name": "db-in",
        **_role("db"),
        "ingress": [{"from": [{"cidr": f"{other_ip}/32"}], "ports": _tcp(6000)}],
    }


DB_FROM_WEB = {"name": "db-from-web", **_role("db"),
               "ingress": [{"from": [_role("web")], "ports": _tcp(5432)}]}  # fmt: skip


def web_out(other_ip: str) -> dict:
    return {
        "name": "web-out",
        **_role("web"),
        "policy_types": ["Egress"],
        "egress": [
            {"to": [_role("db")], "ports": _tcp(5432)},
            {"to": [{"cidr": f"{other_ip}/32"}], "ports": _tcp(8080)},
        ],
    }


@pytest.fixture(scope="module")
def stack(lab_prerequisites: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with controller_and_lab(
        tmp_path_factory.mktemp("policy"),
        prefix=PREFIX,
        underlay=UNDERLAY,
        api_port=API_PORT,
        openflow_port=OF_PORT,
        hosts=3,
    ) as (lab, ctl, api):
        r = api.post("/api/v1/networks", json={"name": NET, "subnet": "10.70.0.0/24"})
        assert r.status_code == 201, r.text
        ns, ip = {}, {}
        for host, role in (("h1", "web"), ("h2", "db"), ("h3", "other")):
            ns[role] = f"{PREFIX}{role}"
            ep = lab.run(host, ns[role], NET, labels={"role": role})
            ip[role] = str(ep["ip"])
        s = Stack(lab, ctl, api, ns, ip)
        try:
            for role, ports in LISTEN.items():
                s.servers[role] = Peer(ns[role], SERVER, *map(str, ports), ready="listening")
            yield s
        finally:
            for server in s.servers.values():
                server.stop()


def test_without_policies_every_listener_answers(stack: Stack) -> None:
    """The control: before any policy every port of the matrix is open, so the denials
    below are the policies' doing."""
    for src in LISTEN:
        targets = [(dst, p) for dst, ports in LISTEN.items() if dst != src for p in ports]
        got = stack.probe(src, *targets)
        assert set(got.values()) == {"ok"}, got


def test_policy_matrix(stack: Stack) -> None:
    for body in (db_in(stack.ip["other"]), DB_FROM_WEB, web_out(stack.ip["other"])):
        stack.policy(body)
    stack.applied()
    expected = {
        "web": {
            ("db", 5432): "ok",  # web's egress rule and db's ingress rule both allow it
            ("db", 6000): "timeout",  # neither allows
            ("db", 7000): "timeout",
            ("other", 8080): "ok",  # web's egress CIDR rule; other is open
            ("other", 9090): "timeout",  # web's egress allows only 8080 to that CIDR
        },
        "db": {
            ("web", 8080): "ok",  # db's egress is open, web's ingress too: web's answer is
            # a reply, which passes web's egress isolation
            ("other", 8080): "ok",
            ("other", 9090): "ok",  # other is selected by no policy
        },
        "other": {
            ("db", 5432): "timeout",  # db accepts 5432 from role=web only
            ("db", 6000): "ok",  # db's ingress CIDR rule
            ("db", 7000): "timeout",  # no rule names 7000
            ("web", 8080): "ok",  # web is isolated for egress only
        },
    }
    for src, want in expected.items():
        got = stack.probe(src, *want)
        assert got == want, f"from {src}: {got}"


def test_removing_an_allow_rule_cuts_its_open_connections(stack: Stack) -> None:
    """Causality, not a duration: a connection the removed rule allowed passes data until the
    policy change is applied on every switch, and none after (either way); a connection
    another rule still allows goes on."""
    for body in (db_in(stack.ip["other"]), DB_FROM_WEB, web_out(stack.ip["other"])):
        if stack.api.get(f"{POLS}/{body['name']}").status_code == 404:
            stack.policy(body)
    stack.applied()
    db_server = stack.servers["db"]
    cut = kept = None
    try:
        cut = Peer(stack.ns["web"], CLIENT, stack.ip["db"], "5432", "2", ready="connected")
        kept = Peer(stack.ns["other"], CLIENT, stack.ip["db"], "6000", "2", ready="connected")
        assert cut.ask("send") == "got ping" and kept.ask("send") == "got ping"
        assert db_server.ask("push") == "pushed"
        assert cut.ask("recv") == "got push" and kept.ask("recv") == "got push"

        stack.delete_policy("db-from-web")  # db stays isolated by db-in
        stack.applied()
        assert cut.ask("send") == "timeout", "web's data still reaches db"
        assert db_server.ask("push") == "pushed"
        assert cut.ask("recv") == "timeout", "db's data still reaches web after the cut"
        assert kept.ask("recv") == "got push", "a connection another rule allows goes on"
        assert kept.ask("send") == "got ping"
        # a new connection is refused the same way
        assert stack.probe("web", ("db", 5432)) == {("db", 5432): "timeout"}
    finally:
        for peer in (cut, kept):
            if peer is not None:
                peer.stop()
        if stack.api.get(f"{POLS}/db-from-web").status_code == 404:
            stack.policy(DB_FROM_WEB)


def _policy_table_flows(stack: Stack, host: str) -> int:
    """Flows in the policy check tables (23 egress, 31 ingress) of ``host``'s real switch."""
    target = stack.lab.ofctl_target(stack.lab.host_name(host))
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", target],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    # a flow's own table is the first "table=" of its line (actions may name others)
    tables = [line.split("table=", 1)[1].split(",", 1)[0] for line in out.splitlines()
              if "table=" in line]  # fmt: skip
    return sum(1 for t in tables if t in ("23", "31"))


def test_flows_on_a_real_switch_grow_as_sources_plus_destinations(stack: Stack) -> None:
    """On db's host, each new source (role=web, elsewhere) adds one clause flow, and each
    new destination (role=db, there) one clause flow plus its open egress flow: N + 2M, not
    N x M (docs/benchmarks.md has the counts up to 1000 x 1000)."""
    for body in (db_in(stack.ip["other"]), DB_FROM_WEB, web_out(stack.ip["other"])):
        if stack.api.get(f"{POLS}/{body['name']}").status_code == 404:
            stack.policy(body)
    stack.applied()
    before = _policy_table_flows(stack, "h2")
    for i in range(3):
        stack.lab.run("h1", f"{PREFIX}w{i}", NET, labels={"role": "web"})
    stack.applied()
    sources = _policy_table_flows(stack, "h2")
    assert sources - before == 3
    made = [stack.lab.run("h2", f"{PREFIX}d{i}", NET, labels={"role": "db"}) for i in range(3)]
    stack.applied()
    assert _policy_table_flows(stack, "h2") - sources == 3 * 2
    # and the new ones are enforced: a new web reaches a new db on 5432, not on 7000
    stack.ns["w0"], stack.ip["d0"] = f"{PREFIX}w0", str(made[0]["ip"])
    server = Peer(f"{PREFIX}d0", SERVER, "5432", "7000", ready="listening")
    try:
        assert stack.probe("w0", ("d0", 5432), ("d0", 7000)) == {
            ("d0", 5432): "ok",
            ("d0", 7000): "timeout",
        }
    finally:
        server.stop()
