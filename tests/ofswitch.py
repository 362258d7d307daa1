"""A fake OpenFlow 1.3 switch over TCP (or TLS), and builders of the raw messages it sends.

It answers what a real switch answers during the handshake (hello, features, port-desc),
echoes, barriers and the controller's flow dump, and records every flow-mod and flow-stats
request it gets, also those inside ONF bundles (it answers bundle open, commit and discard;
``reject`` applies to a bundled flow-mod as it is added, as OVS checks it then).
``dump_reply`` replaces its answer to a flow dump (the fuzzer sends malformed ones); ``send``
pushes anything at the controller. Test plumbing only.

Roles as OVS 3.1 does them (../shared/ovs-facts.md, "OpenFlow roles"): every connection
starts EQUAL; a MASTER or SLAVE request whose generation id is older than the highest the
bridge saw is answered STALE (error 11/0); MASTER demotes the bridge's other master to
SLAVE; a flow-mod from a SLAVE is answered IS_SLAVE (error 1/10) and not applied. Several
connections of one bridge (one per controller) share a ``Bridge``: its roles and its flows
(by cookie), which its flow dumps report.
"""

from __future__ import annotations

import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

V13 = 4
HELLO, ERROR, ECHO_REQUEST, ECHO_REPLY, EXPERIMENTER = 0, 1, 2, 3, 4
ONF, BUNDLE_CONTROL, BUNDLE_ADD = 0x4F4E4600, 2300, 2301
FEATURES_REQUEST, FEATURES_REPLY = 5, 6
FLOW_MOD, MULTIPART_REQUEST, MULTIPART_REPLY = 14, 18, 19
BARRIER_REQUEST, BARRIER_REPLY = 20, 21
ROLE_REQUEST, ROLE_REPLY = 24, 25
ROLE_NOCHANGE, ROLE_EQUAL, ROLE_MASTER, ROLE_SLAVE = 0, 1, 2, 3
FC_ADD, FC_DELETE = 0, 3
MP_FLOW, MP_PORT_DESC = 1, 13
MORE = 1


def msg(mtype: int, xid: int, body: bytes = b"", version: int = V13) -> bytes:
    """One message: header + ``body``."""
    return struct.pack("!BBHI", version, mtype, 8 + len(body), xid) + body


def hello(version: int = V13, elements: bytes = b"") -> bytes:
    return msg(HELLO, 1, elements, version)


def features_reply(xid: int, dpid: int) -> bytes:
    return msg(FEATURES_REPLY, xid, struct.pack("!QIBB2xII", dpid, 0, 254, 0, 0, 0))


def multipart_reply(xid: int, mptype: int, body: bytes, flags: int = 0) -> bytes:
    return msg(MULTIPART_REPLY, xid, struct.pack("!HH4x", mptype, flags) + body)


def action_output(port: int) -> bytes:
    return struct.pack("!HHIH6x", 0, 16, port, 0xFFFF)


def instruction(itype: int, body: bytes, length: int | None = None) -> bytes:
    """An instruction; ``length`` overrides its length field (0 for the parser-loop case)."""
    return struct.pack("!HH", itype, 8 + len(body) if length is None else length) + b"\0" * 4 + body


def apply_actions(*actions: bytes) -> bytes:
    return instruction(4, b"".join(actions))


def flow_stats(cookie: int, instructions: bytes = b"", length: int | None = None) -> bytes:
    """An ofp_flow_stats entry with an empty match; ``length`` overrides its length field."""
    match = struct.pack("!HH4x", 1, 4)
    size = 48 + len(match) + len(instructions)
    head = struct.pack(
        "!HBxIIHHHH4xQQQ", size if length is None else length, 0, 0, 0, 1, 0, 0, 0, cookie, 0, 0
    )
    return head + match + instructions


def flow_stats_reply(xid: int, entries: list[bytes], flags: int = 0) -> bytes:
    return multipart_reply(xid, MP_FLOW, b"".join(entries), flags)


@dataclass
class Bridge:
    """What one OVS bridge keeps across its controller connections: roles, flows."""

    generation: int | None = None  # the highest generation id seen
    flows: set[int] = field(default_factory=set)  # cookies
    conns: list[FakeSwitch] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def role_request(self, conn: FakeSwitch, role: int, gen: int) -> tuple[int, int] | None:
        """(role, generation) for the reply, or None: STALE."""
        with self.lock:
            if role in (ROLE_MASTER, ROLE_SLAVE):
                if self.generation is not None and _signed(gen - self.generation) < 0:
                    return None
                self.generation = gen
            if role == ROLE_MASTER:
                for other in self.conns:
                    if other is not conn and other.role == ROLE_MASTER:
                        other.role = ROLE_SLAVE
            if role != ROLE_NOCHANGE:
                conn.role = role
            return conn.role, self.generation if self.generation is not None else 0


def _signed(value: int) -> int:
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


@dataclass
class FakeSwitch:
    """Connects to ``host:port`` as datapath ``dpid``; runs its reader in a thread."""

    host: str
    port: int
    dpid: int
    tls: ssl.SSLContext | None = None
    dump_reply: bytes | None = None  # sent (with the request's xid patched in) for a dump
    reject: Callable[[bytes], bool] | None = None  # flow-mods it answers with an error
    flow_mods: list[tuple[int, int]] = field(default_factory=list)  # (command, cookie)
    dump_requests: int = 0
    barriers: int = 0
    bundle_requests: list[int] = field(default_factory=list)  # ONF_BCT_* of each control
    closed: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)  # features answered
    bridge: Bridge = field(default_factory=Bridge)  # shared by one bridge's connections
    role: int = ROLE_EQUAL
    roles: list[tuple[int, int]] = field(default_factory=list)  # role requests (role, gen)
    refused: list[int] = field(default_factory=list)  # cookies of flow-mods refused IS_SLAVE

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        with self.bridge.lock:
            self.bridge.conns.append(self)
        raw = socket.create_connection((self.host, self.port), timeout=10)
        self.sock: socket.socket = (
            self.tls.wrap_socket(raw, server_hostname=None) if self.tls is not None else raw
        )
        self.sock.settimeout(None)
        self.send(hello())
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def send(self, data: bytes) -> bool:
        """Send raw bytes; False once the controller closed the connection."""
        try:
            with self._lock:
                self.sock.sendall(data)
            return True
        except OSError:
            self.closed.set()
            return False

    def close(self) -> None:
        """Close at once (shutdown first: a plain close waits for the blocked reader)."""
        for step in (lambda: self.sock.shutdown(socket.SHUT_RDWR), self.sock.close):
            try:
                step()
            except OSError:
                pass
        self._thread.join(5)
        self.closed.set()

    def wait_closed(self, timeout: float) -> bool:
        return self.closed.wait(timeout)

    def _recv(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    def _read(self) -> None:
        try:
            while True:
                head = self._recv(8)
                _, mtype, length, xid = struct.unpack("!BBHI", head)
                body = self._recv(length - 8) if length > 8 else b""
                self._answer(mtype, xid, body)
        except (OSError, EOFError, ssl.SSLError):
            pass
        finally:
            self.closed.set()

    def _answer(self, mtype: int, xid: int, body: bytes) -> None:
        if mtype == FEATURES_REQUEST:
            self.send(features_reply(xid, self.dpid))
            self.ready.set()
        elif mtype == ECHO_REQUEST:
            self.send(msg(ECHO_REPLY, xid, body))
        elif mtype == BARRIER_REQUEST:
            self.barriers += 1
            self.send(msg(BARRIER_REPLY, xid))
        elif mtype == ROLE_REQUEST:
            role, gen = struct.unpack_from("!I4xQ", body, 0)
            self.roles.append((role, gen))
            answer = self.bridge.role_request(self, role, gen)
            if answer is None:
                whole = msg(ROLE_REQUEST, xid, body)
                self.send(msg(ERROR, xid, struct.pack("!HH", 11, 0) + whole[:64]))  # STALE
            else:
                self.send(msg(ROLE_REPLY, xid, struct.pack("!I4xQ", *answer)))
        elif mtype == FLOW_MOD:
            self._flow_mod(xid, body)
        elif mtype == EXPERIMENTER and len(body) >= 16:
            experimenter, exp_type, bid, kind, flags = struct.unpack_from("!IIIHH", body, 0)
            if (experimenter, exp_type) == (ONF, BUNDLE_ADD) and body[17] == FLOW_MOD:
                self._flow_mod(xid, body[24:])  # the inner flow-mod after its header
            elif (experimenter, exp_type) == (ONF, BUNDLE_CONTROL):
                self.bundle_requests.append(kind)
                reply = struct.pack("!IIIHH", ONF, BUNDLE_CONTROL, bid, kind + 1, flags)
                self.send(msg(EXPERIMENTER, xid, reply))
        elif mtype == MULTIPART_REQUEST:
            (mptype,) = struct.unpack_from("!H", body, 0)
            if mptype == MP_PORT_DESC:
                self.send(multipart_reply(xid, MP_PORT_DESC, b""))
            elif mptype == MP_FLOW:
                self.dump_requests += 1
                with self.bridge.lock:
                    held = sorted(self.bridge.flows)
                reply = self.dump_reply or flow_stats_reply(xid, [flow_stats(c) for c in held])
                self.send(reply[:4] + struct.pack("!I", xid) + reply[8:])

    def _flow_mod(self, xid: int, body: bytes) -> None:
        (cookie,) = struct.unpack_from("!Q", body, 0)
        whole = msg(FLOW_MOD, xid, body)
        if self.role == ROLE_SLAVE:
            self.refused.append(cookie)
            self.send(msg(ERROR, xid, struct.pack("!HH", 1, 10) + whole[:64]))  # IS_SLAVE
            return
        self.flow_mods.append((body[17], cookie))
        if self.reject is not None and self.reject(body):
            self.send(msg(ERROR, xid, struct.pack("!HH", 4, 4) + whole[:64]))  # BAD_OUT_PORT
            return
        with self.bridge.lock:
            if body[17] == FC_ADD:
                self.bridge.flows.add(cookie)
            elif body[17] == FC_DELETE:
                self.bridge.flows.discard(cookie)

    def wait(self, what: str, predicate: object, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` is true; AssertionError naming ``what`` otherwise."""
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            if time.monotonic() > deadline:
                raise AssertionError(f"switch {self.dpid:016x}: {what} not seen in {timeout} s")
            time.sleep(0.02)
