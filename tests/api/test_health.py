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


def test_every_operation_declares_the_error_answers(client: TestClient) -> None:
    """401, 403, 404, 409, 422 and 503 on every operation, each ``{"detail": string}`` (the
    422 too: what ``validation_error`` sends, not FastAPI's list of objects)."""
    spec = client.get("/openapi.json").json()
    problem = spec["components"]["schemas"]["Problem"]
    assert problem["properties"]["detail"]["type"] == "string"
    assert "HTTPValidationError" not in spec["components"]["schemas"]
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in ("401", "403", "404", "409", "422", "503"):
                assert status in responses, (method, path, status)
                schema = responses[status]["content"]["application/json"]["schema"]
                assert schema["$ref"].rsplit("/", 1)[1] in ("Problem", "EndpointConflict")


def test_a_body_that_is_not_utf8_json_is_a_clear_400(client: TestClient) -> None:
    r = client.post(
        "/api/v1/networks",
        content=b'{"name": "\xff"}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 400
    assert r.json() == {
        "detail": "the request body is not JSON in UTF-8 (send Content-Type: application/json)"
    }
