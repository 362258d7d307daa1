"""Cluster-wide event ids (issue 10, item 3): two real controller processes on one real
PostgreSQL database serve one event stream, so a client that fails over from one to the
other (an SSE client with ``Last-Event-ID``, and ``vxplane events -f`` given both) misses
nothing and sees nothing twice; on SQLite a controller restart keeps the ids (a client
resumes across it); and the log's order holds under concurrent writers. Loopback only.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import Session, sessionmaker

from controller.db import events as events_db
from controller.db import migrate
from controller.db.events import DbEventStore
from controller.db.session import make_engine, make_session_factory
from controller.events import EventHub
from tests.liveserver import free_port
from vxlab.launch import ControllerProcess

pytestmark = [pytest.mark.timeout(300)]

Stream = tuple[dict[str, Any], list[dict[str, Any]], list[str]]  # hello, events, named


def _start(db_url: str, tmp: Path, name: str) -> ControllerProcess:
    port = free_port()
    return ControllerProcess(
        db_url, tmp / f"{name}.log", port, free_port(),
        admin_token_file=tmp / f"admin-token-{name}",
        env={"VXPLANE_ADVERTISE_API": f"http://127.0.0.1:{port}", "VXPLANE_EVENTS_KEEPALIVE": "1"},
    ).start()  # fmt: skip


@pytest.fixture
def two(pg_db_url: str, tmp_path: Path) -> Iterator[list[ControllerProcess]]:
    ctls: list[ControllerProcess] = []
    try:
        for name in ("a", "b"):
            ctls.append(_start(pg_db_url, tmp_path, name))
        yield ctls
    finally:
        for ctl in ctls:
            ctl.stop()


def read_stream(
    ctl: ControllerProcess,
    last_event_id: int | None,
    until: Callable[[list[dict[str, Any]]], bool],
    timeout: float = 60.0,
) -> Stream:
    """Follow ``ctl``'s event stream (resuming after ``last_event_id``) until ``until`` holds
    for the events received; the hello, the events, and any named messages (resync)."""
    headers = {"Authorization": f"Bearer {ctl.token}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = str(last_event_id)
    hello: dict[str, Any] = {}
    events: list[dict[str, Any]] = []
    named: list[str] = []
    deadline = time.monotonic() + timeout
    with httpx.stream("GET", f"{ctl.url}/api/v1/events", headers=headers, timeout=30) as answer:
        assert answer.status_code == 200
        name = None
        for line in answer.iter_lines():  # a keep-alive comment at least every second
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = json.loads(line.removeprefix("data: "))
                if name == "hello":
                    hello = data
                elif name is not None:
                    named.append(name)
                else:
                    events.append(data)
                name = None
                if until(events):
                    return hello, events, named
            if time.monotonic() > deadline:
                raise AssertionError(f"stream of {ctl.url}: only {events} within {timeout} s")
    raise AssertionError(f"stream of {ctl.url} ended: {events}")


class _Cli:
    """`vxplane events -f -o json` as a child process; its JSON lines read by a thread."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def until(
        self, done: Callable[[list[dict[str, Any]]], bool], timeout: float = 60.0
    ) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not done(events):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"the CLI printed only {events}")
            try:
                events.append(json.loads(self.lines.get(timeout=left)))
            except queue.Empty:
                continue
        return events

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


def _follow_cli(api: str, token: str) -> _Cli:
    argv = [sys.executable, "-m", "controller.cli.main", "events", "-f", "-o", "json"]
    argv += ["--last", "1000", "--api", api, "--token", token]
    return _Cli(
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    )


def _create(ctl: ControllerProcess, name: str, octet: int) -> None:
    with ctl.client() as api:
        body = {"name": name, "subnet": f"10.{octet}.0.0/24"}
        api.post("/api/v1/networks", json=body).raise_for_status()


def _created(events: list[dict[str, Any]]) -> list[str]:
    return [e["data"]["network"] for e in events if e["type"] == "network.created"]


@pytest.mark.postgres
def test_a_stream_resumed_on_another_controller_misses_nothing_and_repeats_nothing(
    two: list[ControllerProcess],
) -> None:
    a, b = two
    with a.client() as api:
        start = api.get("/api/v1/events/recent").raise_for_status().json()["last_id"]
    cli = _follow_cli(f"{a.url},{b.url}", a.token)  # `vxplane events -f` given both
    _create(a, "n1", 91)
    _create(b, "n2", 92)  # written through the other controller: the same log
    _create(a, "n3", 93)
    hello_a, seen_a, named_a = read_stream(a, start, lambda ev: len(_created(ev)) >= 3)
    assert _created(seen_a) == ["n1", "n2", "n3"] and named_a == []
    # the client got as far as n2, then its controller died after writing n4 it never sent
    upto = next(e["id"] for e in seen_a if e["data"].get("network") == "n2")
    kept = [e for e in seen_a if e["id"] <= upto]
    try:
        # the CLI read /recent before it printed n3, so n4 reaches it over a's stream: it is
        # following a when a dies (without these waits a slow CLI started after a's death,
        # from b's /recent, and the failover was not tested at all)
        printed = cli.until(lambda ev: "n3" in _created(ev))
        _create(a, "n4", 94)
        printed += cli.until(lambda ev: "n4" in _created(ev))
        a.kill()
        _create(b, "n5", 95)
        printed += cli.until(lambda ev: "n5" in _created(ev))
    finally:
        cli.stop()
    assert _created(printed) == ["n1", "n2", "n3", "n4", "n5"], printed  # once each, in order
    ids = [e["id"] for e in printed]
    assert ids == sorted(set(ids))
    hello_b, seen_b, named_b = read_stream(b, upto, lambda ev: "n5" in _created(ev))
    assert named_b == [], "the other controller did not know the id: a resync"
    assert hello_b["epoch"] == hello_a["epoch"]  # one cluster, one sequence
    got = kept + seen_b
    ids = [e["id"] for e in got]
    assert ids == list(range(ids[0], ids[0] + len(ids))), ids  # no gap, no repeat
    assert _created(got) == ["n1", "n2", "n3", "n4", "n5"]
    # both controllers hold the same events under the same ids
    with b.client() as api:
        recent = api.get("/api/v1/events/recent", params={"after": start}).json()["events"]
    assert [(e["id"], e["type"], e["summary"]) for e in recent][: len(seen_a)] == [
        (e["id"], e["type"], e["summary"]) for e in seen_a
    ]


def test_ids_survive_a_controller_restart(tmp_path: Path) -> None:
    ctl = _start(f"sqlite:///{tmp_path}/vx.db", tmp_path, "one")
    try:
        _create(ctl, "before", 96)
        with ctl.client() as api:
            recent = api.get("/api/v1/events/recent").raise_for_status().json()
        ctl.stop()
        ctl.start()
        _create(ctl, "after", 97)
        hello, seen, named = read_stream(ctl, recent["last_id"], lambda ev: bool(_created(ev)))
    finally:
        ctl.stop()
    assert named == [] and hello["epoch"] == recent["epoch"]
    assert seen[0]["id"] == recent["last_id"] + 1 and _created(seen) == ["after"]


def test_two_hubs_on_one_database_share_one_sequence(factory: sessionmaker[Session]) -> None:
    """In-process, on SQLite and PostgreSQL: a write's events (staged in its transaction), a
    rolled-back write's (never seen, no id used) and a hub's own observations (outbox) reach
    both hubs under the same ids, with no gap."""
    store = DbEventStore(factory)
    one = EventHub(100, store, origin="one", poll=0.05)
    two = EventHub(100, store, origin="two", poll=0.05)
    one.start()
    two.start()
    try:
        with factory() as session:
            one.stage(session, [("network.created", {"network": "x", "vni": 1})])
            session.rollback()  # the write failed: nothing announced, no id taken
        notes = [("network.created", {"network": "blue", "vni": 2, "by": "admin"})]
        with factory() as session:
            one.stage(session, notes)
            session.commit()
        one.committed(notes)
        two.publish("switch.connected", dpid="00000000000000a1", host="h1", address="x:1")
        _until(lambda: one.last_id == 2 and two.last_id == 2)
    finally:
        one.stop()
        two.stop()
    seen = [(e.id, e.type, e.data) for e in one.recent()]
    assert seen == [(e.id, e.type, e.data) for e in two.recent()]
    assert seen == [
        (1, "network.created", {"network": "blue", "vni": 2, "by": "admin"}),
        (2, "switch.connected",
         {"dpid": "00000000000000a1", "host": "h1", "address": "x:1", "controller": "two"}),
    ]  # fmt: skip
    assert one.epoch == two.epoch != ""


@pytest.mark.postgres
def test_concurrent_writers_commit_in_id_order_and_a_tail_misses_none(
    pg_db_url: str,
) -> None:
    """Eight threads append events in transactions that linger before they commit, while a
    hub tails the log: it ends up with every id from 1, in order, none skipped (a reader
    that saw id k had seen every id before it)."""
    migrate.upgrade(pg_db_url)
    engine = make_engine(pg_db_url)
    factory = make_session_factory(engine)
    hub = EventHub(10_000, DbEventStore(factory), poll=0.01)
    hub.start()
    threads, per_thread, per_tx = 8, 15, 3

    def writer(n: int) -> None:
        for i in range(per_thread):
            with factory() as session:
                now = datetime.now(UTC)
                rows = [
                    (now, "host.alive", f"{n}/{i}/{j}", {"host": f"t{n}"}) for j in range(per_tx)
                ]
                events_db.append(session, rows)
                time.sleep(0.002)  # hold the counter a while: others queue behind it
                session.commit()
            hub.poke()

    try:
        workers = [threading.Thread(target=writer, args=(n,)) for n in range(threads)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        total = threads * per_thread * per_tx
        _until(lambda: hub.last_id == total)
        ids = [e.id for e in hub.recent(total)]
    finally:
        hub.stop()
        engine.dispose()
    assert ids == list(range(1, total + 1))
    by_tx: dict[str, list[int]] = {}
    for e in hub.recent(total):  # each transaction's events got consecutive ids
        by_tx.setdefault(e.summary.rsplit("/", 1)[0], []).append(e.id)
    assert all(v == list(range(v[0], v[0] + per_tx)) for v in by_tx.values())


def _until(check: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("not reached")
        time.sleep(0.02)
