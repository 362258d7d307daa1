"""The flow engine's audit at scale, in one process: a full audit (``repo.load_snapshot`` +
``diff_views`` with the whole model, what every audit did before the pages) against one
audit page (``repo.load_page`` + ``diff_views`` with the model of the page's hosts), on one
SQLite database of ``--switches`` hosts x ``--endpoints-per-host`` bound endpoints built once
through the repo functions. Each figure is the median of ``--repeat`` runs: wall and CPU
seconds (the engine holds its pass meanwhile) and the tracemalloc peak of one run (its own
run, tracemalloc slows the read).

    python -m bench.audit_pages --switches 1000 --endpoints-per-host 50
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from sqlalchemy.orm import Session, sessionmaker

from controller.db import migrate, repo
from controller.db.session import make_engine, make_session_factory, session_scope
from controller.engine import AUDIT_PAGE_ENDPOINTS
from controller.intent import Intent, diff_views


def build(factory: sessionmaker[Session], switches: int, per_host: int) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "bench", IPv4Network("10.64.0.0/12"))
    for h in range(switches):
        name = f"h{h:04d}"
        with session_scope(factory) as s:
            repo.register_host(s, name, IPv4Address(0xC6120000 + 1 + h), dpid=h + 1)
            for e in range(per_host):
                repo.attach_endpoint(s, "bench", f"{name}-e{e}", name, 10 + e, create=True)


def measure(fn: Callable[[], list[str]], repeat: int) -> tuple[float, float, float]:
    walls, cpus = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        assert fn() == [], "the audit must find the model equal"
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return statistics.median(walls), statistics.median(cpus), peak / 2**20


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--switches", type=int, default=1000)
    ap.add_argument("--endpoints-per-host", type=int, default=50)
    ap.add_argument("--page-endpoints", type=int, default=AUDIT_PAGE_ENDPOINTS)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vx-audit-") as tmp:
        url = f"sqlite:///{Path(tmp) / 'vxplane.db'}"
        migrate.upgrade(url)
        engine = make_engine(url)
        factory = make_session_factory(engine)
        t = time.perf_counter()
        build(factory, args.switches, args.endpoints_per_host)
        took = time.perf_counter() - t
        print(f"built {args.switches} x {args.endpoints_per_host} in {took:.0f} s")
        with factory() as s:
            intent = Intent.from_snapshot(repo.load_snapshot(s))
        total = len(intent.endpoints)
        pages = max(1, min(-(-total // args.page_endpoints), len(intent.hosts)))

        def full() -> list[str]:
            with factory() as s:
                return diff_views(repo.load_snapshot(s), intent.snapshot())

        def page(k: int) -> Callable[[], list[str]]:
            def run() -> list[str]:
                with factory() as s:
                    read, hosts = repo.load_page(s, k, pages)
                    return diff_views(read, intent.snapshot(hosts))

            return run

        fw, fc, fm = measure(full, args.repeat)
        print(f"full audit ({total} endpoints): wall {fw:.3f} s, cpu {fc:.3f} s, peak {fm:.1f} MiB")
        worst = max((measure(page(k), args.repeat) for k in range(pages)), key=lambda r: r[0])
        pw, pc, pm = worst
        print(
            f"audit page (1 of {pages}, slowest): wall {pw:.3f} s, cpu {pc:.3f} s, "
            f"peak {pm:.1f} MiB; ratio full/page wall {fw / pw:.1f}, peak {fm / pm:.1f}"
        )
        engine.dispose()


if __name__ == "__main__":
    main()
