"""How long an open connection keeps passing data after the rule that allowed it is removed.

Run as root: ``.venv/bin/python -m bench.policy_cut [--runs 10]``. A controller (SQLite) and
a 2-host lab (prefix ``bpc-``, underlay 198.18.28.0/24, ports 19370/17570): web (role=web) on
h1, db (role=db) on h2 running a TCP echo server; policy ``db-in`` keeps db isolated (it only
admits an address nobody has) and ``db-from-web`` admits web on tcp/5432. Each run opens a
connection from web to db:5432 whose client sends one byte every 2 ms and notes when each
echo arrives, then deletes ``db-from-web`` and polls ``/api/v1/hosts`` until every switch
reports the revision applied. Per run, from the moment the DELETE is sent:

- applied: every switch reported the revision (the API's view, polled every 5 ms);
- last echo: the last byte that came back (the cut is at most this plus one 2 ms interval).

All clocks are the machine's CLOCK_MONOTONIC (namespaces share it). Prints medians and the
worst run and writes JSON to ``bench/results/policy-cut-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from vxlab.launch import controller_and_lab

PREFIX = "bpc-"
UNDERLAY = "198.18.28.0/24"
API_PORT = 19370
OF_PORT = 17570
NET = "shop"
POLS = f"/api/v1/networks/{NET}/policies"
DB_IN = {
    "name": "db-in",
    "selector": {"matchLabels": {"role": "db"}},
    "ingress": [{"from": [{"cidr": "10.80.0.250/32"}], "ports": [{"port": 1}]}],
}
DB_FROM_WEB = {
    "name": "db-from-web",
    "selector": {"matchLabels": {"role": "db"}},
    "ingress": [
        {"from": [{"selector": {"matchLabels": {"role": "web"}}}], "ports": [{"port": 5432}]}
    ],
}

ECHO = r"""
import socket, threading
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 5432))
s.listen(8)
print("listening", flush=True)
def serve(c):
    try:
        while (data := c.recv(4096)):
            c.sendall(data)
    except OSError:
        pass
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

# Sends a byte every 2 ms, notes the time of each echo; a line on stdin stops it and prints
# "<monotonic time of the last echo> <echoes>".
CLIENT = r"""
import socket, sys, threading, time
s = socket.create_connection((sys.argv[1], 5432), timeout=5)
s.settimeout(0.05)
last, count, stop = [0.0], [0], threading.Event()
def loop():
    while not stop.is_set():
        try:
            s.sendall(b"x")
            if s.recv(64):
                last[0] = time.monotonic()
                count[0] += 1
        except socket.timeout:
            pass
        except OSError:
            break
        time.sleep(0.002)
threading.Thread(target=loop, daemon=True).start()
time.sleep(0.3)
print("running" if count[0] else "no echo", flush=True)
sys.stdin.readline()
stop.set()
print(last[0], count[0], flush=True)
"""


def applied(api: httpx.Client, timeout: float = 30.0) -> float:
    """Poll until every switch reports the current revision; the monotonic time it did."""
    rev = int(api.get("/healthz").json()["revision"])
    deadline = time.monotonic() + timeout
    while any(
        (h.get("switch") or {}).get("applied_revision", -1) < rev
        for h in api.get("/api/v1/hosts").json()
    ):
        if time.monotonic() > deadline:
            raise RuntimeError(f"switches did not apply revision {rev}")
        time.sleep(0.005)
    return time.monotonic()


def one_run(api: httpx.Client, web_ns: str, db_ip: str) -> dict[str, float]:
    if api.get(f"{POLS}/db-from-web").status_code == 404:
        api.post(POLS, json=DB_FROM_WEB).raise_for_status()
    applied(api)
    client = subprocess.Popen(
        ["ip", "netns", "exec", web_ns, sys.executable, "-c", CLIENT, db_ip],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert client.stdout is not None and client.stdin is not None
        ready = client.stdout.readline().strip()
        if ready != "running":
            raise RuntimeError(f"the client got no echo before the change: {ready!r}")
        t0 = time.monotonic()
        api.delete(f"{POLS}/db-from-web").raise_for_status()
        t_applied = applied(api)
        time.sleep(1.0)  # the client keeps trying: nothing should come back
        client.stdin.write("stop\n")
        client.stdin.flush()
        last, _count = client.stdout.readline().split()
    finally:
        if client.poll() is None:
            client.kill()
        client.wait(10)
    return {"applied_ms": (t_applied - t0) * 1000, "last_echo_ms": (float(last) - t0) * 1000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", type=int, default=10)
    args = p.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="vxplane-policy-cut-"))
    result: dict[str, Any] = {
        "command": " ".join(["python -m bench.policy_cut", *(argv or sys.argv[1:])])
    }
    with controller_and_lab(
        tmp, prefix=PREFIX, underlay=UNDERLAY, api_port=API_PORT, openflow_port=OF_PORT, hosts=2
    ) as (lab, _ctl, api):
        api.post("/api/v1/networks", json={"name": NET, "subnet": "10.80.0.0/24"})
        lab.run("h1", f"{PREFIX}web", NET, labels={"role": "web"})
        db = lab.run("h2", f"{PREFIX}db", NET, labels={"role": "db"})
        api.post(POLS, json=DB_IN).raise_for_status()
        server = subprocess.Popen(
            ["ip", "netns", "exec", f"{PREFIX}db", sys.executable, "-c", ECHO],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert server.stdout is not None and server.stdout.readline().strip() == "listening"
            runs = [one_run(api, f"{PREFIX}web", str(db["ip"])) for _ in range(args.runs)]
        finally:
            server.kill()
            server.wait(10)
    app = [r["applied_ms"] for r in runs]
    last = [r["last_echo_ms"] for r in runs]
    lag = [r["last_echo_ms"] - r["applied_ms"] for r in runs]
    result.update(runs=runs, median_applied_ms=statistics.median(app),
                  median_last_echo_ms=statistics.median(last))  # fmt: skip
    print(f"{args.runs} runs, from the DELETE request (ms):")
    print(f"  every switch applied:  median {statistics.median(app):6.1f}  max {max(app):6.1f}")
    print(f"  last echo came back:   median {statistics.median(last):6.1f}  max {max(last):6.1f}")
    print(f"  last echo - applied:   median {statistics.median(lag):6.1f}  max {max(lag):6.1f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    path = out / f"policy-cut-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(result, indent=2))
    print(f"written {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
