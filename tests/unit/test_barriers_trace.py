"""bench.barriers: the two legs of each barrier from trace points, windowed by the churn."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import barriers


def _write(tmp_path: Path, lines: list[str]) -> Path:
    p = tmp_path / "tp"
    p.write_text("".join(line + "\n" for line in lines))
    return p


def test_legs_are_split_at_the_fleet_and_the_window_keeps_only_the_churn(tmp_path: Path) -> None:
    tp = _write(tmp_path, [
        "10.0 1 c_barrier_out a:1", "13.0 2 f_barrier a:1", "13.5 1 c_barrier_in a:1",  # early
        "100.0 1 c_barrier_out a:2", "100.2 2 f_barrier a:2", "100.3 1 c_barrier_in a:2",
        "101.0 1 c_barrier_out b:7", "102.0 2 f_barrier b:7", "102.01 1 c_barrier_in b:7",
        "101.5 1 c_barrier_out c:9",  # never answered
        "101.6 2 f_loop_lag 700", "12.0 2 f_loop_lag 2000",
        "103.0 3 b_churn_end 102.5", "103.0 3 b_converged 0.6", "garbage",
    ])  # fmt: skip
    tr = barriers.read(tp)
    whole = barriers.summary(tr)
    assert whole["barriers"] == 3 and whole["unanswered"] == 1
    assert whole["out_to_fleet_ms"]["max"] == 3000.0  # type: ignore[index]
    churn = barriers.summary(tr, window=5.0)
    assert churn["barriers"] == 2
    assert churn["out_to_fleet_ms"] == {"n": 2, "median": 1000.0, "p90": 1000.0,
                                        "p99": 1000.0, "max": 1000.0}  # fmt: skip
    assert churn["fleet_to_controller_ms"]["max"] == 100.0  # type: ignore[index]
    assert churn["fleet_loop_lags_over_50_ms"] == {"n": 1, "max": 700, "sum_s": 0.7}


def test_a_window_without_a_churn_is_refused(tmp_path: Path) -> None:
    tr = barriers.read(_write(tmp_path, ["1.0 1 c_barrier_out a:1"]))
    with pytest.raises(ValueError, match="b_churn_end"):
        barriers.summary(tr, window=5.0)
