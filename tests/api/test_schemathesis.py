"""Schemathesis over the OpenAPI schema, in-process against the ASGI app on a real SQLite file.

Every operation gets generated requests (valid and invalid), and every answer must be no 5xx
and match the schema: a documented status code, content type, headers and body. The run is
deterministic (``derandomize``: the examples are derived from the test itself, not drawn at
random) and small (``max_examples``), so it takes seconds and never fails now and then.

It runs twice: on the schema as served (path names generated from their patterns: mostly 404
and 422, which must be documented answers too), and on the schema with the path names drawn
from what the fixture made (``SEEDED``), so requests reach the routes' work: binds, moves,
unbinds, deletes, history.

Determinism needs one more thing: Schemathesis iterates over sets of strings while it builds
examples, so with Python's per-process string hashing the same seed gave other requests from
one run to the next (and a failure now and then). Each run is therefore a child process with
``PYTHONHASHSEED=0`` on a database of its own.

``GET /api/v1/events`` is an endless event stream: Schemathesis reads its answer only up to
the first event (``max-stream-events``), the ``hello``, so its status, headers and parameters
(``after``, ``Last-Event-ID``, ``types``) are fuzzed too; its frames are tested over real HTTP
in tests/api/test_events.py.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
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
AUTH: dict[str, str] = {}  # an admin token, made by make_app
# The event stream is read up to its first event (see the module docstring).
CONFIG = {"max-stream-events": 1, "request-timeout": 10}


def make_app(db_url: str) -> Any:
    """The app on a migrated SQLite file (see ``seed``), and an admin token in ``AUTH`` that
    every request carries (who may do what is tests/api/test_auth.py's role matrix)."""
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    with make_session_factory(engine)() as session:
        _, token = tokens.create_token(session, Role.admin)
        session.commit()
    engine.dispose()
    AUTH["Authorization"] = f"Bearer {token}"
    # Host headers are checked in tests/api/test_auth.py; here any is fine.
    return create_app(
        Settings(
            db_url=db_url,
            ready_timeout=0.1,
            trace_timeout=0.1,
            task_poll_max=0.1,
            allowed_hosts=["*"],
        )
    )


def seed(client: TestClient) -> None:
    """Networks, hosts and endpoints for the seeded run to find (``SEEDED``)."""
    client.post("/api/v1/networks", json={"name": "blue", "subnet": "10.1.0.0/16"})
    client.put("/api/v1/hosts/h1", json={"underlay_ip": "198.18.0.1", "dpid": 1})
    client.post("/api/v1/networks", json={"name": "red", "subnet": "10.2.0.0/29"})
    client.put("/api/v1/hosts/h2", json={"underlay_ip": "198.18.0.2"})
    client.post("/api/v1/networks/blue/endpoints", json={"name": "web"})
    client.put("/api/v1/networks/blue/endpoints/db/binding?create=true",
               json={"host": "h1", "ofport": 5})  # fmt: skip


def _config() -> schemathesis.Config:
    return schemathesis.Config.from_dict(CONFIG)


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
    """The app's schema without its bearer requirement: every request carries the admin token,
    so negative cases that "leave out" the token would be sent with it anyway (401 without a
    token, and 403 outside a role, are the role matrix's, tests/api/test_auth.py)."""
    spec = copy.deepcopy(app.openapi())
    spec.pop("security", None)
    for item in spec["paths"].values():
        for operation in item.values():
            operation.pop("security", None)
    return spec


def _plain(app: Any) -> Any:
    schema = schemathesis.openapi.from_dict(_spec(app), config=_config())
    schema.app = app
    return schema


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
    schema = schemathesis.openapi.from_dict(spec, config=_config())
    schema.app = app
    return schema


def fuzz(app: Any, seeded: bool) -> list[str]:
    """Every operation, valid and invalid requests; the failures as text."""
    schema = _seeded(app) if seeded else _plain(app)
    # The seeded schema narrows path names to a list the API does not have: a name outside it
    # is not invalid input, so the seeded run sends valid requests only.
    modes = [GenerationMode.POSITIVE] if seeded else list(GenerationMode)
    failures = []
    ran = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in modes:
            ran += 1
            failure = _run(operation, mode)
            if failure:
                failures.append(failure)
    if ran < 15:
        failures.append(f"only {ran} operation runs: the schema lost its operations?")
    return failures


@pytest.mark.parametrize("seeded", [False, True], ids=["generated-names", "seeded-names"])
def test_api_answers_match_the_schema_and_never_5xx(tmp_path: Path, seeded: bool) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONHASHSEED": "0",
        "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]),
    }
    argv = [sys.executable, __file__, f"sqlite:///{tmp_path}/vxplane.db"]
    proc = subprocess.run(
        [*argv, "seeded"] if seeded else argv,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-30000:]


def test_a_binding_conflict_without_an_endpoint_matches_the_schema(tmp_path: Path) -> None:
    """An address conflict of a binding is ``{"detail"}`` only; the 409 schema of the binding
    route (EndpointConflict) required ``endpoint`` too (found by the fuzzing above)."""
    app = make_app(f"sqlite:///{tmp_path}/vxplane.db")
    with TestClient(app, headers=AUTH) as client:
        seed(client)
        r = client.put(
            "/api/v1/networks/blue/endpoints/web/binding",
            json={"host": "h1", "ofport": 9, "ip": "10.1.0.99"},
        )
    assert r.status_code == 409 and set(r.json()) == {"detail"}, r.text
    schema = _plain(app)
    operation = schema["/api/v1/networks/{network}/endpoints/{name}/binding"]["PUT"]
    operation.validate_response(r)


def main(argv: list[str]) -> int:
    """``test_schemathesis.py DB_URL [seeded]``: one run; prints the failures, exit 1 if any."""
    app = make_app(argv[0])
    with TestClient(app, headers=AUTH) as client:
        seed(client)
        failures = fuzz(app, seeded=argv[1:] == ["seeded"])
    print("\n\n".join(failures) or "no failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
