"""Barrier round trips of a bench.scale run, from its trace points (``VXPLANE_TPOINTS``).

Run: ``VXPLANE_TPOINTS=/tmp/tp .venv/bin/python -m bench.scale ... && .venv/bin/python -m
bench.barriers /tmp/tp``. Each barrier (key ``dpid:xid``) has three points on one clock
(``time.monotonic``): ``c_barrier_out`` the engine queued it after its batch,
``f_barrier`` the emulated switch read it (and answered at once, bench.fleet), and
``c_barrier_in`` the controller's handler got the reply. So "out -> fleet" is the
controller's send queue, the kernel and the fleet's own backlog; "fleet -> controller" is
the controller's receive path. ``f_loop_lag`` marks where a fleet's event loop woke over 50
ms late. With ``--window S``, only barriers queued from S seconds before the churn's last
answer (``b_churn_end``) on.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Trace:
    """The points of one file."""

    out: dict[str, float] = field(default_factory=dict)
    fleet: dict[str, float] = field(default_factory=dict)
    back: dict[str, float] = field(default_factory=dict)
    loop_lags: list[tuple[float, int]] = field(default_factory=list)  # (time, ms)
    churn_end: float | None = None


def read(path: Path) -> Trace:
    """The barrier points of a trace file (other points are skipped)."""
    tr = Trace()
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) != 4:
            continue
        t, _pid, event, key = float(parts[0]), parts[1], parts[2], parts[3]
        if event == "c_barrier_out":
            tr.out[key] = t
        elif event == "f_barrier":
            tr.fleet[key] = t
        elif event == "c_barrier_in":
            tr.back[key] = t
        elif event == "f_loop_lag":
            tr.loop_lags.append((t, int(key)))
        elif event == "b_churn_end":
            tr.churn_end = float(key)
    return tr


def quantiles(values: list[float]) -> dict[str, float]:
    """Count, median, p90, p99 and max (nearest rank), in ms."""
    if not values:
        return {"n": 0}
    v = sorted(values)

    def at(q: float) -> float:
        return round(v[min(len(v) - 1, int(q * len(v)))] * 1000, 1)

    return {"n": len(v), "median": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": at(1.0)}


def summary(tr: Trace, window: float | None = None) -> dict[str, object]:
    """The two legs of every complete barrier (queued in the window), and the loop lags."""
    lo = float("-inf")
    if window is not None:
        if tr.churn_end is None:
            raise ValueError("--window needs a b_churn_end point (a bench.scale run with churn)")
        lo = tr.churn_end - window
    keys = [k for k, t in tr.out.items() if t >= lo and k in tr.fleet and k in tr.back]
    lags = [ms for t, ms in tr.loop_lags if t >= lo]
    return {
        "barriers": len(keys),
        "unanswered": sum(k not in tr.back for k, t in tr.out.items() if t >= lo),
        "out_to_fleet_ms": quantiles([tr.fleet[k] - tr.out[k] for k in keys]),
        "fleet_to_controller_ms": quantiles([tr.back[k] - tr.fleet[k] for k in keys]),
        "fleet_loop_lags_over_50_ms": {
            "n": len(lags),
            "max": max(lags, default=0),
            "sum_s": round(sum(lags) / 1000, 1),
        },  # fmt: skip
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("file", type=Path, help="the VXPLANE_TPOINTS file of a bench.scale run")
    p.add_argument("--window", type=float, help="seconds before the churn's end (default: all)")
    args = p.parse_args(argv)
    s = summary(read(args.file), args.window)
    for k, v in s.items():
        print(f"{k:28} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
