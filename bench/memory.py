"""Where the controller's memory goes at scale: the engine's per-switch state, in one process.

No HTTP, no database, no sockets: ``.venv/bin/python -m bench.memory --hosts 1000
--endpoints-per-host 10 [--trace]``. Builds the intent of a cluster (one network, one block
per host, E endpoints bound on each host: about 2 flows per host in the cluster plus 4 per
local endpoint, as ``bench.scale`` fills), then drives the real ``Engine`` through what the
controller does with a fleet:

1. ``adopt``: the first full read; every host's desired flows computed (``_Gen.desired``).
2. ``cold start``: every switch connects with an empty table (dump of nothing), one pass
   sends every switch its whole table (to connections that drop the bytes), every barrier
   is answered: the switches are converged.
3. ``change``: one endpoint more on host 0 (a patch of its desired flows), one pass, barrier.
4. ``restart``: a second engine on the same intent; every switch connects, and those the
   engine asks for their flows (at most ``--max-dumps`` at a time, the engine's
   ``MAX_DUMPS`` by default) dump the cookies they hold (fresh int objects, as parsed from
   the wire) in two parts, every asked switch's first part before any second part
   (``dumping``: the first round's halves received); each second part lets the engine ask
   the next switches, answered the same way until every switch is dumped; one pass
   (nothing to send), converged. ``--max-dumps`` at the number of hosts or more: every
   switch dumps at once (the engine before the bound).

After each phase: ``tracemalloc``'s current and peak bytes (``--trace``; slower, and it
adds its own memory to the RSS), the process's VmRSS and VmHWM, and the bytes of the
per-switch containers: desired tuples (``_Gen.desired``), installed models
(``_Switch.installed``, with the cookie ints only they hold), in-flight batches. Bytes per
flow are those divided by hosts x flows per host. The flow values themselves (memoized by
``pipeline``, shared by every switch that holds them) are counted apart.
"""

from __future__ import annotations

import argparse
import gc
import json
import struct
import sys
import time
import tracemalloc
from array import array
from collections.abc import Iterator
from functools import lru_cache
from ipaddress import IPv4Address, IPv4Network
from typing import Any

from controller import ofmsg
from controller.engine import MAX_DUMPS, Engine
from controller.flows import Flow
from controller.model import Block, Endpoint, EndpointState, Host, Network, Snapshot, mac_for_ip

OFPT_BARRIER_REQUEST = 20
BLOCK_PREFIX = 26  # 64 addresses a block: one block per host up to 61 endpoints


def cluster(hosts: int, per_host: int, revision: int = 1) -> Snapshot:
    """One network over ``hosts`` hosts, one block each, ``per_host`` bound endpoints each."""
    net = Network("n", 42, IPv4Network("10.0.0.0/8"), IPv4Address("10.0.0.1"), BLOCK_PREFIX)
    hs: dict[str, Host] = {}
    blocks: list[Block] = []
    eps: list[Endpoint] = []
    size = 1 << (32 - BLOCK_PREFIX)
    base = int(net.subnet.network_address)
    for h in range(hosts):
        name = f"h{h}"
        hs[name] = Host(name, IPv4Address(0xC6120000 + h + 1), dpid=h + 1)
        first = base + (h + 1) * size  # block 0 holds the gateway
        blocks.append(Block("n", IPv4Network(f"{IPv4Address(first)}/{BLOCK_PREFIX}"), name))
        for e in range(per_host):
            ip = IPv4Address(first + 2 + e)
            eps.append(
                Endpoint("n", f"e{h}-{e}", ip, mac_for_ip(ip), name, 10 + e, EndpointState.READY, 1)
            )
    return Snapshot(revision, {"n": net}, hs, tuple(blocks), tuple(eps))


class Conn:
    """A switch connection that drops what it is sent and keeps its last barrier's xid."""

    def __init__(self, dpid: int) -> None:
        self.dpid = dpid
        self.address = "198.18.0.1:6653"
        self.peer_name: str | None = None
        self.sent = 0
        self.barrier: int | None = None
        self.dumps = 0

    def send(self, data: bytes) -> bool:
        self.sent += len(data)
        if len(data) >= 8 and data[-8 + 1] == OFPT_BARRIER_REQUEST:
            (self.barrier,) = struct.unpack_from("!I", data, len(data) - 4)
        return True

    def congested(self) -> bool:
        return False

    def request_flow_dump(self) -> None:
        self.dumps += 1

    def missed_echo(self) -> bool:
        return False

    def close(self) -> None:
        pass


class _Session:
    def __enter__(self) -> _Session:
        return self

    def __exit__(self, *a: object) -> None:
        pass

    def commit(self) -> None:
        pass


def make_engine(snap: Snapshot, max_dumps: int = MAX_DUMPS) -> Engine:
    return Engine(
        _Session,  # type: ignore[arg-type]
        lambda _s: snap,
        lambda _s: snap.revision,
        lambda _s, revs: 0,
        bundles="never",
        max_dumps=max_dumps,
    )


def answer_barriers(engine: Engine, conns: list[Conn]) -> None:
    for c in conns:
        if c.barrier is not None:
            xid, c.barrier = c.barrier, None
            engine.barrier_reply(c.dpid, xid)


def rss() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) // 1024  # MiB
    return out


def _installed_of(engine: Engine) -> Iterator[Any]:
    yield from engine._switches.values()  # noqa: SLF001 - a measurement of the internals


def containers(engine: Engine) -> dict[str, int]:
    """Bytes of the per-switch containers (not the flow values they point at)."""
    desired = flows = 0
    for gen in engine._gens.values():  # noqa: SLF001
        if gen.desired is not None:
            desired += sys.getsizeof(gen.desired)
            flows += len(gen.desired)
    installed = own_ints = batches = dumps = 0
    for sw in _installed_of(engine):
        inst = sw.installed
        installed += _model_bytes(inst)
        own = engine._gens.get(sw.host)  # noqa: SLF001
        shared = {id(f.cookie) for f in own.desired} if own and own.desired else set()
        for c in _cookies(inst):
            if id(c) not in shared:
                own_ints += sys.getsizeof(c)
        for batch in sw.batches.values():
            batches += _deep(batch)
        dumps += sys.getsizeof(sw.dump)  # an array holds its cookies in its buffer
        if not isinstance(sw.dump, array):
            dumps += sum(sys.getsizeof(c) for c in sw.dump)
    return {
        "flows": flows,
        "desired_bytes": desired,
        "installed_bytes": installed,
        "installed_own_cookie_bytes": own_ints,
        "inflight_batch_bytes": batches,
        "dump_bytes": dumps,
    }


def _model_bytes(inst: object) -> int:
    """Bytes of an installed model itself (a dict, or a view sharing a desired tuple)."""
    size = getattr(inst, "nbytes", None)
    return int(size()) if callable(size) else sys.getsizeof(inst)


def _cookies(inst: Any) -> Iterator[int]:
    yield from inst  # a mapping: its keys


def _deep(obj: Any) -> int:
    size = sys.getsizeof(obj)
    if isinstance(obj, dict):
        size += sum(sys.getsizeof(k) + _deep(v) for k, v in obj.items())
    elif isinstance(obj, tuple | list):
        size += sum(_deep(v) for v in obj if not isinstance(v, Flow))
    elif hasattr(obj, "__slots__"):
        for name in obj.__slots__:
            v = getattr(obj, name, None)
            if v is not None and not isinstance(v, Flow | int):
                size += _deep(v)
    return size


def flow_values(engine: Engine) -> dict[str, int]:
    """Distinct flow values the desired models point at, and their bytes (deep, shared
    parts counted once)."""
    seen: set[int] = set()
    total = 0
    count = 0

    def walk(obj: Any) -> int:
        if id(obj) in seen or obj is None or isinstance(obj, bool):
            return 0
        seen.add(id(obj))
        size = sys.getsizeof(obj)
        if isinstance(obj, tuple):
            size += sum(walk(v) for v in obj)
        elif hasattr(obj, "__slots__"):
            size += sum(walk(getattr(obj, n)) for n in _slots(type(obj)))
        return size

    for gen in engine._gens.values():  # noqa: SLF001
        for f in gen.desired or ():
            if id(f) not in seen:
                count += 1
                total += walk(f)
    return {"flow_values": count, "flow_value_bytes": total}


def _slots(cls: type) -> list[str]:
    out: list[str] = []
    for c in cls.__mro__:
        out.extend(getattr(c, "__slots__", ()))
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--endpoints-per-host", type=int, default=10)
    p.add_argument("--trace", action="store_true", help="tracemalloc current/peak per phase")
    p.add_argument("--json", help="write the figures here as JSON")
    p.add_argument(
        "--max-dumps",
        type=int,
        default=MAX_DUMPS,
        help="the restarted engine's dumps under way at once (>= hosts: all at once)",
    )
    p.add_argument(
        "--add-cache", type=int, default=None, help="entries of ofmsg's flow-mod cache (a trial)"
    )
    args = p.parse_args(argv)
    if args.add_cache is not None:
        ofmsg._flow_add_bytes = lru_cache(args.add_cache)(ofmsg._flow_add_bytes.__wrapped__)  # noqa: SLF001
    if args.trace:
        tracemalloc.start()
    report: dict[str, Any] = {
        "hosts": args.hosts,
        "endpoints_per_host": args.endpoints_per_host,
        "max_dumps": args.max_dumps,
    }

    def phase(name: str, engine: Engine, t0: float) -> None:
        gc.collect()
        row: dict[str, Any] = {"seconds": round(time.perf_counter() - t0, 2), **rss()}
        if args.trace:
            cur, peak = tracemalloc.get_traced_memory()
            row["traced_mib"], row["traced_peak_mib"] = cur >> 20, peak >> 20
            tracemalloc.reset_peak()
        row.update(containers(engine))
        n = max(row["flows"], 1)
        row["desired_bytes_per_flow"] = round(row["desired_bytes"] / n, 1)
        row["installed_bytes_per_flow"] = round(
            (row["installed_bytes"] + row["installed_own_cookie_bytes"]) / n, 1
        )
        report[name] = row
        traced = ""
        if args.trace:
            traced = f" traced {row['traced_mib']} MiB (peak {row['traced_peak_mib']})"
        installed = (row["installed_bytes"] + row["installed_own_cookie_bytes"]) >> 20
        print(
            f"{name:<11} {row['seconds']:>6.1f} s  RSS {row['VmRSS']:>5} MiB"
            f" HWM {row['VmHWM']:>5} MiB{traced}"
            f"  desired {row['desired_bytes'] >> 20} MiB ({row['desired_bytes_per_flow']} B/flow)"
            f"  installed {installed} MiB ({row['installed_bytes_per_flow']} B/flow)"
            f"  in flight {row['inflight_batch_bytes'] >> 20} MiB"
            f"  dumps {row['dump_bytes'] >> 20} MiB",
            flush=True,
        )

    t0 = time.perf_counter()
    snap = cluster(args.hosts, args.endpoints_per_host)
    engine = make_engine(snap)
    engine.sync_all(snap)
    phase("adopt", engine, t0)
    report["flows_per_switch"] = len(engine._gens["h0"].desired or ())  # noqa: SLF001
    report.update(flow_values(engine))
    print(
        f"flows per switch {report['flows_per_switch']}; distinct flow values "
        f"{report['flow_values']}, {report['flow_value_bytes'] >> 20} MiB "
        f"({report['flow_value_bytes'] // max(report['flow_values'], 1)} B each)",
        flush=True,
    )

    t0 = time.perf_counter()
    conns = [Conn(h.dpid or 0) for h in snap.hosts.values()]
    for c in conns:
        engine.switch_connected(c)
        engine.switch_dump(c.dpid, [], False)
    engine.push()
    answer_barriers(engine, conns)
    phase("cold start", engine, t0)

    t0 = time.perf_counter()
    net = snap.networks["n"]
    first = snap.blocks[0].cidr.network_address
    ip = IPv4Address(int(first) + 60)
    ep = Endpoint("n", "extra", ip, mac_for_ip(ip), "h0", 99, EndpointState.PENDING, 2)
    changed = Snapshot(2, {"n": net}, snap.hosts, snap.blocks, (*snap.endpoints, ep))
    engine.sync_all(changed)
    answer_barriers(engine, conns)
    phase("change", engine, t0)

    t0 = time.perf_counter()
    held = {c.dpid: [f.cookie for f in engine._gens[f"h{c.dpid - 1}"].desired or ()] for c in conns}  # noqa: SLF001
    del engine
    gc.collect()
    restarted = make_engine(changed, args.max_dumps)
    restarted.sync_all(changed)
    for c in conns:
        c.barrier = None
        c.dumps = 0
        restarted.switch_connected(c)
    answered: dict[int, int] = {}
    rounds = 0
    while asked := [c for c in conns if c.dumps > answered.get(c.dpid, 0)]:
        for part in (0, 1):  # every asked switch sends half its dump, then the other half
            for c in asked:
                cookies = held[c.dpid]
                half = cookies[: len(cookies) // 2] if part == 0 else cookies[len(cookies) // 2 :]
                # fresh ints, as the parser makes them from the wire
                fresh = [int.from_bytes(x.to_bytes(8, "big"), "big") for x in half]
                if part == 1:
                    answered[c.dpid] = c.dumps
                restarted.switch_dump(c.dpid, fresh, more=part == 0)
            if part == 0 and rounds == 0:
                phase("dumping", restarted, t0)
        rounds += 1
    report["dump_rounds"] = rounds
    report["dumps_peak"] = restarted.dumps_peak
    report["dumps"] = sum(c.dumps for c in conns)
    held.clear()
    restarted.push()
    answer_barriers(restarted, conns)
    phase("restart", restarted, t0)
    sent = sum(c.sent for c in conns)
    report["bytes_sent"] = sent
    print(f"bytes sent to the switches in all: {sent >> 20} MiB")
    print(
        f"restart: {report['dumps']} dumps, at most {report['dumps_peak']} under way, "
        f"{report['dump_rounds']} rounds"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
