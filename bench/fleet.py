"""A fleet of emulated OpenFlow 1.3 switches in one process (asyncio), for scale benchmarks.

Each ``Switch`` is one TCP connection to the controller: it says hello, answers the features
request with its dpid and the port-desc request with no ports, echoes, answers barriers (same
xid), keeps a model of its flow table from the flow-mods it gets, and answers a flow dump from
that model (split over several multipart replies with the more-flag when it does not fit in
one message). The model is keyed by (table, priority, match bytes) and holds the cookie and the
instructions; add replaces, modify rewrites the instructions, delete removes by cookie/mask,
table and match (an empty match: any; a non-empty one compared as bytes, which is what this
controller sends). When the controller closes the connection the switch keeps its table (as an
OVS bridge in secure fail mode does) and reconnects after ``reconnect_after`` seconds.

Several controllers (``Fleet(..., ports=[p1, p2, p3])``): each switch holds one connection
to each, sharing its flow table, with OpenFlow roles as OVS 3.1 does them
(../shared/ovs-facts.md, "OpenFlow roles"; tests/ofswitch.py's ``Bridge``): every connection
starts EQUAL; a MASTER or SLAVE request with a generation id older than the highest the switch
saw is answered STALE; MASTER demotes the switch's other master to SLAVE; a flow-mod or bundle
message from a SLAVE is answered IS_SLAVE and not applied.

ONF bundles (OpenFlow 1.3 extension, as OVS 3.1 keeps them): open (an id already open is an
error), bundle-add (a flow-mod is checked when it is added, as OVS decodes it then: a message
that is no flow-mod, or a bundle that is not open, is answered with an error and left out,
and the commit still applies the rest), commit (every flow-mod in order, or none if the table
would grow over ``max_flows``: the failing message's error, then the commit's), discard.
``refuse_bundles`` answers every bundle message with OFPBRC_BAD_EXPERIMENTER, as a switch
without the extension would. Errors carry the refused message's xid (a bundle-add's inner
message has the same).

``Fleet`` runs the switches on its own event loop in a background thread, so a synchronous
benchmark can drive the controller's API meanwhile. ``FleetProcesses`` deals them over K
child processes instead (each a ``Fleet``; counters and flow counts come back through a
pipe): in one thread of the benchmark's process, the fleet fell seconds behind the
controller under churn and the benchmark measured its own backlog (docs/benchmarks.md, "The
lag after a batch churn: the fleet's"). With ``VXPLANE_TPOINTS`` set (vxcommon.tpoints), a
switch marks ``f_barrier`` when it reads a barrier request (the controller marks
``c_barrier_out`` and ``c_barrier_in``), and the loop ``f_loop_lag`` when it woke over 50
ms late. Not a test double for correctness: the reference for OpenFlow semantics stays real
OVS (tests/integration).
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import struct
import threading
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any

from os_ken.ofproto import ofproto_v1_3 as ofp

from tests.ofswitch import features_reply, hello, msg, multipart_reply
from vxcommon import tpoints

ONF = 0x4F4E4600
BUNDLE_CONTROL, BUNDLE_ADD = ofp.ONF_ET_BUNDLE_CONTROL, ofp.ONF_ET_BUNDLE_ADD_MESSAGE
_CTRL = struct.Struct("!IIIHH")  # experimenter, exp_type, bundle id, type, flags (after header)

_HEAD = struct.Struct("!BBHI")
_FLOW_MOD = struct.Struct("!QQBBHHHIIIH2x")  # ofp_flow_mod after the header (40 bytes)
_STATS = struct.Struct("!HBxIIHHHH4xQQQ")  # ofp_flow_stats without match/instructions (48)
_MAX_BODY = 60_000  # flow-stats entries per reply, in bytes (a message holds at most 65,535)
_EMPTY_MATCH = struct.pack("!HH4x", ofp.OFPMT_OXM, 4)
_ROLE = struct.Struct("!I4xQ")  # role request/reply body: role, pad, generation id
SOLE = object()  # the connection of a switch that has only one controller (``handle``'s default)

FlowKey = tuple[int, int, bytes]  # (table, priority, match bytes as sent, padded)


@dataclass
class FlowEntry:
    """One flow in a switch's model."""

    cookie: int
    instructions: bytes
    idle: int = 0
    hard: int = 0
    flags: int = 0


def apply_flow_mod(table: dict[FlowKey, FlowEntry], body: bytes) -> int:
    """Apply one flow-mod (``body``: the message without its header) to ``table``; return its
    command (OFPFC_*)."""
    cookie, mask, tid, command, idle, hard, prio, _buf, _out, _group, flags = _FLOW_MOD.unpack_from(
        body, 0
    )
    (mlen,) = struct.unpack_from("!H", body, _FLOW_MOD.size + 2)
    mend = _FLOW_MOD.size + (mlen + 7) // 8 * 8
    match = bytes(body[_FLOW_MOD.size : mend])
    inst = bytes(body[mend:])
    key = (tid, prio, match)
    if command == ofp.OFPFC_ADD:
        table[key] = FlowEntry(cookie, inst, idle, hard, flags)
    elif command in (ofp.OFPFC_MODIFY, ofp.OFPFC_MODIFY_STRICT, ofp.OFPFC_DELETE,
                     ofp.OFPFC_DELETE_STRICT):  # fmt: skip
        strict = command in (ofp.OFPFC_MODIFY_STRICT, ofp.OFPFC_DELETE_STRICT)
        hits = [k for k, e in table.items() if _selects(k, e, key, cookie, mask, strict)]
        for k in hits:
            if command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
                del table[k]
            else:
                table[k].instructions = inst
    return int(command)


def _selects(k: FlowKey, e: FlowEntry, want: FlowKey, cookie: int, mask: int, strict: bool) -> bool:
    if e.cookie & mask != cookie & mask:
        return False
    if strict:
        return k == want
    tid, _prio, match = want
    if tid != ofp.OFPTT_ALL and k[0] != tid:
        return False
    return match == _EMPTY_MATCH or k[2] == match


def flow_stats_replies(xid: int, table: dict[FlowKey, FlowEntry]) -> list[bytes]:
    """The multipart replies of a full flow dump: the more-flag on all but the last."""
    bodies: list[bytes] = []
    chunk: list[bytes] = []
    size = 0
    for (tid, prio, match), e in table.items():
        length = _STATS.size + len(match) + len(e.instructions)
        head = _STATS.pack(length, tid, 0, 0, prio, e.idle, e.hard, e.flags, e.cookie, 0, 0)
        if size + length > _MAX_BODY and chunk:
            bodies.append(b"".join(chunk))
            chunk, size = [], 0
        chunk.append(head + match + e.instructions)
        size += length
    bodies.append(b"".join(chunk))
    last = len(bodies) - 1
    return [
        multipart_reply(xid, ofp.OFPMP_FLOW, b, ofp.OFPMPF_REPLY_MORE if i < last else 0)
        for i, b in enumerate(bodies)
    ]


def error(xid: int, etype: int, code: int, data: bytes) -> bytes:
    """An error message about ``data`` (the first 64 bytes of the refused message)."""
    return msg(ofp.OFPT_ERROR, xid, struct.pack("!HH", etype, code) + data[:64])


def onf_error(xid: int, exp_type: int, data: bytes) -> bytes:
    """An experimenter error of the ONF extension (``ONFERR_ET_*``)."""
    body = struct.pack("!HHI", ofp.OFPET_EXPERIMENTER, exp_type, ONF) + data[:64]
    return msg(ofp.OFPT_ERROR, xid, body)


def bundle_reply(xid: int, bundle_id: int, kind: int, flags: int) -> bytes:
    """A bundle control reply (ONF_BCT_*_REPLY)."""
    return msg(ofp.OFPT_EXPERIMENTER, xid, _CTRL.pack(ONF, BUNDLE_CONTROL, bundle_id, kind, flags))


@dataclass
class Switch:
    """One emulated switch: its dpid, flow table model and counters."""

    dpid: int
    flows: dict[FlowKey, FlowEntry] = field(default_factory=dict)
    flow_mods: int = 0
    barriers: int = 0
    dumps: int = 0
    echoes: int = 0
    connects: int = 0
    connected: bool = False
    refuse_bundles: bool = False
    max_flows: int | None = None  # a commit that would grow the table over this fails
    bundles: dict[int, list[tuple[int, bytes]]] = field(default_factory=dict)  # id -> (xid, body)
    bundle_adds: int = 0
    commits: int = 0
    discards: int = 0
    errors: int = 0
    links: int = 0  # connections open now (one per controller)
    generation: int | None = None  # the highest generation id seen in a MASTER/SLAVE request
    roles: dict[object, int] = field(default_factory=dict)  # connection -> its role
    refused_slave: int = 0  # flow-mods and bundle messages refused with IS_SLAVE
    refused_stale: int = 0  # role requests refused with STALE

    def role_of(self, conn: object) -> int:
        """The role a connection holds (EQUAL until it asked for another)."""
        return self.roles.get(conn, ofp.OFPCR_ROLE_EQUAL)

    def masters(self) -> int:
        """How many connections hold MASTER (0 or 1)."""
        return sum(r == ofp.OFPCR_ROLE_MASTER for r in self.roles.values())

    def closed(self, conn: object) -> None:
        """``conn`` is gone: it holds no role any more (OVS promotes nobody by itself)."""
        self.roles.pop(conn, None)

    def _role_request(self, conn: object, xid: int, body: bytes) -> list[bytes]:
        role, gen = _ROLE.unpack_from(body, 0)
        if role in (ofp.OFPCR_ROLE_MASTER, ofp.OFPCR_ROLE_SLAVE):
            if self.generation is not None and _signed(gen - self.generation) < 0:
                self.refused_stale += 1
                whole = msg(ofp.OFPT_ROLE_REQUEST, xid, body)
                return [error(xid, ofp.OFPET_ROLE_REQUEST_FAILED, ofp.OFPRRFC_STALE, whole)]
            self.generation = gen
        if role == ofp.OFPCR_ROLE_MASTER:
            for other, held in self.roles.items():
                if other is not conn and held == ofp.OFPCR_ROLE_MASTER:
                    self.roles[other] = ofp.OFPCR_ROLE_SLAVE
        if role != ofp.OFPCR_ROLE_NOCHANGE:
            self.roles[conn] = role
        return [msg(ofp.OFPT_ROLE_REPLY, xid, _ROLE.pack(self.role_of(conn), self.generation or 0))]

    def handle(self, mtype: int, xid: int, body: bytes, conn: object = SOLE) -> list[bytes]:
        """Apply one message from the controller on ``conn``; the messages it answers with."""
        if mtype in (ofp.OFPT_FLOW_MOD, ofp.OFPT_EXPERIMENTER) and (
            self.role_of(conn) == ofp.OFPCR_ROLE_SLAVE
        ):
            self.refused_slave += 1
            whole = msg(mtype, xid, body)
            return [error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_IS_SLAVE, whole)]
        if mtype == ofp.OFPT_FLOW_MOD:
            apply_flow_mod(self.flows, body)
            self.flow_mods += 1
        elif mtype == ofp.OFPT_BARRIER_REQUEST:
            self.barriers += 1
            if tpoints.ON:  # read (and answered) now; the controller marks c_barrier_out
                tpoints.mark("f_barrier", f"{self.dpid:x}:{xid}")
            return [msg(ofp.OFPT_BARRIER_REPLY, xid)]
        elif mtype == ofp.OFPT_ECHO_REQUEST:
            self.echoes += 1
            return [msg(ofp.OFPT_ECHO_REPLY, xid, body)]
        elif mtype == ofp.OFPT_FEATURES_REQUEST:
            self.connected = True
            return [features_reply(xid, self.dpid)]
        elif mtype == ofp.OFPT_ROLE_REQUEST:
            return self._role_request(conn, xid, body)
        elif mtype == ofp.OFPT_MULTIPART_REQUEST:
            (mptype,) = struct.unpack_from("!H", body, 0)
            if mptype == ofp.OFPMP_FLOW:
                self.dumps += 1
                return flow_stats_replies(xid, self.flows)
            if mptype == ofp.OFPMP_PORT_DESC:
                return [multipart_reply(xid, ofp.OFPMP_PORT_DESC, b"")]
        elif mtype == ofp.OFPT_EXPERIMENTER:
            out = self._experimenter(xid, body)
            self.errors += sum(m[1] == ofp.OFPT_ERROR for m in out)
            return out
        return []

    def _experimenter(self, xid: int, body: bytes) -> list[bytes]:
        whole = msg(ofp.OFPT_EXPERIMENTER, xid, body)
        if len(body) < 16:
            return [error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_LEN, whole)]
        experimenter, exp_type, bid, kind, flags = _CTRL.unpack_from(body, 0)
        if experimenter != ONF or exp_type not in (BUNDLE_CONTROL, BUNDLE_ADD):
            return [error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER, whole)]
        if self.refuse_bundles:
            return [error(xid, ofp.OFPET_BAD_REQUEST, ofp.OFPBRC_BAD_EXPERIMENTER, whole)]
        if exp_type == BUNDLE_ADD:
            return self._bundle_add(xid, bid, body[16:], whole)  # after id, pad and flags
        if kind == ofp.ONF_BCT_OPEN_REQUEST:
            if bid in self.bundles:
                return [onf_error(xid, ofp.ONFERR_ET_BUNDLE_EXIST, whole)]
            self.bundles[bid] = []
            return [bundle_reply(xid, bid, ofp.ONF_BCT_OPEN_REPLY, flags)]
        adds = self.bundles.pop(bid, None)
        if adds is None:
            return [onf_error(xid, ofp.ONFERR_ET_BAD_ID, whole)]
        if kind == ofp.ONF_BCT_DISCARD_REQUEST:
            self.discards += 1
            return [bundle_reply(xid, bid, ofp.ONF_BCT_DISCARD_REPLY, flags)]
        if kind != ofp.ONF_BCT_COMMIT_REQUEST:
            return [onf_error(xid, ofp.ONFERR_ET_BAD_TYPE, whole)]
        table = dict(self.flows)
        for inner_xid, inner in adds:
            apply_flow_mod(table, inner[8:])
            if self.max_flows is not None and len(table) > self.max_flows:
                full = error(inner_xid, ofp.OFPET_FLOW_MOD_FAILED, ofp.OFPFMFC_TABLE_FULL, inner)
                return [full, onf_error(xid, ofp.ONFERR_ET_FAILED, whole)]
        self.flows = table
        self.flow_mods += len(adds)
        self.commits += 1
        return [bundle_reply(xid, bid, ofp.ONF_BCT_COMMIT_REPLY, flags)]

    def _bundle_add(self, xid: int, bid: int, inner: bytes, whole: bytes) -> list[bytes]:
        if bid not in self.bundles:
            return [onf_error(xid, ofp.ONFERR_ET_BAD_ID, whole)]
        if len(inner) < 8 or _HEAD.unpack_from(inner)[3] != xid:
            return [onf_error(xid, ofp.ONFERR_ET_MSG_BAD_XID, whole)]
        if inner[1] != ofp.OFPT_FLOW_MOD or len(inner) < 8 + _FLOW_MOD.size + 4:
            return [onf_error(xid, ofp.ONFERR_ET_MSG_UNSUP, whole)]
        self.bundle_adds += 1
        self.bundles[bid].append((xid, inner))
        return []

    async def run(self, host: str, port: int, stop: asyncio.Event, reconnect_after: float) -> None:
        """Connect, serve the controller until it closes, reconnect; until ``stop``."""
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(host, port)
            except OSError:
                await _sleep_or_stop(stop, reconnect_after)
                continue
            self.connects += 1
            self.links += 1
            conn = object()
            try:
                writer.write(hello())
                await self._serve(reader, writer, conn)
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                self.links -= 1
                self.connected = self.links > 0
                self.closed(conn)
                writer.close()
            await _sleep_or_stop(stop, reconnect_after)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, conn: object
    ) -> None:
        while True:
            head = await reader.readexactly(8)
            _, mtype, length, xid = _HEAD.unpack(head)
            body = await reader.readexactly(length - 8) if length > 8 else b""
            out = self.handle(mtype, xid, body, conn)
            if out:
                writer.writelines(out)
            if writer.transport.get_write_buffer_size() > 1 << 20:
                await writer.drain()


def _signed(value: int) -> int:
    """A 64-bit difference of generation ids as OVS compares them (wrapping)."""
    value &= 0xFFFFFFFFFFFFFFFF
    return value - (1 << 64) if value >= 1 << 63 else value


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def _loop_lag(stop: asyncio.Event, every: float = 0.1) -> None:
    """Trace points ``f_loop_lag`` (key: the lag in ms) where the loop woke a sleep of
    ``every`` seconds more than 50 ms late: the fleet's own backlog."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        t0 = loop.time()
        await asyncio.sleep(every)
        late = loop.time() - t0 - every
        if late > 0.05:
            tpoints.mark("f_loop_lag", f"{late * 1000:.0f}")


class Fleet:
    """``switches`` connecting to ``host:port`` (or to each of ``ports``: one connection per
    controller) from one background event loop."""

    def __init__(
        self,
        host: str,
        port: int,
        dpids: list[int],
        reconnect_after: float = 1.0,
        ports: list[int] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.ports = list(ports) if ports else [port]
        self.switches = [Switch(d) for d in dpids]
        self.reconnect_after = reconnect_after
        self._loop = asyncio.new_event_loop()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="fleet", daemon=True)
        self._started = threading.Event()

    def start(self) -> Fleet:
        """Start every switch connecting (returns at once)."""
        self._thread.start()
        self._started.wait(10)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and end the loop's thread."""
        if self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _main(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._run())
        finally:
            self._loop.close()

    async def _run(self) -> None:
        self._stop = asyncio.Event()
        self._started.set()
        tasks = [
            asyncio.create_task(s.run(self.host, port, self._stop, self.reconnect_after))
            for s in self.switches
            for port in self.ports
        ]
        if tpoints.ON:
            tasks.append(asyncio.create_task(_loop_lag(self._stop)))
        await self._stop.wait()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def connected(self) -> int:
        """How many switches are past the handshake now."""
        return sum(s.connected for s in self.switches)

    def flow_counts(self) -> dict[int, int]:
        """Each switch's flows in its model now, by dpid."""
        return {s.dpid: len(s.flows) for s in self.switches}

    def totals(self) -> dict[str, int]:
        """Counters summed over the fleet."""
        return {
            "flow_mods": sum(s.flow_mods for s in self.switches),
            "barriers": sum(s.barriers for s in self.switches),
            "dumps": sum(s.dumps for s in self.switches),
            "echoes": sum(s.echoes for s in self.switches),
            "connects": sum(s.connects for s in self.switches),
            "flows": sum(len(s.flows) for s in self.switches),
            "bundle_commits": sum(s.commits for s in self.switches),
            "bundle_discards": sum(s.discards for s in self.switches),
            "errors": sum(s.errors for s in self.switches),
            "refused_is_slave": sum(s.refused_slave for s in self.switches),
            "refused_stale": sum(s.refused_stale for s in self.switches),
        }


def _fleet_main(
    host: str, ports: list[int], dpids: list[int], reconnect_after: float, conn: Connection
) -> None:
    """One process of a ``FleetProcesses``: its share of the switches (a ``Fleet``), and
    answers to the parent's questions on ``conn`` until ``stop``."""
    fleet = Fleet(host, ports[0], dpids, reconnect_after, ports).start()
    try:
        while True:
            ask = conn.recv()
            if ask == "connected":
                conn.send(fleet.connected())
            elif ask == "totals":
                conn.send(fleet.totals())
            elif ask == "flow_counts":
                conn.send({s.dpid: len(s.flows) for s in fleet.switches})
            elif ask == "stop":
                break
    except EOFError:  # the parent is gone
        pass
    finally:
        fleet.stop()
        try:
            conn.send("stopped")
        except OSError:
            pass


class FleetProcesses:
    """A ``Fleet`` split over ``processes`` child processes (dpids dealt in turn), so that
    parsing the controller's flow-mods costs the benchmark's own process nothing: a
    benchmark measures the controller, not the GIL of its own process (docs/benchmarks.md,
    "The lag after a batch churn"). The counters and each switch's flow count come back
    through a pipe per process; the switches' tables stay in the children."""

    def __init__(
        self,
        host: str,
        port: int,
        dpids: list[int],
        processes: int = 2,
        reconnect_after: float = 1.0,
        ports: list[int] | None = None,
    ) -> None:
        ctx = mp.get_context("spawn")
        k = max(1, min(processes, len(dpids)))
        self._pipes: list[Connection] = []
        self._procs: list[BaseProcess] = []
        for i in range(k):
            mine, theirs = ctx.Pipe()
            share = dpids[i::k]
            args = (host, list(ports) if ports else [port], share, reconnect_after, theirs)
            self._procs.append(ctx.Process(target=_fleet_main, args=args, name=f"fleet-{i}"))
            self._pipes.append(mine)

    def start(self) -> FleetProcesses:
        """Start every process (returns once each has started its switches)."""
        for p in self._procs:
            p.start()
        return self

    def _ask(self, what: str) -> list[Any]:
        for c in self._pipes:
            c.send(what)
        return [c.recv() for c in self._pipes]

    def connected(self) -> int:
        """How many switches are past the handshake now."""
        return sum(self._ask("connected"))

    def totals(self) -> dict[str, int]:
        """Counters summed over every process's switches."""
        out: dict[str, int] = {}
        for part in self._ask("totals"):
            for k, v in part.items():
                out[k] = out.get(k, 0) + v
        return out

    def flow_counts(self) -> dict[int, int]:
        """Each switch's flows in its model now, by dpid."""
        out: dict[int, int] = {}
        for part in self._ask("flow_counts"):
            out.update(part)
        return out

    def stop(self, timeout: float = 10.0) -> None:
        """Close every connection and end the processes (by their own pids)."""
        for c, p in zip(self._pipes, self._procs, strict=True):
            if not p.is_alive():
                continue
            try:
                c.send("stop")
                if c.poll(timeout):
                    c.recv()
            except (OSError, EOFError):
                pass
        for p in self._procs:
            if p.pid is None:
                continue
            p.join(timeout)
            if p.is_alive():
                p.kill()
                p.join(timeout)
        for c in self._pipes:
            c.close()

    def pids(self) -> list[int]:
        """The processes' pids (for their CPU time)."""
        return [p.pid for p in self._procs if p.pid is not None]
