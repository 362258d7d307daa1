"""SQL statements and CPU per bind/unbind through the API, in one process: what one write
costs the database path, without HTTP, the flow engine or a loaded machine in the figure.

Run: ``.venv/bin/python bench/write_statements.py [--repeat 200] [--postgres]`` (no root).
Builds the app (``create_app``) on a migrated SQLite file (or a private PostgreSQL server, as
tests/db/conftest.py starts one) with a sync that records nothing, registers host ``h0``,
network ``n`` and an agent token of ``h0``, then times, with that token:

- ``create_and_bind``: ``PUT .../binding?create=true`` of a new name (the attach path);
- ``bind`` / ``unbind``: ``PUT .../binding`` of an existing, unbound endpoint, ``DELETE
  .../binding?host=h0``;
- ``batch16_bind`` / ``batch16_unbind`` (and 50, 64): ``POST /api/v1/bindings`` of that many.

Per operation: the SQL statements sent (an ``executemany`` counts once; counted with
SQLAlchemy's ``before_cursor_execute`` on every engine, token lookups included) and the
process CPU per event (client and server: the same client on both sides of a comparison).
It only uses the public API, so it runs unchanged on an older tree for a before/after:
``cd OLD && PYTHONPATH=$PWD .venv/bin/python /path/to/bench/write_statements.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
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


@contextmanager
def database(postgres: bool, tmp: Path) -> Iterator[str]:
    if not postgres:
        yield f"sqlite:///{tmp}/vx.db"
        return
    from tests.db.conftest import find_pg_bindir, postgres_server

    bindir = find_pg_bindir()
    if bindir is None:
        raise SystemExit("--postgres: PostgreSQL server binaries (initdb, pg_ctl) not found")
    with postgres_server(bindir) as url:
        yield url


def measure(fn: Callable[[int], None], repeat: int, events: int) -> dict[str, float]:
    COUNT[0] = 0
    t0 = time.process_time()
    for i in range(repeat):
        fn(i)
    cpu = time.process_time() - t0
    return {
        "statements_per_call": round(COUNT[0] / repeat, 2),
        "statements_per_event": round(COUNT[0] / (repeat * events), 2),
        "cpu_ms_per_event": round(cpu * 1000 / (repeat * events), 3),
    }


def run(url: str, repeat: int) -> dict[str, Any]:
    migrate.upgrade(url)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with factory() as session:
        _, admin = tokens.create_token(session, Role.admin)
        _, agent = tokens.create_token(session, Role.agent, host="h0")
        session.commit()
    engine.dispose()
    settings = Settings(db_url=url, allowed_hosts=["testserver"])  # type: ignore[call-arg]
    app = create_app(settings=settings, sync=NullSync())  # type: ignore[arg-type]
    out: dict[str, Any] = {}
    with TestClient(app) as api:
        api.headers["Authorization"] = f"Bearer {admin}"
        net = {"name": "n", "subnet": "10.64.0.0/12"}
        api.post("/api/v1/networks", json=net).raise_for_status()
        api.put("/api/v1/hosts/h0", json={"underlay_ip": "198.18.0.1"}).raise_for_status()
        api.headers["Authorization"] = f"Bearer {agent}"
        eps = "/api/v1/networks/n/endpoints"
        api.put(f"{eps}/warm/binding?create=true", json={"host": "h0", "ofport": 60000})
        event.listen(Engine, "before_cursor_execute", _count)

        def ok(r: Any) -> None:
            assert r.status_code < 300, r.text

        def create_and_bind(i: int) -> None:
            ok(api.put(f"{eps}/a{i}/binding?create=true", json={"host": "h0", "ofport": 2 + i}))

        def unbind(i: int) -> None:
            ok(api.delete(f"{eps}/a{i}/binding", params={"host": "h0"}))

        def bind(i: int) -> None:
            ok(api.put(f"{eps}/a{i}/binding", json={"host": "h0", "ofport": 2 + i}))

        out["create_and_bind"] = measure(create_and_bind, repeat, 1)
        out["unbind"] = measure(unbind, repeat, 1)
        out["bind"] = measure(bind, repeat, 1)
        api.post("/api/v1/bindings", json={"items": [
            {"network": "n", "name": f"a{i}", "host": "h0", "unbind": True} for i in range(repeat)
        ][:256]})  # fmt: skip
        for size in (16, 50, 64):
            rounds = max(1, repeat // size)

            def batch(i: int, unbind: bool, size: int = size) -> None:
                items: list[dict[str, Any]] = []
                for k in range(i * size, (i + 1) * size):
                    item: dict[str, Any] = {"network": "n", "name": f"a{k}", "host": "h0"}
                    item.update({"unbind": True} if unbind else {"ofport": 2 + k})
                    items.append(item)
                r = api.post("/api/v1/bindings", json={"items": items})
                ok(r)
                assert all(o["status"] == 200 for o in r.json()["items"]), r.text

            out[f"batch{size}_bind"] = measure(lambda i: batch(i, False), rounds, size)
            out[f"batch{size}_unbind"] = measure(lambda i: batch(i, True), rounds, size)
        event.remove(Engine, "before_cursor_execute", _count)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--repeat", type=int, default=192, help="single calls per operation")
    p.add_argument("--postgres", action="store_true", help="a private PostgreSQL, not SQLite")
    args = p.parse_args(argv)
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="vx-stmts-")))
        url = stack.enter_context(database(args.postgres, tmp))
        result = {"database": "postgresql" if args.postgres else "sqlite", **run(url, args.repeat)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path.cwd()))
    raise SystemExit(main())
