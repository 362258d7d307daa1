"""Schemathesis over the OpenAPI schema, in-process against the ASGI app on a real SQLite file.

Every operation gets generated requests (valid and invalid), and every answer must be no 5xx
and match the schema: a documented status code, content type, headers and body. The run is
deterministic (``derandomize``: the examples are derived from the test itself, not drawn at
random) and small (``max_examples``), so it takes seconds and never fails now and then.

It runs twice: on the schema as served (path names generated from their patterns: mostly 404
and 422, which must be documented answers too), and on the schema with the path names drawn
from what the fixture made (``SEEDED``), so requests reach the routes' work: binds, moves,
unbinds, deletes, history.

The one operation left out is ``GET /api/v1/events``: an endless event stream, which an
in-process call would read forever (tests/api/test_events.py covers it over real HTTP).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.specs.openapi.checks import positive_data_acceptance

from controller.api.app import create_app
from controller.auth import Role
from controller.config import Settings
from controller.db import migrate, tokens
from controller.db.session import make_engine, make_session_factory

MAX_EXAMPLES = 40
# "Schema-valid request rejected": the API checks more than JSON Schema can say (a subnet's
# host bits and reserved ranges, name rules, a gateway inside its subnet), and answers those
# with 422 and a clear message; that a 422 is a documented answer is checked, as is that
# schema-invalid requests are rejected (negative_data_rejection).
EXCLUDED_CHECKS = [positive_data_acceptance]
SEEDED = {"network": ["blue", "red"], "name": ["blue", "red", "h1", "h2", "web", "db", "a/b"]}
SKIPPED = {("GET", "/api/v1/events")}  # endless stream (see the module docstring)
AUTH: dict[str, str] = {}  # an admin token, made by the fixture (roles: test_auth.py)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The app on a migrated SQLite file, with a network, a host and endpoints to find."""
    path: Path = tmp_path_factory.mktemp("schemathesis") / "vxplane.db"
    url = f"sqlite:///{path}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        _, token = tokens.create_token(session, Role.admin)
        session.commit()
    engine.dispose()
    AUTH["Authorization"] = f"Bearer {token}"
    # Host headers are checked in tests/api/test_auth.py; here any is fine.
    app = create_app(Settings(db_url=url, ready_timeout=0.1, allowed_hosts=["*"]))
    with TestClient(app, headers=AUTH) as client:
        client.post("/api/v1/networks", json={"name": "blue", "subnet": "10.1.0.0/16"})
        client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": 1})
        client.post("/api/v1/networks", json={"name": "red", "subnet": "10.2.0.0/29"})
        client.put("/api/v1/hosts/h2", json={"underlay_ip": "198.18.0.2"})
        client.post("/api/v1/networks/blue/endpoints", json={"name": "web"})
        client.put("/api/v1/networks/blue/endpoints/db/binding?create=true",
                   json={"host": "h1", "ofport": 5})  # fmt: skip
        yield app


def _run(operation: Any, mode: GenerationMode) -> str | None:
    """Run ``operation``'s generated cases; the first failure as text, or None."""

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def check(case: schemathesis.Case) -> None:
        try:
            case.call_and_validate(headers=AUTH, excluded_checks=EXCLUDED_CHECKS)
        except (AssertionError, BaseExceptionGroup):  # schemathesis' own report
            raise
        except Exception as exc:  # the app raised: a 500 (the TestClient re-raises it)
            raise AssertionError(f"{case.as_curl_command()} raised {exc!r}") from exc

    try:
        check()
    except Unsatisfiable:  # nothing of the operation can be made invalid (no parameters)
        return None
    except (Exception, BaseExceptionGroup) as exc:  # a failed check: report it with the others
        return f"{operation.label} ({mode.value}): {exc}"
    return None


def _spec(app: Any) -> dict[str, Any]:
    """The app's schema without its bearer requirement: every request carries the fixture's
    admin token, so negative cases that "leave out" the token would be sent with it anyway
    (who may do what, and 401 without a token, is tests/api/test_auth.py's role matrix)."""
    spec = copy.deepcopy(app.openapi())
    spec.pop("security", None)
    for item in spec["paths"].values():
        for operation in item.values():
            operation.pop("security", None)
    return spec


def _seeded(app: Any) -> Any:
    """The app's schema with the path names drawn from what the fixture made, so generated
    requests reach the routes' work (bind, move, unbind, delete) and not only their 404."""
    spec = _spec(app)
    for item in spec["paths"].values():
        for operation in item.values():
            for param in operation.get("parameters", []):
                names = SEEDED.get(param["name"]) if param["in"] == "path" else None
                if names:
                    param["schema"] = {"type": "string", "enum": names}
    schema = schemathesis.openapi.from_dict(spec)
    schema.app = app
    return schema


@pytest.mark.parametrize("seeded", [False, True], ids=["generated-names", "seeded-names"])
def test_api_answers_match_the_schema_and_never_5xx(app: Any, seeded: bool) -> None:
    if seeded:
        schema = _seeded(app)
    else:
        schema = schemathesis.openapi.from_dict(_spec(app))
        schema.app = app
    failures = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if (operation.method.upper(), operation.path) in SKIPPED:
            continue
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            ran += 1
            failure = _run(operation, mode)
            if failure:
                failures.append(failure)
    assert ran >= 20
    assert not failures, "\n\n".join(failures)
