"""Trace points (vxcommon/tpoints.py) and their merge into one timeline (bench/timeline.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench import timeline
from vxcommon import tpoints

ROOT = Path(__file__).resolve().parents[2]


def test_off_unless_the_environment_names_a_file(tmp_path: Path) -> None:
    out = tmp_path / "tp"
    code = "from vxcommon.tpoints import mark; mark('b_request', 'e1')"
    env = {k: v for k, v in os.environ.items() if k != "VXPLANE_TPOINTS"}
    env["PYTHONPATH"] = str(ROOT)
    subprocess.run([sys.executable, "-c", code], env=env, check=True, cwd=tmp_path)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_processes_merge_into_one_timeline_per_attach(tmp_path: Path) -> None:
    """Two processes mark points of two attaches on the one clock; the timeline orders the
    points by their median time since each attach's request."""
    out = tmp_path / "tp"
    env = {**os.environ, "VXPLANE_TPOINTS": str(out), "PYTHONPATH": str(ROOT)}
    bench = (
        "import time; from vxcommon.tpoints import mark\n"
        "for k in ('e1', 'e2'):\n"
        "    mark('b_request', k)\n"
        "    time.sleep(0.002)\n"
    )
    agent = "from vxcommon.tpoints import mark\nfor k in ('e1', 'e2'): mark('a_answer', k)\n"
    for code in (bench, agent):  # the agent's points come after the bench's, per attach
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
    lines = out.read_text().splitlines()
    assert len(lines) == 4 and len({line.split()[1] for line in lines}) == 2  # two pids
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    per = timeline.read(out)
    rows = timeline.timeline(per)
    assert [r[0] for r in rows] == ["b_request", "a_answer"]
    assert rows[0][1] == 0 and rows[1][1] > 0 and rows[1][3] == 2
    [(a, b, med)] = timeline.steps(per, ["b_request", "a_answer"])
    assert (a, b) == ("b_request", "a_answer") and med == rows[1][1]


def test_mark_is_a_no_op_when_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tpoints, "PATH", None)
    monkeypatch.setattr(tpoints, "_fd", None)
    tpoints.mark("b_request", "e1")
    assert tpoints._fd is None
