"""Cost of one ``vxplane-cni`` exec: interpreter start, imports, VERSION, and ADD minus the agent.

Run ``.venv/bin/python -m bench.cni`` (as root for ADD; ``--skip-add`` measures the rest
without a lab). It prints a table and writes JSON to ``bench/results/``.

Every figure is the median wall time of ``--runs`` execs from this process (fork, exec,
wait; the kinds below taken in turn, one of each per round), started with a clean
environment (no ``PYTHONDONTWRITEBYTECODE``, so the warm-up execs leave compiled bytecode
as an installed package has):

- ``spawn``: ``/bin/true``, what this harness adds to any exec;
- ``python -S -c pass`` and ``python -c pass``: the interpreter without and with ``site``
  (the floor of any Python plugin; ``site`` includes the venv's ``.pth`` files);
- ``python -c "import hostagent.cni"``: start plus the plugin's imports;
- ``VERSION``: a whole exec that needs no agent;
- ``ADD``: against a real agent (a 1-host lab, prefix ``cnib-``, underlay 198.18.16.0/24,
  API port 19180, OpenFlow port 17380), each followed by a separately timed ``DEL``. The
  plugin's own time of an ADD is its wall time minus the agent's handling time, which the
  agent reports in the ``X-Vxplane-Agent-Seconds`` reply header and the plugin passes on
  when ``VXPLANE_CNI_TIMING`` is set. If the agent sends no such header, that figure is
  reported as unavailable, with the raw wall time and the time outside the request (wall
  minus connect-to-reply, as the plugin measured it).

The controller, lab and namespaces it makes are removed afterwards, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

PREFIX = "cnib-"
UNDERLAY = "198.18.16.0/24"
API_PORT = 19180
OF_PORT = 17380
SUBNET = "10.48.0.0/22"
PYTHON = sys.executable
CNI_BIN = str(Path(sys.executable).with_name("vxplane-cni"))
CNI_DIR = str(Path(sys.executable).parent)
RESULTS = Path(__file__).parent / "results"
WARMUP = 3


def clean_env(**extra: str) -> dict[str, str]:
    """The environment a runtime gives a plugin: PATH and what the call needs, nothing else."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **extra}


def timed_exec(
    argv: list[str], env: dict[str, str], stdin: bytes = b""
) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """(wall seconds, result) of one exec, from fork to exit."""
    t0 = time.perf_counter()
    done = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=120)
    return time.perf_counter() - t0, done


def startup(runs: int) -> dict[str, float]:
    """Execs that need no agent: the floor under the plugin, its imports, and VERSION; one of
    each per round, so a change in the machine's load hits all of them alike."""
    env = clean_env()
    kinds: dict[str, tuple[list[str], dict[str, str], bytes]] = {
        "spawn_true_ms": (["/bin/true"], env, b""),
        "python_no_site_ms": ([PYTHON, "-S", "-c", "pass"], env, b""),
        "python_floor_ms": ([PYTHON, "-c", "pass"], env, b""),
        "python_import_cni_ms": ([PYTHON, "-c", "import hostagent.cni"], env, b""),
        "version_ms": ([CNI_BIN], clean_env(CNI_COMMAND="VERSION"), b'{"cniVersion":"1.1.0"}'),
    }
    walls: dict[str, list[float]] = {k: [] for k in kinds}
    for i in range(WARMUP + runs):
        for kind, (argv, env, stdin) in kinds.items():
            wall, done = timed_exec(argv, env, stdin)
            if done.returncode != 0:
                raise RuntimeError(f"{argv} exited {done.returncode}: {done.stderr.decode()}")
            if i >= WARMUP:
                walls[kind].append(wall)
    return {kind: statistics.median(w) * 1000 for kind, w in walls.items()}


def _cni(command: str, sock: str, cid: str, netns: str | None) -> tuple[float, dict[str, Any]]:
    """Exec the plugin for one verb; (wall seconds, the timing it wrote to stderr)."""
    env = clean_env(
        CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_IFNAME="eth0", CNI_PATH=CNI_DIR,
        VXPLANE_AGENT_SOCKET=sock, VXPLANE_CNI_TIMING="1",
    )  # fmt: skip
    if netns:
        env["CNI_NETNS"] = netns
    conf = {"cniVersion": "1.1.0", "name": "cnib", "type": "vxplane-cni", "network": "cnib"}
    wall, done = timed_exec([CNI_BIN], env, json.dumps(conf).encode())
    if done.returncode != 0:
        raise RuntimeError(f"{command} {cid}: exit {done.returncode}: {done.stdout.decode()}")
    lines = done.stderr.decode().strip().splitlines()
    return wall, json.loads(lines[-1]) if lines else {}


def add_del(sock: str, runs: int, made: list[str]) -> dict[str, Any]:
    """``runs`` ADDs (after WARMUP), each in a fresh namespace and followed by a DEL."""
    rows = []
    for i in range(WARMUP + runs):
        ns = f"{PREFIX}c{i}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        made.append(ns)
        add_wall, add_t = _cni("ADD", sock, f"ctr-{i}", f"/run/netns/{ns}")
        del_wall, del_t = _cni("DEL", sock, f"ctr-{i}", None)
        subprocess.run(["ip", "netns", "del", ns], check=True)
        made.remove(ns)
        if i >= WARMUP:
            rows.append((add_wall, add_t, del_wall, del_t))
    return {
        "ADD": _summary([(w, t) for w, t, _, _ in rows]),
        "DEL": _summary([(w, t) for _, _, w, t in rows]),
    }


def _summary(rows: list[tuple[float, dict[str, Any]]]) -> dict[str, Any]:
    def med(f: Callable[[float, dict[str, Any]], float]) -> float:
        return statistics.median(f(w, t) for w, t in rows) * 1000

    out: dict[str, Any] = {
        "runs": len(rows),
        "wall_ms": med(lambda w, t: w),
        "request_ms": med(lambda w, t: t["request_seconds"]),
        "outside_request_ms": med(lambda w, t: w - t["request_seconds"]),
    }
    if all(t.get("agent_seconds") is not None for _, t in rows):
        out["agent_ms"] = med(lambda w, t: t["agent_seconds"])
        out["plugin_own_ms"] = med(lambda w, t: w - t["agent_seconds"])
    else:
        out["agent_ms"] = out["plugin_own_ms"] = None  # no X-Vxplane-Agent-Seconds header
    return out


def measure_add(runs: int, tmp: Path) -> dict[str, Any]:
    """Start a controller and a 1-host lab, run ADD/DEL, and remove it all again."""
    from vxlab.launch import controller_and_lab  # only this part needs the lab

    made: list[str] = []
    with controller_and_lab(
        tmp, prefix=PREFIX, underlay=UNDERLAY, api_port=API_PORT, openflow_port=OF_PORT, hosts=1
    ) as (lab, _ctl, api):
        try:
            api.post("/api/v1/networks", json={"name": "cnib", "subnet": SUBNET}).raise_for_status()
            host = lab.status()["hosts"][0]
            return add_del(host["agent_socket"], runs, made)
        finally:
            for h in lab.status().get("hosts", []):
                log = Path(h["agent_socket"]).with_name("agent.log")
                if log.exists():
                    shutil.copy(log, tmp / f"agent-{h['name']}.log")
            for ns in made:
                subprocess.run(["ip", "netns", "del", ns], check=False)


def _fmt(ms: float | None) -> str:
    return "unavailable" if ms is None else f"{ms:7.1f} ms"


def report(result: dict[str, Any]) -> str:
    s = result["startup"]
    lines = [
        f"load average before/after: {result['load_before']} / {result['load_after']}",
        f"spawn (/bin/true)                  {_fmt(s['spawn_true_ms'])}",
        f"python -S -c pass                  {_fmt(s['python_no_site_ms'])}",
        f"python -c pass (floor)             {_fmt(s['python_floor_ms'])}",
        f"python -c 'import hostagent.cni'   {_fmt(s['python_import_cni_ms'])}"
        f"   (imports: {s['python_import_cni_ms'] - s['python_floor_ms']:.1f} ms)",
        f"vxplane-cni VERSION                {_fmt(s['version_ms'])}",
    ]
    for verb in ("ADD", "DEL"):
        a = result.get("exec", {}).get(verb)
        if a is None:
            continue
        lines += [
            f"{verb} wall                           {_fmt(a['wall_ms'])}",
            f"{verb} agent (reported)               {_fmt(a['agent_ms'])}",
            f"{verb} plugin own (wall - agent)      {_fmt(a['plugin_own_ms'])}",
            f"{verb} request (connect to reply)     {_fmt(a['request_ms'])}",
            f"{verb} outside the request            {_fmt(a['outside_request_ms'])}",
        ]
    return "\n".join(lines)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=50, help="measured execs of each kind")
    p.add_argument("--skip-add", action="store_true", help="no lab: startup and VERSION only")
    args = p.parse_args(argv)
    if not os.path.exists(CNI_BIN):
        print(f"{CNI_BIN} is not installed: pip install -e .", file=sys.stderr)
        return 2
    if not args.skip_add and os.geteuid() != 0:
        print("ADD needs a lab, so root: run as root or pass --skip-add", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupted)  # clean up on SIGTERM as on Ctrl-C
    tmp = Path(tempfile.mkdtemp(prefix="vxplane-bench-cni-"))
    result: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus "
        f"python {platform.python_version()}",
        "command": " ".join([".venv/bin/python -m bench.cni", *(argv or sys.argv[1:])]),
        "logs": str(tmp),
        "load_before": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "startup": startup(args.runs),
    }
    if not args.skip_add:
        result["exec"] = measure_add(args.runs, tmp)
    result["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cni-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
