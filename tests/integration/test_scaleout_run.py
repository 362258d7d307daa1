"""A small scale-out run: three real controller processes on a PostgreSQL server started for
the test, 12 emulated switches (``bench.fleet``) each connected to all three, driven through
the three APIs by ``bench.scaleout`` (issue 10's scale-out figure, at a size for ``make test``).

No root and no lab. The figures are bench.scaleout's; this test checks only what must hold at
any speed: the switches are spread evenly over the controllers, each switch has one master
and took flows from no other (no IS_SLAVE, no STALE at the switch), only masters dumped,
every master's flow count equals the switch's table, every attach became ready through its
master's API and through another's, and every controller saw the churn converge.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from bench import scaleout
from tests.conftest import require
from tests.db.conftest import INSTALL_HINT, find_pg_bindir

pytestmark = [pytest.mark.postgres, pytest.mark.timeout(600)]

SWITCHES, CONTROLLERS = 12, 3


def test_three_controllers_share_the_fleet_and_only_masters_write(tmp_path: Path) -> None:
    require(None if find_pg_bindir() is not None else INSTALL_HINT, "the scale-out run")
    args = argparse.Namespace(
        switches=SWITCHES, endpoints_per_host=2, attaches=6, clients=3, churn_endpoints=4,
        seconds=3.0, timeout=240.0, batch=0,
    )  # fmt: skip
    run = scaleout.run_one(CONTROLLERS, args, tmp_path)

    cold = run["cold_start"]
    assert cold["switches_per_controller"] == [SWITCHES // CONTROLLERS] * CONTROLLERS
    assert cold["connects"] == SWITCHES * CONTROLLERS, "a switch connected more than once"
    assert cold["dumps"] == SWITCHES, "a flow dump from a controller that is not the master"
    totals = run["fleet_totals"]
    assert totals["refused_is_slave"] == 0 and totals["refused_stale"] == 0
    assert run["flow_counts_agree"], run["flow_count_problems"]
    attach = run["attach_to_ready_ms"]
    assert attach["not_ready_after_5_s"] == 0
    assert attach["through_the_master"]["attaches"] == 3
    assert attach["through_another"]["attaches"] == 3
    assert run["churn"]["events"] > 0
