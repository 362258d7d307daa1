"""bench.plot: the scale chart is drawn from the results given, incomplete runs skipped."""

from __future__ import annotations

import json
import re
from pathlib import Path

from bench.plot import load, svg


def write(path: Path, switches: int, median: float | None, cpu: float = 10.0) -> Path:
    result: dict[str, object] = {"switches": switches, "endpoints_per_host": 2}
    if median is None:
        result["error"] = "TimeoutError: cold start"
    else:
        result["attach_to_ready_ms"] = {
            "median": median,
            "p99": median * 2,
            "controller_cpu_ms_per_attach": cpu,
        }
    path.write_text(json.dumps(result))
    return path


def test_runs_without_attach_figures_are_skipped(tmp_path: Path) -> None:
    paths = [
        write(tmp_path / "a.json", 300, 40.0),
        write(tmp_path / "b.json", 1000, None),
        write(tmp_path / "c.json", 100, 20.0),
    ]
    points = load(paths)
    assert [p.switches for p in points] == [100, 300]
    assert points[1].attach_p99 == 80.0


def test_the_line_joins_the_median_of_each_size(tmp_path: Path) -> None:
    paths = [
        write(tmp_path / "a.json", 100, 10.0),
        write(tmp_path / "b.json", 100, 30.0),
        write(tmp_path / "c.json", 100, 20.0),
        write(tmp_path / "d.json", 1000, 40.0),
    ]
    doc = svg(load(paths))
    assert doc.count("<circle") == 3 * 4  # median, p99 and CPU mark for every run
    lines = re.findall(r'<polyline points="([^"]+)"', doc)
    assert len(lines) == 3
    median_line = [tuple(map(float, p.split(","))) for p in lines[0].split()]
    assert len(median_line) == 2  # one vertex per cluster size
    # 20 (the median of 10, 20, 30) sits halfway up to 40, the top run.
    (_, y100), (_, y1000) = median_line
    circles = [float(y) for y in re.findall(r'<circle cx="[^"]+" cy="([^"]+)"', doc)[:4]]
    assert y1000 == min(circles)
    assert y100 in circles


def test_churn_cost_is_drawn_only_for_runs_with_a_churn(tmp_path: Path) -> None:
    paths = [write(tmp_path / "a.json", 100, 10.0), write(tmp_path / "b.json", 300, 20.0)]
    assert "churn event" not in svg(load(paths))
    churned = json.loads(paths[1].read_text())
    churned["churn"] = {"controller_cpu_ms_per_event": 7.5}
    paths[1].write_text(json.dumps(churned))
    points = load(paths)
    assert [p.cpu_per_event for p in points][1] == 7.5
    doc = svg(points)
    assert "controller CPU per churn event" in doc
    assert doc.count("<circle") == 3 * 2 + 1  # one churn mark: the run that churned
