"""Reads while the database cannot be reached, on a real SQLite file the test takes away.

Every read route answers through ``controller.api.stale.fallback``: from the in-memory
intent (here the recording sync's view, read from the same database before it went away),
marked ``X-Vxplane-Stale: 1`` at its revision; with no intent in memory, 503 and the
outage's ``Retry-After``, never a 500. The whole path (two controllers on PostgreSQL
stopped and started) is tests/db/test_outage.py; this one runs in the fast suite.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from controller.api import auth
from controller.api.stale import OUTAGE_RETRY_AFTER, REVISION_HEADER, STALE_HEADER
from controller.db import repo
from controller.db.session import make_engine, make_session_factory

READS = [
    "/api/v1/networks",
    "/api/v1/networks/blue",
    "/api/v1/hosts",
    "/api/v1/hosts/h1",
    "/api/v1/endpoints",
    "/api/v1/networks/blue/endpoints/web",
    "/healthz",
]


def _world(client: TestClient) -> dict[str, object]:
    assert client.post(
        "/api/v1/networks", json={"name": "blue", "subnet": "10.9.0.0/24"}
    ).is_success
    assert client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"}).is_success
    bound = client.put(
        "/api/v1/networks/blue/endpoints/web/binding?create=true",
        json={"host": "h1", "ofport": 5, "labels": {"app": "web"}},
    )
    assert bound.status_code == 201, bound.text
    spare = client.post("/api/v1/networks/blue/endpoints", json={"name": "spare"})
    assert spare.is_success, spare.text
    answer: dict[str, object] = bound.json()
    return answer


def _memory(db_url: str) -> object:
    """The intent as the flow engine holds it: read from the database, bound endpoints only."""
    engine = make_engine(db_url)
    try:
        with make_session_factory(engine)() as session:
            snap = repo.load_snapshot(session)
    finally:
        engine.dispose()
    return dataclasses.replace(snap, endpoints=tuple(e for e in snap.endpoints if e.host))


def _take_database_away(client: TestClient, db_url: str, tmp_path: Path) -> None:
    """Close the app's pooled connections and move the database's directory: every new
    connection fails with SQLite's own 'unable to open database file'."""
    assert isinstance(client.app, object)
    client.app.state.session_factory.kw["bind"].dispose()  # type: ignore[attr-defined]
    state = Path(str(make_url(db_url).database)).parent
    state.rename(tmp_path / "gone")


@pytest.fixture
def world(make_client, db_file_url: str, sync: RecordingSync, tmp_path: Path):  # type: ignore[no-untyped-def]
    client = make_client()
    bound = _world(client)
    fresh = {path: client.get(path) for path in READS}
    for path, answer in fresh.items():
        assert answer.status_code == 200 and STALE_HEADER not in answer.headers, path
    return client, bound, fresh


def test_reads_come_from_memory_marked_stale(
    world, db_file_url: str, sync: RecordingSync, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    client, bound, fresh = world
    sync.view = _memory(db_file_url)  # type: ignore[assignment]
    revision = sync.view.revision  # type: ignore[union-attr]
    _take_database_away(client, db_file_url, tmp_path)

    for path in READS:
        got = client.get(path)
        assert got.status_code == 200, (path, got.text)
        assert got.headers[STALE_HEADER] == "1", path
        assert got.headers[REVISION_HEADER] == str(revision), path

    nets = client.get("/api/v1/networks").json()
    assert [(n["name"], n["subnet"], n["endpoints"]) for n in nets] == [("blue", "10.9.0.0/24", 1)]
    assert client.get("/api/v1/networks/blue").json() == nets[0]
    hosts = client.get("/api/v1/hosts").json()
    assert [(h["name"], h["underlay_ip"], h["endpoints"]) for h in hosts] == [
        ("h1", "198.18.0.1", 1)
    ]
    assert client.get("/api/v1/hosts/h1").json()["master"] is None  # the database names it
    (web,) = client.get("/api/v1/endpoints").json()  # the reserved one is not in memory
    for field in ("network", "name", "ip", "mac", "host", "ofport", "revision", "labels"):
        assert web[field] == bound[field], field
    assert client.get("/api/v1/networks/blue/endpoints/web").json()["ip"] == bound["ip"]
    assert client.get("/healthz").json()["status"] == "degraded"

    # unknown names answer as they would from the database; a reserved endpoint: 503
    assert client.get("/api/v1/networks/red").status_code == 404
    assert client.get("/api/v1/hosts/h9").status_code == 404
    assert client.get("/api/v1/endpoints?network=red").status_code == 404
    assert client.get("/api/v1/endpoints?host=h9").json() == []
    spare = client.get("/api/v1/networks/blue/endpoints/spare")
    assert spare.status_code == 503 and "not bound" in spare.json()["detail"]
    # a write is refused whole
    refused = client.post("/api/v1/networks", json={"name": "red", "subnet": "10.8.0.0/24"})
    assert refused.status_code == 503, refused.text
    assert refused.headers["retry-after"] == str(OUTAGE_RETRY_AFTER)


def test_no_intent_in_memory_answers_503_not_500(
    world, db_file_url: str, sync: RecordingSync, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    client, _, _ = world
    assert sync.view is None  # the engine never read the database
    _take_database_away(client, db_file_url, tmp_path)
    for path in READS:
        got = client.get(path)
        assert got.status_code == 503, (path, got.status_code, got.text)
        assert got.headers["retry-after"] == str(OUTAGE_RETRY_AFTER), path
        assert STALE_HEADER not in got.headers, path
        assert "database is unavailable" in got.json()["detail"], path


def test_a_broken_database_is_not_papered_over_from_memory(
    world, db_file_url: str, sync: RecordingSync, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    """Only an unreachable database is answered from memory: a file that is no database
    (SQLite's DatabaseError, not a lost connection) fails the read as it is."""
    client, _, _ = world
    monkeypatch.setattr(auth, "CACHE_SECONDS", 3600.0)  # the token's check is not the read
    sync.view = _memory(db_file_url)  # type: ignore[assignment]
    client.app.state.session_factory.kw["bind"].dispose()  # type: ignore[attr-defined]
    path = Path(str(make_url(db_file_url).database))
    for extra in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        extra.unlink(missing_ok=True)
    path.write_bytes(b"this is not a database\n" * 512)
    for read in READS:
        with pytest.raises(DatabaseError, match="not a database"):
            client.get(read)
