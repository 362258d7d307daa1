"""Controller-side cost of one change: snapshot read and desired flows, by endpoint count.

No root, no OVS: ``.venv/bin/python -m bench.pipeline [--sizes 40 400 2000] [--hosts 3]
[--subnet6 fd00::/64]``. Fills a SQLite database in a temp dir through the repository (as
the API does), then for each size times ``repo.load_snapshot`` and
``pipeline.desired_flows`` for every host (median of 10 runs each; the first run of each
size computes every flow, later ones reuse the memoized flow values, as the engine does)
and counts the flows per host. ``--subnet6``: the network is dual stack.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from ipaddress import IPv4Address, IPv4Network, IPv6Network

from controller.db import migrate, repo
from controller.db.session import make_engine, make_session_factory
from controller.pipeline import desired_flows, index


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--sizes", type=int, nargs="+", default=[40, 400, 2000])
    p.add_argument("--hosts", type=int, default=3)
    p.add_argument("--subnet6", type=IPv6Network, default=None, help="dual stack: IPv6 prefix")
    args = p.parse_args(argv)
    url = f"sqlite:///{tempfile.mkdtemp(prefix='vxplane-bench-')}/p.db"
    migrate.upgrade(url)
    sessions = make_session_factory(make_engine(url))
    with sessions() as s:
        repo.create_network(
            s, "n", IPv4Network("10.0.0.0/8"), block_prefix=22, subnet6=args.subnet6
        )
        s.commit()
        for h in range(args.hosts):
            repo.register_host(s, f"h{h}", IPv4Address(f"198.18.0.{h + 1}"), h + 1)
            s.commit()
    made = 0
    print(
        f"{'endpoints':>9}  {'snapshot read':>13}  {'index':>7}  {'desired, all hosts':>18}"
        f"  {'first':>8}  {'flows/host':>10}"
    )
    for size in args.sizes:
        for i in range(made, size):
            host = f"h{i % args.hosts}"
            with sessions() as s:
                repo.create_endpoint(s, "n", f"e{i}", host=host)
                s.commit()
            with sessions() as s:
                repo.bind_endpoint(s, "n", f"e{i}", host, i + 2)
                s.commit()
        made = size
        reads, idxs, flows = [], [], []
        counts = 0
        for _ in range(10):
            t0 = time.perf_counter()
            with sessions() as s:
                snap = repo.load_snapshot(s)
            t1 = time.perf_counter()
            idx = index(snap)
            t2 = time.perf_counter()
            counts = sum(len(desired_flows(snap, f"h{h}", idx)) for h in range(args.hosts))
            t3 = time.perf_counter()
            reads.append(t1 - t0)
            idxs.append(t2 - t1)
            flows.append(t3 - t2)
        ms = [statistics.median(x) * 1000 for x in (reads, idxs, flows)]
        print(
            f"{size:>9}  {ms[0]:>10.1f} ms  {ms[1]:>4.1f} ms  {ms[2]:>15.1f} ms"
            f"  {flows[0] * 1000:>5.1f} ms  {counts / args.hosts:>10.0f}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
