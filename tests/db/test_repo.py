"""The repository on SQLite and a real PostgreSQL: allocation, revisions, snapshot, concurrency."""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from controller.db import repo
from controller.db.models import Base
from controller.db.session import make_engine, make_session_factory, session_scope
from controller.errors import AddressExhausted, Conflict
from controller.model import Block, EndpointState

A = IPv4Address


def test_allocation_binding_and_snapshot(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        _, rev_net = repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"), vni=42)
    with session_scope(factory) as s:
        assert repo.count_hosts(s) == 0
        _, rev_host = repo.register_host(s, "h1", A("198.18.0.1"), dpid=0xAB)
    assert rev_host == rev_net + 1
    with session_scope(factory) as s:
        assert repo.count_hosts(s) == 1
    with session_scope(factory) as s:
        ep, created, rev_block = repo.create_endpoint(s, "n1", "web", host="h1")
    assert created and ep.ip == A("10.0.0.2") and rev_block == rev_host + 1
    with session_scope(factory) as s:
        again, created, rev = repo.create_endpoint(s, "n1", "web")
    assert not created and rev is None and again.ip == ep.ip
    with session_scope(factory) as s:
        bound, rev_bind = repo.bind_endpoint(s, "n1", "web", "h1", 7, port_name="vx-web")
    assert bound.state is EndpointState.PENDING and bound.revision == rev_bind
    with session_scope(factory) as s:
        assert repo.bind_endpoint(s, "n1", "web", "h1", 7)[1] is None  # idempotent

    with session_scope(factory) as s:
        snap = repo.load_snapshot(s)
        assert repo.current_revision(s) == snap.revision == rev_bind
    assert snap.networks["n1"].vni == 42
    assert snap.hosts["h1"].dpid == 0xAB and snap.hosts["h1"].last_seen is not None
    assert snap.blocks == (Block("n1", IPv4Network("10.0.0.0/26"), "h1"),)
    (endpoint,) = snap.endpoints
    assert (endpoint.host, endpoint.ofport, endpoint.mac) == ("h1", 7, "0a:58:0a:00:00:02")
    assert endpoint.bound_rev == rev_bind

    with session_scope(factory) as s:
        assert repo.mark_ready(s, rev_bind - 1) == 0
    with session_scope(factory) as s:
        assert repo.mark_ready(s, rev_bind) == 1
    with session_scope(factory) as s:
        ready = repo.get_endpoint(s, "n1", "web")
    assert ready.state is EndpointState.READY and ready.ready_at is not None


def test_host_delete_releases_blocks_and_endpoints(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"))
    with session_scope(factory) as s:
        repo.register_host(s, "h1", A("198.18.0.1"))
    with session_scope(factory) as s:
        repo.create_endpoint(s, "n1", "a", host="h1")
    with session_scope(factory) as s:
        repo.bind_endpoint(s, "n1", "a", "h1", 3)
    with session_scope(factory) as s:
        repo.delete_host(s, "h1")
    with session_scope(factory) as s:
        snap = repo.load_snapshot(s)
    assert snap.blocks == () and snap.hosts == {}
    (endpoint,) = snap.endpoints
    assert (endpoint.host, endpoint.state, endpoint.ip) == (
        None,
        EndpointState.RESERVED,
        A("10.0.0.2"),
    )


def test_exhaustion_reclaims_then_refuses(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "tiny", IPv4Network("10.9.0.0/30"), reclaim=True)
    with session_scope(factory) as s:
        repo.register_host(s, "h1", A("198.18.0.1"))
    with session_scope(factory) as s:
        repo.create_endpoint(s, "tiny", "first")
    with session_scope(factory) as s:
        repo.bind_endpoint(s, "tiny", "first", "h1", 11)
    with pytest.raises(AddressExhausted, match="10.9.0.0/30"), session_scope(factory) as s:
        repo.create_endpoint(s, "tiny", "second")
    with session_scope(factory) as s:
        repo.unbind_endpoint(s, "tiny", "first")
    with session_scope(factory) as s:
        taken, created, _ = repo.create_endpoint(s, "tiny", "second")
    assert created and taken.ip == A("10.9.0.2")
    with session_scope(factory) as s:
        names = [e.name for e in repo.list_endpoints(s, network="tiny")]
    assert names == ["second"]


def test_concurrent_allocations_never_collide(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "n1", IPv4Network("10.0.0.0/22"), block_prefix=28)
    for i in range(4):
        with session_scope(factory) as s:
            repo.register_host(s, f"h{i}", A(f"198.18.0.{i + 1}"))
    errors: list[BaseException] = []
    ips: list[IPv4Address] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        try:
            for j in range(15):
                with session_scope(factory) as s:
                    ep, _, _ = repo.create_endpoint(s, "n1", f"w{index}-{j}", host=f"h{index % 4}")
                with session_scope(factory) as s:
                    repo.bind_endpoint(s, "n1", ep.name, f"h{index % 4}", 100 * index + j + 2)
                with lock:
                    ips.append(ep.ip)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    assert len(ips) == len(set(ips)) == 120
    with session_scope(factory) as s:
        snap = repo.load_snapshot(s)
        assert snap.revision == repo.current_revision(s)
    assert len(snap.endpoints) == 120
    cidrs = [block.cidr for block in snap.blocks]
    assert len(cidrs) == len(set(cidrs))
    assert {block.host for block in snap.blocks} == {"h0", "h1", "h2", "h3"}


def test_concurrent_network_creation_gets_distinct_vnis(factory: sessionmaker[Session]) -> None:
    results: list[int] = []
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            with session_scope(factory) as s:
                record, _ = repo.create_network(s, f"n{index}", IPv4Network("10.0.0.0/24"))
            results.append(record.vni)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(results) == list(range(1, 9))


def test_duplicate_underlay_ip_is_a_conflict(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.register_host(s, "h1", A("198.18.0.1"), dpid=1)
    with pytest.raises(Conflict, match="h1"), session_scope(factory) as s:
        repo.register_host(s, "h2", A("198.18.0.1"))
    with pytest.raises(Conflict, match="dpid"), session_scope(factory) as s:
        repo.register_host(s, "h2", A("198.18.0.2"), dpid=1)


def test_create_all_seeds_the_revision_row(tmp_path: object) -> None:
    engine = make_engine(f"sqlite:///{tmp_path}/plain.db")
    try:
        Base.metadata.create_all(engine)
        with session_scope(make_session_factory(engine)) as s:
            assert repo.current_revision(s) == 0
            _, revision = repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"))
        assert revision == 1
    finally:
        engine.dispose()


def test_snapshot_reads_one_consistent_view(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"))
    with factory() as reader:
        first = repo.load_snapshot(reader)
        if reader.get_bind().dialect.name == "postgresql":
            level = reader.execute(text("SHOW transaction_isolation")).scalar()
            assert level == "repeatable read"
        with session_scope(factory) as writer:  # commits while the reader's view is open
            repo.create_network(writer, "n2", IPv4Network("10.0.1.0/24"))
        assert repo.current_revision(reader) == first.revision  # still the reader's view
    with factory() as fresh:
        assert set(repo.load_snapshot(fresh).networks) == {"n1", "n2"}
        if fresh.get_bind().dialect.name == "postgresql":
            fresh.rollback()
            level = fresh.execute(text("SHOW transaction_isolation")).scalar()
            assert level == "read committed"  # the option did not stick to the pooled connection


def test_mark_ready_only_on_given_hosts(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"))
    for i in (1, 2):
        with session_scope(factory) as s:
            repo.register_host(s, f"h{i}", A(f"198.18.0.{i}"))
        with session_scope(factory) as s:
            repo.create_endpoint(s, "n1", f"e{i}", host=f"h{i}")
        with session_scope(factory) as s:
            repo.bind_endpoint(s, "n1", f"e{i}", f"h{i}", 11)
    with session_scope(factory) as s:
        top = repo.current_revision(s)
        assert repo.mark_ready(s, top, hosts=["h2", "h9"]) == 1
    with session_scope(factory) as s:
        states = {e.name: e.state for e in repo.list_endpoints(s)}
    assert states == {"e1": EndpointState.PENDING, "e2": EndpointState.READY}


def test_snapshot_after_a_read_in_the_same_session(factory: sessionmaker[Session]) -> None:
    with session_scope(factory) as s:
        repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"))
    with factory() as s:
        revision = repo.current_revision(s)  # the engine reads this first, then the snapshot
        snap = repo.load_snapshot(s)
        assert snap.revision == revision and set(snap.networks) == {"n1"}
        if s.get_bind().dialect.name == "postgresql":
            level = s.execute(text("SHOW transaction_isolation")).scalar()
            assert level == "repeatable read"


def test_a_host_skips_addresses_of_its_block_that_others_hold(
    factory: sessionmaker[Session],
) -> None:
    # the allocator looks up only the addresses of the host's own blocks: an address there
    # held by a reservation (requested, no host) or by another host's endpoint is skipped,
    # the same address in another network is not
    with session_scope(factory) as s:
        repo.create_network(s, "n1", IPv4Network("10.0.0.0/24"))
        repo.create_network(s, "n2", IPv4Network("10.0.0.0/24"))
    with session_scope(factory) as s:
        repo.register_host(s, "h1", A("198.18.0.1"))
        repo.register_host(s, "h2", A("198.18.0.2"))
    with session_scope(factory) as s:
        assert repo.create_endpoint(s, "n1", "a", host="h1")[0].ip == A("10.0.0.2")
    with session_scope(factory) as s:
        repo.create_endpoint(s, "n1", "kept", ip=A("10.0.0.3"))
        repo.create_endpoint(s, "n1", "other", ip=A("10.0.0.4"), host="h2")
        repo.create_endpoint(s, "n2", "elsewhere", ip=A("10.0.0.5"))
    with session_scope(factory) as s:
        assert repo.create_endpoint(s, "n1", "b", host="h1")[0].ip == A("10.0.0.5")
    with session_scope(factory) as s:
        assert repo.create_endpoint(s, "n1", "c", host="h2")[0].ip == A("10.0.0.64")


def test_the_host_watch_reads_heartbeats_as_the_records_say(
    factory: sessionmaker[Session],
) -> None:
    """``host_heartbeats`` (two columns, no records) gives the host watch what the full
    records give it: the same names and heartbeat times, so the same lost/alive events."""
    from datetime import UTC, datetime, timedelta

    from controller.hostwatch import HostWatch

    t0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    with session_scope(factory) as s:
        for i in (1, 2):
            repo.register_host(s, f"h{i}", A(f"198.18.0.{i}"))
            repo.heartbeat(s, f"h{i}", now=t0)
    later = t0 + timedelta(seconds=10)
    with session_scope(factory) as s:
        repo.heartbeat(s, "h2", now=later)
    with session_scope(factory) as s:
        light, full = repo.host_heartbeats(s), repo.list_hosts(s)
    assert sorted((h.name, h.last_seen) for h in light) == [(h.name, h.last_seen) for h in full]
    assert [h.last_seen for h in full] == [t0, later]
    watch = HostWatch()
    assert watch.check(light, t0, 3) == []
    (lost,) = watch.check(light, later, 3)
    assert lost == ("host.lost", {"host": "h1", "last_seen": t0.isoformat()})
