"""Group commit (controller.api.writer) on SQLite and a real PostgreSQL: queued writes share
one transaction, each answered after the commit with its own result or error; a failing write
rolls back alone; a full queue refuses at once (Busy); the flow sync hears the batch's last
revision once, the event hub each write's notes."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from controller.api.writer import Writer
from controller.auth import Principal, Role
from controller.db import repo
from controller.db.session import session_scope
from controller.errors import Busy, Conflict, NotFound
from controller.events import EventHub
from controller.sync import NullSync


@pytest.fixture
def world(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Network ``n`` (10.0.0.0/24) and host h1."""
    with session_scope(factory) as s:
        repo.create_network(s, "n", IPv4Network("10.0.0.0/24"))
    with session_scope(factory) as s:
        repo.register_host(s, "h1", IPv4Address("198.18.0.1"))
    return factory


class Gate:
    """A write that holds the writer thread until ``open``: what is submitted meanwhile
    queues up and is taken as one batch afterwards."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, session: Session) -> tuple[str, None]:
        self.entered.set()
        assert self.release.wait(30)
        return "gate", None

    def hold(self, writer: Writer) -> Future[str]:
        future = writer.submit(self)
        assert self.entered.wait(30)
        return future


def bind(name: str, ofport: int) -> Any:
    def write(session: Session) -> tuple[Any, int | None]:
        record, _, revision = repo.attach_endpoint(session, "n", name, "h1", ofport, create=True)
        return record, revision

    return write


def test_queued_writes_commit_together_and_a_failure_stays_alone(
    world: sessionmaker[Session],
) -> None:
    sync, hub = NullSync(), EventHub(100)
    writer = Writer(world, sync, hub, batch_max=64)
    try:
        gate = Gate()
        held = gate.hold(writer)
        agent = Principal("aaaaaaaaaaaa", Role.agent, host="h1")
        good = [writer.submit(bind(f"e{i}", 10 + i), agent) for i in range(5)]
        # the same port as e0: a Conflict inside its savepoint, after e0 in the same batch
        bad = writer.submit(bind("clash", 10), agent)
        later = writer.submit(bind("e9", 30), agent)
        gate.release.set()
        assert held.result(30) == "gate"
        records = [f.result(30) for f in good] + [later.result(30)]
        with pytest.raises(Conflict, match="ofport 10"):
            bad.result(30)
        assert writer.batches == 2  # the gate alone, then the seven writes as one transaction
        with world() as s:
            names = {e.name for e in repo.list_endpoints(s, network="n")}
            assert names == {"e0", "e1", "e2", "e3", "e4", "e9"}  # not "clash"
            assert repo.current_revision(s) == max(r.revision for r in records)
        assert sync.notified[-1] == max(r.revision for r in records)
        assert len(sync.notified) == 1  # one notification for the batch
        bound = [e for e in hub.recent() if e.type == "endpoint.bound"]
        assert [e.data["endpoint"] for e in bound] == ["e0", "e1", "e2", "e3", "e4", "e9"]
        assert {e.data["by"] for e in bound} == {agent.name}
    finally:
        writer.close()


def test_errors_are_raised_to_each_writer(world: sessionmaker[Session]) -> None:
    writer = Writer(world, NullSync(), None)
    try:

        def missing(session: Session) -> tuple[Any, int | None]:
            return repo.unbind_endpoint(session, "n", "nobody")

        with pytest.raises(NotFound, match="nobody"):
            writer.submit(missing).result(30)
        assert writer.submit(bind("ok", 5)).result(30).ofport == 5
    finally:
        writer.close()


def test_a_full_queue_refuses_at_once(world: sessionmaker[Session]) -> None:
    writer = Writer(world, NullSync(), None, queue_max=2, retry_after=3)
    try:
        gate = Gate()
        held = gate.hold(writer)
        queued = [writer.submit(bind(f"q{i}", 20 + i)) for i in range(2)]
        with pytest.raises(Busy) as refused:
            writer.submit(bind("q9", 29))
        assert refused.value.retry_after == 3
        gate.release.set()
        held.result(30)
        assert [f.result(30).name for f in queued] == ["q0", "q1"]
        with world() as s:
            assert "q9" not in {e.name for e in repo.list_endpoints(s, network="n")}
    finally:
        writer.close()


def test_close_finishes_the_queue_then_refuses(world: sessionmaker[Session]) -> None:
    writer = Writer(world, NullSync(), None)
    gate = Gate()
    held = gate.hold(writer)
    queued = writer.submit(bind("last", 9))
    closing = threading.Thread(target=writer.close)
    closing.start()
    gate.release.set()
    closing.join(30)
    assert held.result(0) == "gate" and queued.result(0).name == "last"
    with pytest.raises(Busy, match="shutting down"):
        writer.submit(bind("after", 10))
