"""Cost of one ``vxplane-cni`` exec: interpreter start, imports, VERSION, and ADD minus the agent.

Run ``.venv/bin/python -m bench.cni`` (as root for ADD; ``--skip-add`` measures the rest
without a lab; ``--plugin PATH`` measures another build, e.g. an older one, for a before and
after). It prints a table and writes JSON to ``bench/results/``.

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
  reported as unavailable, with the raw wall time. Either way the exec is split in its
  parts with the plugin's own timestamps: fork to ``main`` (interpreter and imports),
  ``main`` to the request, the request (connect to reply), and reply to exit.

The controller, lab and namespaces it makes are removed afterwards, also on failure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
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


class Exec:
    """One finished exec: wall time from fork to exit (``time.monotonic``, the clock the
    plugin's timing uses too), the child's CPU time (user + system, which other load on the
    machine changes less), and its result."""

    def __init__(self, argv: list[str], env: dict[str, str], stdin: bytes = b"") -> None:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.forked_at = time.monotonic()
        self.done = subprocess.run(argv, input=stdin, env=env, capture_output=True, timeout=120)
        self.exited_at = time.monotonic()
        self.wall = self.exited_at - self.forked_at
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        if self.done.returncode != 0:
            out = (self.done.stdout + self.done.stderr).decode()[-500:]
            raise RuntimeError(f"{argv} exited {self.done.returncode}: {out}")
        lines = self.done.stderr.decode().strip().splitlines()
        # what the plugin reports with VXPLANE_CNI_TIMING (see hostagent/cni.py)
        self.timing: dict[str, Any] = json.loads(lines[-1]) if lines else {}


def ms(values: Iterable[float]) -> float:
    """The median, in ms."""
    return statistics.median(values) * 1000


def startup(runs: int, plugin: str) -> dict[str, dict[str, float]]:
    """Execs that need no agent: the floor under the plugin, its imports, and VERSION; one of
    each per round, so a change in the machine's load hits all of them alike."""
    env = clean_env()
    kinds: dict[str, tuple[list[str], dict[str, str], bytes]] = {
        "spawn_true": (["/bin/true"], env, b""),
        "python_no_site": ([PYTHON, "-S", "-c", "pass"], env, b""),
        "python_floor": ([PYTHON, "-c", "pass"], env, b""),
        "python_import_cni": ([PYTHON, "-c", "import hostagent.cni"], env, b""),
        "version": ([plugin], clean_env(CNI_COMMAND="VERSION"), b'{"cniVersion":"1.1.0"}'),
    }
    execs: dict[str, list[Exec]] = {k: [] for k in kinds}
    for i in range(WARMUP + runs):
        for kind, (argv, env, stdin) in kinds.items():
            done = Exec(argv, env, stdin)
            if i >= WARMUP:
                execs[kind].append(done)
    return {
        k: {"wall_ms": ms(e.wall for e in ex), "cpu_ms": ms(e.cpu for e in ex)}
        for k, ex in execs.items()
    }


def _cni(plugin: str, command: str, sock: str, cid: str, netns: str | None) -> Exec:
    """Exec the plugin for one verb, as a runtime would."""
    env = clean_env(
        CNI_COMMAND=command, CNI_CONTAINERID=cid, CNI_IFNAME="eth0", CNI_PATH=CNI_DIR,
        VXPLANE_AGENT_SOCKET=sock, VXPLANE_CNI_TIMING="1",
    )  # fmt: skip
    if netns:
        env["CNI_NETNS"] = netns
    conf = {"cniVersion": "1.1.0", "name": "cnib", "type": "vxplane-cni", "network": "cnib"}
    return Exec([plugin], env, json.dumps(conf).encode())


def add_del(plugin: str, sock: str, runs: int, made: list[str]) -> dict[str, Any]:
    """``runs`` ADDs (after WARMUP), each in a fresh namespace and followed by a DEL."""
    adds, dels = [], []
    for i in range(WARMUP + runs):
        ns = f"{PREFIX}c{i}"
        subprocess.run(["ip", "netns", "add", ns], check=True)
        made.append(ns)
        add = _cni(plugin, "ADD", sock, f"ctr-{i}", f"/run/netns/{ns}")
        delete = _cni(plugin, "DEL", sock, f"ctr-{i}", None)
        subprocess.run(["ip", "netns", "del", ns], check=True)
        made.remove(ns)
        if i >= WARMUP:
            adds.append(add)
            dels.append(delete)
    return {"ADD": _summary(adds), "DEL": _summary(dels)}


def _summary(execs: list[Exec]) -> dict[str, Any]:
    out: dict[str, Any] = {
        "runs": len(execs),
        "wall_ms": ms(e.wall for e in execs),
        "cpu_ms": ms(e.cpu for e in execs),
        "plugin_own_ms": None,  # unless the agent sent X-Vxplane-Agent-Seconds every time
        "agent_ms": None,
    }
    timing = [(e, e.timing) for e in execs]
    if all("replied_at" in t for _, t in timing):  # a plugin without timing has no parts
        out.update(  # the exec in its parts, in order
            to_main_ms=ms(t["started_at"] - e.forked_at for e, t in timing),
            main_to_request_ms=ms(
                t["replied_at"] - t["request_seconds"] - t["started_at"] for e, t in timing
            ),
            request_ms=ms(t["request_seconds"] for e, t in timing),
            after_reply_ms=ms(e.exited_at - t["replied_at"] for e, t in timing),
        )
    if all(t.get("agent_seconds") is not None for _, t in timing):
        out["agent_ms"] = ms(t["agent_seconds"] for e, t in timing)
        out["plugin_own_ms"] = ms(e.wall - t["agent_seconds"] for e, t in timing)
    return out


def measure_add(runs: int, tmp: Path, plugin: str) -> dict[str, Any]:
    """Start a controller and a 1-host lab, run ADD/DEL, and remove it all again."""
    from vxlab.launch import controller_and_lab  # only this part needs the lab

    made: list[str] = []
    with controller_and_lab(
        tmp, prefix=PREFIX, underlay=UNDERLAY, api_port=API_PORT, openflow_port=OF_PORT, hosts=1
    ) as (lab, _ctl, api):
        try:
            api.post("/api/v1/networks", json={"name": "cnib", "subnet": SUBNET}).raise_for_status()
            host = lab.status()["hosts"][0]
            return add_del(plugin, host["agent_socket"], runs, made)
        finally:
            for h in lab.status().get("hosts", []):
                log = Path(h["agent_socket"]).with_name("agent.log")
                if log.exists():
                    shutil.copy(log, tmp / f"agent-{h['name']}.log")
            for ns in made:
                subprocess.run(["ip", "netns", "del", ns], check=False)


def _fmt(value: float | None) -> str:
    return "unavailable" if value is None else f"{value:8.1f} ms"


def report(result: dict[str, Any]) -> str:
    """The result as a table: median wall (and CPU) time per exec."""
    s = result["startup"]
    imports = s["python_import_cni"]["wall_ms"] - s["python_floor"]["wall_ms"]
    rows = [
        ("spawn (/bin/true)", s["spawn_true"]),
        ("python -S -c pass", s["python_no_site"]),
        ("python -c pass (the floor)", s["python_floor"]),
        (f"python -c 'import hostagent.cni' (+{imports:.1f})", s["python_import_cni"]),
        ("vxplane-cni VERSION", s["version"]),
    ]
    lines = [
        f"load average before: {result['load_before']}, after: {result['load_after']}",
        f"{'median per exec':44} {'wall':>11} {'cpu':>11}",
        *(f"{label:44} {_fmt(r['wall_ms'])} {_fmt(r['cpu_ms'])}" for label, r in rows),
    ]
    for verb, a in result.get("exec", {}).items():
        lines += [
            f"{verb:44} {_fmt(a['wall_ms'])} {_fmt(a['cpu_ms'])}",
            f"  plugin own time (wall - agent)             {_fmt(a['plugin_own_ms'])}",
            f"  agent handling (reported by the agent)     {_fmt(a['agent_ms'])}",
            f"  fork to main (interpreter, imports)        {_fmt(a.get('to_main_ms'))}",
            f"  main to request (stdin, parse)             {_fmt(a.get('main_to_request_ms'))}",
            f"  request (connect to reply)                 {_fmt(a.get('request_ms'))}",
            f"  reply to exit (result, exit)               {_fmt(a.get('after_reply_ms'))}",
        ]
    return "\n".join(lines)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=50, help="measured execs of each kind")
    p.add_argument("--skip-add", action="store_true", help="no lab: startup and VERSION only")
    p.add_argument(
        "--plugin", default=CNI_BIN, help="the executable to measure, e.g. an older build"
    )
    args = p.parse_args(argv)
    if not os.path.exists(args.plugin):
        print(f"{args.plugin} is not installed: pip install -e .", file=sys.stderr)
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
        "plugin": args.plugin,
        "startup": startup(args.runs, args.plugin),
    }
    if not args.skip_add:
        result["exec"] = measure_add(args.runs, tmp, args.plugin)
    result["load_after"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"cni-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(report(result))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
