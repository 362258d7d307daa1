"""What an ONF bundle costs the controller: encoding one batch as plain flow-mods or as one
bundle (open, bundle-adds, barrier), in CPU time and bytes. No switch, no root.

Run: ``.venv/bin/python -m bench.bundles`` (``--flows 2000 --runs 30``). Prints JSON: the
median and p90 time to encode the batch (``Engine._encode``, the same code the engine runs,
flow-mods served from ``ofmsg``'s cache after the first run, as in a live controller) and
the bytes on the wire, for each mode, and their ratios. What the switch spends applying a
bundle is measured against real OVS in /work/shared/ovs-facts.md (section 3), what a fleet of
emulated switches costs the controller by ``bench.scale --bundles always|never``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from controller.engine import Engine, _Switch
from controller.flows import Flow, Output, SetField
from controller.reconcile import Changes


class _NoConn:
    dpid, address, peer_name = 1, "bench", None


def flows(n: int) -> tuple[Flow, ...]:
    """``n`` distinct flows shaped like the pipeline's (a match, a set-field, an output)."""
    return tuple(
        Flow(
            table=30,
            priority=100,
            match=(
                ("eth_type", 0x0800),
                ("metadata", i % 50),
                ("ipv4_dst", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"),
            ),
            actions=(
                SetField("eth_dst", f"0a:58:0a:00:{i >> 8 & 255:02x}:{i & 255:02x}"),
                Output(2 + i % 200),
            ),
            cookie=0x1000 + i,
        )
        for i in range(n)
    )


def measure(mode: str, batch: Changes, runs: int) -> dict[str, Any]:
    engine = Engine(lambda: None, lambda s: None, lambda s: 0, lambda s, r: 0, bundles=mode)  # type: ignore[arg-type, return-value]
    times: list[float] = []
    size = 0
    for _ in range(runs):
        sw = _Switch(conn=_NoConn())  # type: ignore[arg-type]
        t0 = time.perf_counter()
        chunks, _xid, _sent = engine._encode(sw, batch)
        times.append(time.perf_counter() - t0)
        size = sum(len(c) for c in chunks)
    times.sort()
    return {
        "median_ms": round(statistics.median(times) * 1000, 3),
        "p90_ms": round(times[int(0.9 * (len(times) - 1))] * 1000, 3),
        "bytes": size,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--flows", type=int, default=2000, help="adds in the batch")
    p.add_argument("--runs", type=int, default=30)
    args = p.parse_args(argv)
    batch = Changes(adds=flows(args.flows))
    measure("never", batch, 1)  # fills ofmsg's cache of packed flow-mods
    plain = measure("never", batch, args.runs)
    bundle = measure("always", batch, args.runs)
    out = {
        "flows": args.flows,
        "runs": args.runs,
        "plain": plain,
        "bundle": bundle,
        "time_ratio": round(bundle["median_ms"] / plain["median_ms"], 2),
        "bytes_ratio": round(bundle["bytes"] / plain["bytes"], 3),
    }
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
