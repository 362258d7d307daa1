"""Plot bench.scale results against cluster size: attach-to-ready and per-change cost.

Run: ``.venv/bin/python -m bench.plot bench/results/scale-*.json -o docs/scale.png``

Each input is one ``python -m bench.scale`` result. Two panels, cluster size (switches) on a
logarithmic x axis: attach-to-ready median and p99 (ms), and the controller's CPU per attach
(ms, the per-change cost: flat means a change costs the same whatever the cluster's size),
and, for runs with a churn, the controller's CPU per churn event (one bind or unbind).
Several results for one size are all drawn (one mark each) and the line joins their medians,
so a noisy run shows as spread instead of being averaged away.

The chart is SVG written here (no plotting library to install); ``-o x.png`` renders it to PNG
with Debian's chromium through Playwright, the same browser the dashboard tests use
(``VXPLANE_CHROMIUM`` overrides its path). ``-o x.svg`` writes the SVG only.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from pathlib import Path

CHROMIUM = os.environ.get("VXPLANE_CHROMIUM", "/usr/bin/chromium")
W, H = 900, 400  # whole chart
PANEL_W, PANEL_H = 360, 260
MARGIN_L, MARGIN_T = 70, 60
GAP = 90


@dataclass(frozen=True)
class Point:
    """One bench.scale run, reduced to what the chart shows."""

    switches: int
    endpoints_per_host: int
    attach_median: float
    attach_p99: float
    cpu_per_attach: float
    label: str
    cpu_per_event: float = math.nan  # controller CPU per churn event (bind or unbind), if run


def load(paths: Sequence[Path]) -> list[Point]:
    """The runs in ``paths`` that measured attaches (a failed run without them is skipped,
    and said so on stderr)."""
    points = []
    for path in paths:
        r = json.loads(path.read_text())
        a = r.get("attach_to_ready_ms")
        if not a or "median" not in a:
            print(f"{path}: no attach figures ({r.get('error', 'incomplete run')}), skipped",
                  file=sys.stderr)  # fmt: skip
            continue
        points.append(
            Point(
                switches=int(r["switches"]),
                endpoints_per_host=int(r["endpoints_per_host"]),
                attach_median=float(a["median"]),
                attach_p99=float(a["p99"]),
                cpu_per_attach=float(a.get("controller_cpu_ms_per_attach", math.nan)),
                label=r.get("label", ""),
                cpu_per_event=float(
                    (r.get("churn") or {}).get("controller_cpu_ms_per_event", math.nan)
                ),
            )
        )
    return sorted(points, key=lambda p: (p.switches, p.endpoints_per_host))


def _ticks(top: float) -> list[float]:
    """About five round ticks from 0 to at least ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 5
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(math.ceil(top / step) + 1)]


def _panel(
    x0: float, title: str, unit: str, series: list[tuple[str, str, list[tuple[int, float]]]]
) -> list[str]:
    """One panel: ``series`` is (name, colour, [(switches, value)...])."""
    xs = sorted({s for _, _, pts in series for s, _ in pts})
    values = [v for _, _, pts in series for _, v in pts if not math.isnan(v)]
    yt = _ticks(max(values) if values else 1.0)
    lo, hi = math.log10(min(xs)), math.log10(max(xs))
    span = hi - lo or 1.0

    def px(s: int) -> float:
        return x0 + (math.log10(s) - lo) / span * PANEL_W if hi > lo else x0 + PANEL_W / 2

    def py(v: float) -> float:
        return MARGIN_T + PANEL_H - v / yt[-1] * PANEL_H

    out = [
        f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_T - 20}" text-anchor="middle" '
        f'font-weight="bold">{escape(title)}</text>',
        f'<rect x="{x0}" y="{MARGIN_T}" width="{PANEL_W}" height="{PANEL_H}" fill="none" '
        'stroke="#999"/>',
    ]
    for t in yt:
        y = py(t)
        out.append(f'<line x1="{x0}" x2="{x0 + PANEL_W}" y1="{y}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 6}" y="{y + 4}" text-anchor="end">{t:g}</text>')
    for s in xs:
        out.append(
            f'<text x="{px(s)}" y="{MARGIN_T + PANEL_H + 18}" text-anchor="middle">{s}</text>'
        )
    out.append(
        f'<text x="{x0 + PANEL_W / 2}" y="{MARGIN_T + PANEL_H + 40}" text-anchor="middle">'
        "switches (hosts), log scale</text>"
    )
    out.append(
        f'<text x="{x0 - 50}" y="{MARGIN_T + PANEL_H / 2}" text-anchor="middle" '
        f'transform="rotate(-90 {x0 - 50} {MARGIN_T + PANEL_H / 2})">{escape(unit)}</text>'
    )
    for k, (name, colour, pts) in enumerate(series):
        pts = [(s, v) for s, v in pts if not math.isnan(v)]
        for s, v in pts:
            out.append(f'<circle cx="{px(s)}" cy="{py(v)}" r="3" fill="{colour}"/>')
        sizes = sorted({s for s, _ in pts})
        med = [(s, statistics.median(v for t, v in pts if t == s)) for s in sizes]
        path = " ".join(f"{px(s):.1f},{py(v):.1f}" for s, v in med)
        out.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = MARGIN_T + 14 + 16 * k
        out.append(f'<line x1="{x0 + 10}" x2="{x0 + 30}" y1="{ly - 4}" y2="{ly - 4}" '
                   f'stroke="{colour}" stroke-width="2"/>')  # fmt: skip
        out.append(f'<text x="{x0 + 36}" y="{ly}">{escape(name)}</text>')
    return out


def svg(points: list[Point], subtitle: str = "") -> str:
    """The two-panel chart as an SVG document."""
    attach = [
        ("median", "#1f77b4", [(p.switches, p.attach_median) for p in points]),
        ("p99", "#d62728", [(p.switches, p.attach_p99) for p in points]),
    ]
    cpu = [(p.switches, p.cpu_per_attach) for p in points]
    cost = [("controller CPU per attach", "#2ca02c", cpu)]
    churn = [(p.switches, p.cpu_per_event) for p in points if not math.isnan(p.cpu_per_event)]
    if churn:
        cost.append(("controller CPU per churn event", "#9467bd", churn))
    body = [
        f'<rect width="{W}" height="{H}" fill="white"/>',
        *_panel(MARGIN_L, "attach to ready", "ms", attach),
        *_panel(MARGIN_L + PANEL_W + GAP, "cost of one change", "controller CPU ms", cost),
    ]
    if subtitle:
        body.append(f'<text x="{W / 2}" y="{H - 8}" text-anchor="middle" fill="#555">'
                    f"{escape(subtitle)}</text>")  # fmt: skip
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
        'font-family="sans-serif" font-size="12">' + "".join(body) + "</svg>\n"
    )


def render_png(doc: str, out: Path) -> None:
    """Render ``doc`` (SVG) to ``out`` with headless chromium."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": W, "height": H})
            page.set_content(f"<html><body style='margin:0'>{doc}</body></html>")
            page.screenshot(path=str(out), clip={"x": 0, "y": 0, "width": W, "height": H})
        finally:
            browser.close()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("results", nargs="+", type=Path, help="bench.scale result JSON files")
    p.add_argument("-o", "--output", type=Path, required=True, help="x.png or x.svg")
    p.add_argument("--subtitle", default="", help="a line under the chart (machine, database)")
    args = p.parse_args(argv)
    points = load(args.results)
    if not points:
        print("no result with attach figures", file=sys.stderr)
        return 2
    doc = svg(points, args.subtitle)
    if args.output.suffix == ".svg":
        args.output.write_text(doc)
    else:
        render_png(doc, args.output)
    for pt in points:
        print(
            f"{pt.switches:>5} switches x {pt.endpoints_per_host}: attach median "
            f"{pt.attach_median} ms, p99 {pt.attach_p99} ms, CPU/attach {pt.cpu_per_attach} ms, "
            f"CPU/churn event {pt.cpu_per_event} ms"
        )
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
