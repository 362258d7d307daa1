"""Create-and-bind in one transaction on SQLite and a real PostgreSQL: one revision, the same
notes as create then bind, revision checks, labels, and concurrent attaches of one new name."""

from __future__ import annotations

import threading
from ipaddress import IPv4Address, IPv4Network

import pytest
from sqlalchemy.orm import Session, sessionmaker

from controller.db import bindings, changelog, changes, repo
from controller.db.session import session_scope
from controller.errors import Conflict, InvalidRequest, NotFound
from controller.model import EndpointState

A = IPv4Address


@pytest.fixture
def world(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Network ``n`` (10.0.0.0/24) and hosts h1, h2."""
    with session_scope(factory) as s:
        repo.create_network(s, "n", IPv4Network("10.0.0.0/24"))
    for i in (1, 2):
        with session_scope(factory) as s:
            repo.register_host(s, f"h{i}", A(f"198.18.0.{i}"))
    return factory


def test_new_name_is_created_and_bound_at_one_revision(world: sessionmaker[Session]) -> None:
    with session_scope(world) as s:
        before = repo.current_revision(s)
    with session_scope(world) as s:
        ep, created, revision = repo.attach_endpoint(
            s, "n", "web", "h1", 7, port_name="vx-web", labels={"app": "web"}, create=True
        )
        notes = changes.take(s)
    assert created and revision == before + 1  # block claim and bind: one bump
    assert (ep.ip, ep.host, ep.ofport, ep.port_name) == (A("10.0.0.2"), "h1", 7, "vx-web")
    assert ep.state is EndpointState.PENDING and ep.revision == revision
    assert ep.labels == {"app": "web"}
    assert [kind for kind, _ in notes] == ["endpoint.created", "endpoint.bound"]
    assert notes[1][1] | {"revision": 0} == {
        "network": "n", "endpoint": "web", "ip": "10.0.0.2", "host": "h1",
        "from_host": None, "ofport": 7, "revision": 0,
    }  # fmt: skip
    with session_scope(world) as s:
        snap = repo.load_snapshot(s)
        assert [m.kind for m in repo.endpoint_history(s, "n", "web")] == ["bound"]
        assert repo.get_endpoint(s, "n", "web").labels == {"app": "web"}
    assert snap.revision == revision and [b.host for b in snap.blocks] == ["h1"]


def test_existing_name_is_bound_and_labels_replaced(world: sessionmaker[Session]) -> None:
    with session_scope(world) as s:
        first, _, _ = repo.create_endpoint(s, "n", "web", labels={"a": "1"})
    with session_scope(world) as s:
        ep, created, revision = repo.attach_endpoint(
            s, "n", "web", "h2", 3, ip=first.ip, labels={"b": "2"}, create=True
        )
    assert not created and revision is not None and ep.ip == first.ip and ep.host == "h2"
    assert ep.labels == {"b": "2"}
    with session_scope(world) as s:  # same binding again: nothing for the dataplane
        again, created, rev = repo.attach_endpoint(s, "n", "web", "h2", 3, create=True)
        assert changes.take(s) == []
    assert (created, rev, again.revision, again.labels) == (False, None, revision, {"b": "2"})
    with session_scope(world) as s:  # labels only: flow-relevant (policies select by them)
        _, _, rev = repo.attach_endpoint(s, "n", "web", "h2", 3, labels={"c": "3"})
    with session_scope(world) as s:
        assert rev == revision + 1 and repo.get_endpoint(s, "n", "web").labels == {"c": "3"}
        found = changelog.read_changes(s, revision)
    assert found is not None
    assert [[(c.kind, c.key) for c in group] for _, group in found[1]] == [[("endpoint", "n/web")]]
    assert found[1][0][1][0].value.labels == (("c", "3"),)  # type: ignore[union-attr]


def test_if_revision_must_match(world: sessionmaker[Session]) -> None:
    with pytest.raises(repo.RevisionMismatch, match="does not exist") as info:
        with session_scope(world) as s:
            repo.attach_endpoint(s, "n", "web", "h1", 11, if_revision=4, create=True)
    assert info.value.endpoint is None
    with session_scope(world) as s:
        ep, created, revision = repo.attach_endpoint(
            s, "n", "web", "h1", 11, if_revision=0, create=True
        )
    assert created and revision is not None
    with pytest.raises(repo.RevisionMismatch, match=f"at revision {revision}, not 0") as info:
        with session_scope(world) as s:
            repo.attach_endpoint(s, "n", "web", "h2", 2, labels={"x": "y"}, if_revision=0)
    assert info.value.endpoint == ep
    with session_scope(world) as s:
        assert repo.get_endpoint(s, "n", "web") == ep  # nothing changed
    with session_scope(world) as s:
        moved, _, _ = repo.attach_endpoint(s, "n", "web", "h2", 2, if_revision=revision)
    assert moved.host == "h2" and moved.revision > revision


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"host": "h9"}, NotFound, "host 'h9'"),
        ({"create": False}, NotFound, "endpoint 'web'"),
        ({"ip": A("10.0.0.9")}, Conflict, "held by endpoint 'db'"),
        ({"ip": A("10.0.1.9")}, InvalidRequest, "outside"),
    ],
)
def test_refused_attach_makes_nothing(
    world: sessionmaker[Session], kwargs: dict[str, object], error: type[Exception], words: str
) -> None:
    with session_scope(world) as s:
        repo.create_endpoint(s, "n", "db", ip=A("10.0.0.9"))
        revision = repo.current_revision(s)
    args: dict[str, object] = {"host": "h1", "create": True} | kwargs
    with pytest.raises(error, match=words), session_scope(world) as s:
        repo.attach_endpoint(s, "n", "web", ofport=11, **args)  # type: ignore[arg-type]
    with session_scope(world) as s:
        assert [e.name for e in repo.list_endpoints(s)] == ["db"]
        assert repo.current_revision(s) == revision
        assert repo.load_snapshot(s).blocks == ()


def test_existing_endpoint_with_another_ip_is_a_conflict(world: sessionmaker[Session]) -> None:
    with session_scope(world) as s:
        repo.create_endpoint(s, "n", "web")
    with pytest.raises(Conflict, match="already holds 10.0.0.2, not 10.0.0.50"):
        with session_scope(world) as s:
            repo.attach_endpoint(s, "n", "web", "h1", 11, ip=A("10.0.0.50"), create=True)


def test_concurrent_attaches_of_one_new_name(world: sessionmaker[Session]) -> None:
    """Eight writers attach the same new name at once: one creates it, the others bind it."""
    results: list[tuple[bool, int | None]] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def worker(index: int) -> None:
        try:
            start.wait()
            with session_scope(world) as s:
                _, created, revision = repo.attach_endpoint(
                    s, "n", "web", f"h{index % 2 + 1}", index + 2, create=True, move=True
                )
            results.append((created, revision))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sorted(created for created, _ in results) == [False] * 7 + [True]
    revisions = [revision for _, revision in results]
    assert None not in revisions and len(set(revisions)) == 8
    with session_scope(world) as s:
        (endpoint,) = repo.list_endpoints(s)
        steps = repo.endpoint_history(s, "n", "web")
    assert endpoint.revision == max(r for r in revisions if r is not None)
    assert len(steps) == 8 and steps[-1].kind == "bound"


def test_name_deleted_between_lookup_and_lock_is_a_conflict(
    world: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lookup saw the name, then another writer deleted it: 409 to retry, nothing made."""
    monkeypatch.setattr(bindings, "_existing", lambda _, pairs: set(pairs))
    with pytest.raises(Conflict, match="deleted while being bound: retry"):
        with session_scope(world) as s:
            repo.attach_endpoint(s, "n", "web", "h1", 11, create=True)
    with session_scope(world) as s:
        assert repo.list_endpoints(s) == []
