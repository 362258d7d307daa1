"""A small fleet run: the real controller process, 50 emulated OpenFlow 1.3 switches
(``bench.fleet``), driven through the real API by ``bench.scale`` (issue 9's acceptance).

No root and no lab: the controller listens on loopback and the switches run on asyncio in a
thread (the second test: in two child processes, counters and flow counts through pipes,
as bench.scale runs them by default). The figures are
bench.scale's; this test checks only what must hold at any speed: the fill through batch
requests created every endpoint, every switch connected once (no reconnection storm),
converged, holds exactly the flows the controller believes it holds, every attach made with
the fleet connected became ready, a short churn by agent clients made events and ended
converged, and a SIGKILLed controller started again on the same database sends no flow-mod
to switches that already hold its flows (it dumps each once and converges).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bench import scale

SWITCHES, PER_HOST, ATTACHES = 50, 2, 10


def _args(**given: Any) -> argparse.Namespace:
    """bench.scale's options for a small fleet run; ``given`` sets the ones that differ."""
    return argparse.Namespace(
        switches=SWITCHES,
        endpoints_per_host=PER_HOST,
        clients=4,
        fill_batch=30,
        attaches=ATTACHES,
        churn_seconds=3.0,
        churn_clients=4,
        timeout=240.0,
        bundles="auto",
        **given,
    )


def test_fifty_switches_converge_once_each_churn_and_restart_without_flow_mods(
    tmp_path: Path,
) -> None:
    # the fleet in a thread, as before FleetProcesses (second test)
    args = _args(churn_batch=0, restart=True, fleet_processes=0)
    result: dict[str, Any] = {}
    scale.run(args, result, tmp_path)

    fill = result["populate"]
    assert fill["endpoints"] == SWITCHES * PER_HOST
    assert fill["calls"] == -(-SWITCHES * PER_HOST // 30)  # batches, not one call each
    cold = result["cold_start"]
    assert cold["connects"] == SWITCHES, "a switch connected more than once"
    assert cold["flow_mods"] > 0
    attach = result["attach_to_ready_ms"]
    assert attach["attaches"] == ATTACHES
    assert attach["not_ready_after_5_s"] == 0
    churn = result["churn"]
    assert churn["clients"] == 4
    assert churn["events"] > 0 and churn["events"] % 2 == 0  # every unbind bound again
    assert result["flow_counts_agree"], "a switch holds other flows than the controller believes"
    per_switch = result["flows_per_switch"]
    assert per_switch["min"] > 0
    # every host routes to every other host's blocks: a switch's table grows with the fleet
    assert per_switch["min"] >= SWITCHES

    restart = result["restart"]
    during = restart["fleet_during_restart"]
    assert during["connects"] == SWITCHES, "each switch reconnects once to the new process"
    assert during["dumps"] == SWITCHES, "the new process reads each switch's flows once"
    assert during["flow_mods"] == 0, "the restarted controller rewrote flows already there"
    assert during["bundle_commits"] == 0
    assert restart["flows_before_after"][0] == restart["flows_before_after"][1]
    assert restart["flow_counts_agree"]


def test_fifty_switches_in_two_processes_converge_once_each_and_agree_after_a_churn(
    tmp_path: Path,
) -> None:
    args = _args(churn_batch=PER_HOST, restart=False, fleet_processes=2)
    result: dict[str, Any] = {}
    scale.run(args, result, tmp_path)

    assert result["fleet_processes"] == 2
    cold = result["cold_start"]
    assert cold["connects"] == SWITCHES, "a switch connected more than once"
    assert cold["dumps"] == SWITCHES
    assert cold["fleet_cpu_seconds"] > 0  # the children's CPU, read from /proc by their pids
    assert result["attach_to_ready_ms"]["not_ready_after_5_s"] == 0
    churn = result["churn"]
    assert churn["events"] > 0 and churn["events"] % 2 == 0
    assert churn["fleet_cpu_seconds"] > 0
    totals = result["fleet_totals"]
    assert totals["flow_mods"] > cold["flow_mods"]  # the churn's flow-mods reached the children
    per = result["flows_per_switch"]  # the sum over both processes matches the per-switch counts
    assert SWITCHES * per["min"] <= totals["flows"] <= SWITCHES * per["max"]
    assert result["flow_counts_agree"], "a switch holds other flows than the controller believes"
    assert result["flows_per_switch"]["min"] >= SWITCHES
