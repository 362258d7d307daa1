"""A small fleet run: the real controller process, 50 emulated OpenFlow 1.3 switches
(``bench.fleet``), driven through the real API by ``bench.scale`` (issue 9's acceptance).

No root and no lab: the controller listens on loopback and the switches are one asyncio
process. The figures are bench.scale's; this test checks only what must hold at any speed:
every switch connected once (no reconnection storm), converged, holds exactly the flows the
controller believes it holds, and every attach made with the fleet connected became ready.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import scale

SWITCHES, PER_HOST, ATTACHES = 50, 2, 10


def test_fifty_switches_converge_once_each_and_every_attach_becomes_ready(tmp_path: Path) -> None:
    args = argparse.Namespace(
        switches=SWITCHES,
        endpoints_per_host=PER_HOST,
        clients=4,
        attaches=ATTACHES,
        timeout=240.0,
        bundles="auto",
    )
    result: dict[str, Any] = {}
    scale.run(args, result, tmp_path)

    assert result["populate"]["endpoints"] == SWITCHES * PER_HOST
    cold = result["cold_start"]
    assert cold["connects"] == SWITCHES, "a switch connected more than once"
    assert cold["flow_mods"] > 0
    attach = result["attach_to_ready_ms"]
    assert attach["attaches"] == ATTACHES
    assert attach["not_ready_after_5_s"] == 0
    assert result["flow_counts_agree"], "a switch holds other flows than the controller believes"
    per_switch = result["flows_per_switch"]
    assert per_switch["min"] > 0
    # every host routes to every other host's blocks: a switch's table grows with the fleet
    assert per_switch["min"] >= SWITCHES
