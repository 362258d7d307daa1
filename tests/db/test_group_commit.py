"""Group commit (controller.api.writer) on SQLite and a real PostgreSQL: queued writes share
one transaction, each answered after the commit with its own result or error; a failing write
rolls back alone; a full queue refuses at once (Busy); the flow sync hears the batch's last
revision once, the event hub each write's notes."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from ipaddress import IPv4Address, IPv4Network
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from controller.api.writer import Writer
from controller.auth import Principal, Role
from controller.config import Settings
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
    """A write that holds the writer's thread until ``open``: what is submitted meanwhile
    queues up and is taken as one batch afterwards."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def __call__(self, session: Session) -> tuple[str, None]:
        self.entered.set()
        assert self.release.wait(30)
        return "gate", None

    async def hold(self, writer: Writer) -> asyncio.Future[str]:
        future = writer.submit(self)
        assert await asyncio.to_thread(self.entered.wait, 30)
        return future


def bind(name: str, ofport: int) -> Any:
    def write(session: Session) -> tuple[Any, int | None]:
        record, _, revision = repo.attach_endpoint(session, "n", name, "h1", ofport, create=True)
        return record, revision

    return write


def run(writer: Writer, scenario: Callable[[], Awaitable[None]]) -> None:
    """Run ``scenario`` in an event loop (the writer's home), then close the writer."""

    async def main() -> None:
        try:
            await scenario()
        finally:
            await writer.close()

    asyncio.run(main())


def test_queued_writes_commit_together_and_a_failure_stays_alone(
    world: sessionmaker[Session],
) -> None:
    sync, hub = NullSync(), EventHub(100)
    writer = Writer(world, sync, hub, batch_max=64)
    agent = Principal("aaaaaaaaaaaa", Role.agent, host="h1")

    async def scenario() -> None:
        gate = Gate()
        held = await gate.hold(writer)
        good = [writer.submit(bind(f"e{i}", 10 + i), agent) for i in range(5)]
        # the same port as e0: a Conflict inside its savepoint, after e0 in the same batch
        bad = writer.submit(bind("clash", 10), agent)
        later = writer.submit(bind("e9", 30), agent)
        gate.release.set()
        assert await held == "gate"
        records = [await f for f in good] + [await later]
        with pytest.raises(Conflict, match="ofport 10"):
            await bad
        assert writer.batches == 2  # the gate alone, then the seven writes as one transaction
        with world() as s:
            names = {e.name for e in repo.list_endpoints(s, network="n")}
            assert names == {"e0", "e1", "e2", "e3", "e4", "e9"}  # not "clash"
            assert repo.current_revision(s) == max(r.revision for r in records)
        assert sync.notified == [max(r.revision for r in records)]  # one, for the batch
        bound = [e for e in hub.recent() if e.type == "endpoint.bound"]
        assert [e.data["endpoint"] for e in bound] == ["e0", "e1", "e2", "e3", "e4", "e9"]
        assert {e.data["by"] for e in bound} == {agent.name}

    run(writer, scenario)


def test_errors_are_raised_to_each_writer(world: sessionmaker[Session]) -> None:
    writer = Writer(world, NullSync(), None)

    def missing(session: Session) -> tuple[Any, int | None]:
        return repo.unbind_endpoint(session, "n", "nobody")

    async def scenario() -> None:
        with pytest.raises(NotFound, match="nobody"):
            await writer.run(missing)
        assert (await writer.run(bind("ok", 5))).ofport == 5

    run(writer, scenario)


def test_a_write_alone_that_fails_halfway_commits_nothing(world: sessionmaker[Session]) -> None:
    """A write alone in its transaction runs without a SAVEPOINT: what it wrote before it
    failed is rolled back with the transaction, and the next write starts clean."""
    writer = Writer(world, NullSync(), None)

    def half(session: Session) -> tuple[Any, int | None]:
        repo.attach_endpoint(session, "n", "half", "h1", 7, create=True)
        raise Conflict("failed after its bind")

    async def scenario() -> None:
        with pytest.raises(Conflict, match="after its bind"):
            await writer.run(half)
        assert (await writer.run(bind("next", 7))).ofport == 7
        with world() as s:
            assert {e.name for e in repo.list_endpoints(s, network="n")} == {"next"}
            assert [m.kind for m in repo.endpoint_history(s, "n", "next")] == ["bound"]

    run(writer, scenario)


def test_a_full_queue_refuses_at_once(world: sessionmaker[Session]) -> None:
    writer = Writer(world, NullSync(), None, queue_max=2, retry_after=3)

    async def scenario() -> None:
        gate = Gate()
        held = await gate.hold(writer)
        queued = [writer.submit(bind(f"q{i}", 20 + i)) for i in range(2)]
        with pytest.raises(Busy) as refused:
            writer.submit(bind("q9", 29))
        assert refused.value.retry_after == 3
        gate.release.set()
        await held
        assert [(await f).name for f in queued] == ["q0", "q1"]
        with world() as s:
            assert "q9" not in {e.name for e in repo.list_endpoints(s, network="n")}

    run(writer, scenario)


def test_close_finishes_the_queue_then_refuses(world: sessionmaker[Session]) -> None:
    writer = Writer(world, NullSync(), None)

    async def scenario() -> None:
        gate = Gate()
        held = await gate.hold(writer)
        queued = writer.submit(bind("last", 9))
        closing = asyncio.ensure_future(writer.close())
        await asyncio.sleep(0)
        gate.release.set()
        await closing
        assert held.result() == "gate" and queued.result().name == "last"
        with pytest.raises(Busy, match="shutting down"):
            writer.submit(bind("after", 10))

    run(writer, scenario)


def test_workers_run_transactions_side_by_side(world: sessionmaker[Session]) -> None:
    """PostgreSQL's default: several writers of one write each, as concurrent transactions."""
    writer = Writer(world, NullSync(), None, batch_max=1, workers=2)

    async def scenario() -> None:
        first, second = Gate(), Gate()
        held = [await first.hold(writer), await second.hold(writer)]  # both inside at once
        queued = writer.submit(bind("third", 7))
        first.release.set()
        second.release.set()
        assert [await f for f in held] == ["gate", "gate"]
        assert (await queued).ofport == 7
        assert writer.batches == 3

    run(writer, scenario)


def test_write_path_defaults_per_database() -> None:
    assert Settings().write_path("sqlite") == (64, 1)
    assert Settings().write_path("postgresql") == (1, 16)
    assert Settings(write_batch_max=32).write_path("postgresql") == (32, 1)
    assert Settings(write_workers=4).write_path("postgresql") == (1, 4)
    assert Settings(write_batch_max=1).write_path("sqlite") == (1, 1)
