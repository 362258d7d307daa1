"""Health, OpenAPI and the app factory."""

from __future__ import annotations

from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.db.session import make_engine, make_session_factory


def test_healthz_reports_the_revision(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok", "revision": 0}
    client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1"})
    assert client.get("/healthz").json() == {"status": "ok", "revision": 1}


def test_openapi_and_docs(client: TestClient) -> None:
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert "/api/v1/networks/{network}/endpoints/{name}/binding" in paths
    assert "/api/v1/hosts/{name}/heartbeat" in paths


def test_unmigrated_database_answers_503(tmp_path) -> None:  # type: ignore[no-untyped-def]
    app = create_app(Settings(db_url=f"sqlite:///{tmp_path}/empty.db", allowed_hosts=["*"]))
    with TestClient(app) as client:
        r = client.get("/healthz")
    assert r.status_code == 503 and "retry" in r.json()["detail"]


def test_session_factory_injection(db_file_url: str) -> None:
    engine = make_engine(db_file_url)
    app = create_app(
        Settings(db_url="sqlite:////nonexistent/x.db", allowed_hosts=["testserver"]),
        session_factory=make_session_factory(engine),
    )
    with TestClient(app) as client:
        assert client.get("/healthz").json()["status"] == "ok"
    engine.dispose()
