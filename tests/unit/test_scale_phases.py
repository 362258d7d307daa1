"""bench.scale's per-phase VmRSS: each sample counted in the phase it fell in."""

from __future__ import annotations

from typing import Any

from bench.scale import RssSampler


def test_phases_split_the_samples_at_the_marks() -> None:
    ctl: Any = object()  # never started: only its samples are read
    s = RssSampler(ctl)
    s.t0 = 1000.0
    s.samples = [(0.5, 100 << 10), (1.5, 300 << 10), (2.5, 200 << 10), (3.5, 250 << 10)]
    got = s.phases([("register", 1001.0), ("fill", 1003.0), ("idle", 1003.2), ("cold", 1004.0)])
    assert got == {
        "register": {"seconds": 1.0, "peak_vmrss_mib": 100.0, "last_vmrss_mib": 100.0},
        "fill": {"seconds": 2.0, "peak_vmrss_mib": 300.0, "last_vmrss_mib": 200.0},
        # "idle" had no sample: left out
        "cold": {"seconds": 0.8, "peak_vmrss_mib": 250.0, "last_vmrss_mib": 250.0},
    }
