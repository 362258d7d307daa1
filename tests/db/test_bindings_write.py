"""The set-based bind/unbind write (controller.db.bindings) on SQLite and a real PostgreSQL:
items checked in order against the state the items before left, one revision for the write,
history and change log per item, a failed item changing nothing, and a statement count that
does not grow with the number of items."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network

import pytest
from sqlalchemy import event
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from controller.auth import Forbidden
from controller.db import bindings, changelog, changes, repo
from controller.db.bindings import Binding
from controller.db.models import Base
from controller.db.session import session_scope
from controller.errors import Conflict, NotFound
from controller.intent import ENDPOINT, endpoint_key

A = IPv4Address


@pytest.fixture
def world(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Network ``n``, hosts h1 and h2, endpoints e0..e79 of ``n`` (unbound, blocks on h1)."""
    with session_scope(factory) as s:
        repo.create_network(s, "n", IPv4Network("10.0.0.0/24"))
    for i in (1, 2):
        with session_scope(factory) as s:
            repo.register_host(s, f"h{i}", A(f"198.18.0.{i}"))
    with session_scope(factory) as s:
        for k in range(80):
            repo.create_endpoint(s, "n", f"e{k}", host="h1")
    return factory


def where(factory: sessionmaker[Session]) -> dict[str, tuple[str | None, int | None]]:
    with session_scope(factory) as s:
        return {e.name: (e.host, e.ofport) for e in repo.list_endpoints(s)}


def test_items_see_what_the_items_before_them_did(world: sessionmaker[Session]) -> None:
    with session_scope(world) as s:
        repo.attach_endpoint(s, "n", "e0", "h1", 5)
        before = repo.current_revision(s)
    items = [
        Binding("n", "e1", "h1", 5),  # 409: e0 holds port 5
        Binding("n", "e0", "h1"),  # unbind e0: port 5 free now
        Binding("n", "e1", "h1", 5),  # so this one gets it
        Binding("n", "e2", "h1", 6),
        Binding("n", "e2", "h1", 6),  # again: no change
        Binding("n", "e3", "h1", 6),  # 409: e2 holds port 6 now
        Binding("n", "e2", "h2", 7, move=True),  # moved
        Binding("n", "nope", "h1", 8),  # 404
        Binding("n", "e4", "h3", 9),  # 404: no such host
    ]
    with session_scope(world) as s:
        done = bindings.write(s, items)
        notes = changes.take(s)
    errors = [type(d.error).__name__ if d.error else None for d in done]
    assert errors == [
        "Conflict", None, None, None, None, "Conflict", None, "NotFound", "NotFound",
    ]  # fmt: skip
    assert "bound to endpoint 'e0' of network 'n'" in str(done[0].error)
    assert "bound to endpoint 'e2' of network 'n'" in str(done[5].error)
    revision = before + 1  # one bump for the whole write
    assert [d.revision for d in done] == [None, revision, revision, revision, None, None,
                                          revision, None, None]  # fmt: skip
    assert done[6].record is not None and done[6].record.host == "h2"
    assert [(k, d["endpoint"]) for k, d in notes] == [
        ("endpoint.unbound", "e0"), ("endpoint.bound", "e1"), ("endpoint.bound", "e2"),
        ("endpoint.moved", "e2"),
    ]  # fmt: skip
    assert notes[3][1]["from_host"] == "h1"
    now = where(world)
    assert (now["e0"], now["e1"], now["e2"], now["e3"]) == (
        (None, None),
        ("h1", 5),
        ("h2", 7),
        (None, None),
    )
    with session_scope(world) as s:
        assert [m.kind for m in repo.endpoint_history(s, "n", "e2")] == ["moved", "bound"]
        assert repo.get_endpoint(s, "n", "e2").revision == revision
        assert repo.current_revision(s) == revision
        read = changelog.read_changes(s, before)
    assert read is not None
    (rev, group), = read[1]  # fmt: skip
    assert rev == revision
    assert {c.key for c in group if c.kind == ENDPOINT} == {
        endpoint_key("n", e) for e in ("e0", "e1", "e2")
    }


def test_a_write_that_changes_nothing_bumps_nothing(world: sessionmaker[Session]) -> None:
    with session_scope(world) as s:
        before = repo.current_revision(s)
        done = bindings.write(s, [Binding("n", "e0", "h1"), Binding("n", "x", "h1", 3)])
    assert done[0].revision is None and isinstance(done[1].error, NotFound)
    with session_scope(world) as s:
        assert repo.current_revision(s) == before


def test_scope_sees_where_each_endpoint_is_bound(world: sessionmaker[Session]) -> None:
    with session_scope(world) as s:
        repo.attach_endpoint(s, "n", "e0", "h2", 4)
    seen: list[tuple[str, str]] = []

    def scope(item: Binding, host: str, last_seen: object) -> None:
        seen.append((item.name, host))
        if host != "h1":
            raise Forbidden(f"bound to {host}")

    items = [Binding("n", "e0", "h1", 4, move=True), Binding("n", "e1", "h1", 5),
             Binding("n", "e1", "h1", 6, move=True)]  # fmt: skip
    with session_scope(world) as s:
        done = bindings.write(s, items, scope=scope)
    assert isinstance(done[0].error, Forbidden) and done[1].error is None
    assert seen == [("e0", "h2"), ("e1", "h1")]  # e1 bound to h1 by the item before
    assert where(world)["e0"] == ("h2", 4) and where(world)["e1"] == ("h1", 6)


def test_creates_and_binds_in_one_write(world: sessionmaker[Session]) -> None:
    items = [
        Binding("n", "new1", "h2", 10, create=True),  # claims h2's first block
        Binding("n", "new1", "h2", 10, create=True),  # found again: no change
        Binding("n", "new2", "h2", 10, create=True),  # 409: port taken, nothing made
        Binding("n", "new3", "h2", 11, create=True, ip=A("10.0.0.2")),  # 409: e0 holds it
        Binding("n", "new4", "h2", 12, create=True),
    ]
    with session_scope(world) as s:
        before = repo.current_revision(s)
        done = bindings.write(s, items)
        notes = changes.take(s)
    assert [d.created for d in done] == [True, False, False, False, True]
    assert isinstance(done[2].error, Conflict) and isinstance(done[3].error, Conflict)
    assert {d.revision for d in done if d.revision is not None} == {before + 1}
    assert [(k, d["endpoint"]) for k, d in notes] == [
        ("endpoint.created", "new1"), ("endpoint.bound", "new1"),
        ("endpoint.created", "new4"), ("endpoint.bound", "new4"),
    ]  # fmt: skip
    now = where(world)
    assert now["new1"] == ("h2", 10) and now["new4"] == ("h2", 12)
    assert "new2" not in now and "new3" not in now
    with session_scope(world) as s:
        snap = repo.load_snapshot(s)
        assert [m.kind for m in repo.endpoint_history(s, "n", "new4")] == ["bound"]
    assert sorted({b.host for b in snap.blocks}) == ["h1", "h2"]


def test_a_port_taken_behind_the_reads_back_is_a_conflict(
    world: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The unique index catches what the read of the port holders missed (a concurrent bind
    on PostgreSQL): one item answers 409, several raise for the caller to run each alone."""
    with session_scope(world) as s:
        repo.attach_endpoint(s, "n", "e0", "h1", 5)
    real = bindings._Write._targets

    def blind(self: bindings._Write) -> dict[tuple[int, int], tuple[int, str, str]]:
        real(self)
        return {}  # as if nobody held any port

    monkeypatch.setattr(bindings._Write, "_targets", blind)
    with pytest.raises(Conflict, match="ofport 5 of host 'h1' is bound to another endpoint"):
        with session_scope(world) as s:
            repo.attach_endpoint(s, "n", "e1", "h1", 5)
    with pytest.raises(IntegrityError):
        with session_scope(world) as s:
            bindings.write(s, [Binding("n", "e2", "h1", 6), Binding("n", "e1", "h1", 5)])
    assert where(world)["e1"] == (None, None) and where(world)["e2"] == (None, None)


@pytest.mark.parametrize("unbind", [False, True])
def test_statements_do_not_grow_with_the_items(world: sessionmaker[Session], unbind: bool) -> None:
    """A batch of 8 and one of 64 send the same number of statements."""
    counts = []
    sent: list[str] = []

    def listen(*args: object) -> None:
        sent.append(str(args[2]))

    for size, first in ((8, 0), (64, 8)):
        ports = {f"e{k}": 2 + k for k in range(first, first + size)}
        if unbind:
            with session_scope(world) as s:
                bindings.write(s, [Binding("n", e, "h1", p) for e, p in ports.items()])
        sent.clear()
        with session_scope(world) as s:
            engine = s.get_bind()
            event.listen(engine, "before_cursor_execute", listen)
            try:
                items = [Binding("n", e, "h1", None if unbind else p) for e, p in ports.items()]
                done = bindings.write(s, items)
            finally:
                event.remove(engine, "before_cursor_execute", listen)
        assert all(d.error is None and d.revision is not None for d in done)
        counts.append(len(sent))
    assert counts[0] == counts[1] and counts[0] <= 9, counts  # 8, and pg_notify on PostgreSQL


def test_labels_change_only_where_an_item_gives_them(world: sessionmaker[Session]) -> None:
    """One item relabels (written for every row of the UPDATE then), the others keep theirs."""
    with session_scope(world) as s:
        repo.set_endpoint_labels(s, "n", "e1", {"keep": "me"})
        repo.attach_endpoint(s, "n", "e0", "h1", 3)
    items = [
        Binding("n", "e1", "h1", 4),
        Binding("n", "e0", "h1", 3, labels={"app": "web"}),  # same port: a relabel only
        Binding("n", "e2", "h1", 5, labels={"tier": "db"}),
    ]
    with session_scope(world) as s:
        done = bindings.write(s, items)
    assert [d.revision is not None for d in done] == [True, True, True]
    with session_scope(world) as s:
        got = {e: repo.get_endpoint(s, "n", e) for e in ("e0", "e1", "e2")}
        history = repo.endpoint_history(s, "n", "e0")
    assert {e: r.labels for e, r in got.items()} == {
        "e0": {"app": "web"}, "e1": {"keep": "me"}, "e2": {"tier": "db"},
    }  # fmt: skip
    assert (got["e0"].ofport, got["e1"].ofport, got["e2"].ofport) == (3, 4, 5)
    assert [m.kind for m in history] == ["bound"]  # the relabel is no step of its history


def test_binds_read_columns_not_orm_rows(world: sessionmaker[Session]) -> None:
    """A write that creates nothing loads no ORM row: the hosts, networks and endpoints it
    reads are plain columns (an ORM load of the host per bind was the write's largest cost in
    the churn profiles); a create still loads its network as a row (the allocation needs it).
    Records and errors are those of the ORM path."""
    loaded: list[str] = []

    def on_load(target: object, _context: object) -> None:
        loaded.append(type(target).__name__)

    event.listen(Base, "load", on_load, propagate=True)
    try:
        with session_scope(world) as s:
            binds = [Binding("n", "e0", "h1", 5), Binding("n", "e1", "h2", 6),
                     Binding("n", "e2", "h1", 5), Binding("n", "e3", "h1", 4094)]  # fmt: skip
            done = bindings.write(s, binds)
            done += bindings.write(s, [Binding("n", "e0", "h1"), Binding("n", "e1", "h2")])
            assert loaded == []
            done += bindings.write(s, [Binding("n", "new", "h1", 9, create=True)])
            assert "NetworkRow" in loaded
    finally:
        event.remove(Base, "load", on_load)
    assert [type(d.error).__name__ if d.error else None for d in done] == [
        None, None, "Conflict", None, None, None, None,
    ]  # fmt: skip
    first = done[0].record
    assert first is not None and (first.host, first.ofport, first.network) == ("h1", 5, "n")
    assert first.prefixlen == 24 and first.gateway == A("10.0.0.1") and first.vni is not None
    assert done[1].record is not None and done[1].record.host == "h2"
    assert done[4].record is not None and done[4].record.host is None
    assert done[6].created and done[6].record is not None and done[6].record.ofport == 9
    assert where(world)["e3"] == ("h1", 4094)
