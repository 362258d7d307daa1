"""The churn's write in one process: an agent unbinds and binds its host's endpoints in
batches, through the app, on a database of H hosts x E endpoints; statements per batch and
the process's CPU per event (client included), without the flow engine, HTTP or the fleet.

Run: ``.venv/bin/python bench/write_churn.py [--hosts 100] [--endpoints-per-host 50]
[--batch 50] [--rounds 300]`` (no root). Builds the app (``create_app``, a sync that records
nothing, SQLite in a temp dir), registers the hosts and one network, fills every host with
``--endpoints-per-host`` bound endpoints in batches of them (``create``), then, with an agent
token of ``h0``, runs ``--rounds`` times: unbind ``--batch`` of h0's endpoints in one
``POST /api/v1/bindings``, bind them again in another (two batches, 2 x batch events).
Statements are counted on every engine (``before_cursor_execute``, an executemany once).
Only the public API: it runs unchanged on an older tree (``cd OLD && PYTHONPATH=$PWD
.venv/bin/python /path/to/bench/write_churn.py``) for a before/after; take the lowest CPU of
a few runs on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import event
from sqlalchemy.engine import Engine

from controller.api.app import create_app
from controller.auth import Role
from controller.config import Settings
from controller.db import migrate, tokens
from controller.db.session import make_engine, make_session_factory

COUNT = [0]


def _count(*_: Any) -> None:
    COUNT[0] += 1


class NullSync:
    """A FlowSync that applies everything at once and records nothing."""

    def notify(self, revision: int) -> None:
        pass

    def wait_applied(self, revision: int, timeout: float, hosts: Any = ()) -> bool:
        return True

    async def until_applied(self, revision: int, timeout: float, hosts: Any = ()) -> bool:
        return True

    def switches(self) -> list[Any]:
        return []

    def waiting_on(self, revision: int) -> list[str] | None:
        return []


def run(tmp: Path, hosts: int, per_host: int, batch: int, rounds: int) -> dict[str, Any]:
    url = f"sqlite:///{tmp}/vx.db"
    migrate.upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        _, admin = tokens.create_token(session, Role.admin)
        _, agent = tokens.create_token(session, Role.agent, host="h0")
        session.commit()
    engine.dispose()
    settings = Settings(db_url=url, allowed_hosts=["testserver"])  # type: ignore[call-arg]
    app = create_app(settings=settings, sync=NullSync())  # type: ignore[arg-type]
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {admin}"
        net = {"name": "n", "subnet": "10.64.0.0/12"}
        api.post("/api/v1/networks", json=net).raise_for_status()
        for h in range(hosts):
            body = {"underlay_ip": f"198.18.{h // 250}.{h % 250 + 1}"}
            api.put(f"/api/v1/hosts/h{h}", json=body).raise_for_status()
        for h in range(hosts):
            items = [
                {"network": "n", "name": f"e-h{h}-{j}", "host": f"h{h}", "ofport": 2 + j,
                 "create": True}
                for j in range(per_host)
            ]  # fmt: skip
            r = api.post("/api/v1/bindings", json={"items": items})
            r.raise_for_status()
            assert all(o["status"] in (200, 201) for o in r.json()["items"]), r.text[:300]
        api.headers["Authorization"] = f"Bearer {agent}"

        def churn(k: int, unbind: bool) -> None:
            items: list[dict[str, Any]] = []
            for j in (i % per_host for i in range(k * batch, (k + 1) * batch)):
                item: dict[str, Any] = {"network": "n", "name": f"e-h0-{j}", "host": "h0"}
                item.update({"unbind": True} if unbind else {"ofport": 2 + j})
                items.append(item)
            r = api.post("/api/v1/bindings", json={"items": items})
            r.raise_for_status()
            assert all(o["status"] == 200 for o in r.json()["items"]), r.text[:300]

        churn(0, True)  # warm: every statement compiled once
        churn(0, False)
        event.listen(Engine, "before_cursor_execute", _count)
        COUNT[0] = 0
        t0 = time.process_time()
        for k in range(rounds):
            churn(k, True)
            churn(k, False)
        cpu = time.process_time() - t0
        event.remove(Engine, "before_cursor_execute", _count)
    events = rounds * 2 * batch
    return {
        "hosts": hosts,
        "endpoints": hosts * per_host,
        "batch": batch,
        "statements_per_batch": round(COUNT[0] / (2 * rounds), 2),
        "cpu_ms_per_event": round(cpu * 1000 / events, 4),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--hosts", type=int, default=100)
    p.add_argument("--endpoints-per-host", type=int, default=50)
    p.add_argument("--batch", type=int, default=50, help="items per batch (<= endpoints per host)")
    p.add_argument("--rounds", type=int, default=300, help="unbind + bind batches")
    args = p.parse_args(argv)
    if not 1 <= args.batch <= args.endpoints_per_host:
        p.error("--batch must be 1..--endpoints-per-host")
    with tempfile.TemporaryDirectory(prefix="vx-write-churn-") as tmp:
        out = run(Path(tmp), args.hosts, args.endpoints_per_host, args.batch, args.rounds)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path.cwd()))
    raise SystemExit(main())
