"""vxcommon.retry: which answers are retried after how long, and the agent's API passing the
controller's advice on in its own Retry-After."""

from __future__ import annotations

import pytest
from fastapi import APIRouter
from fastapi.testclient import TestClient

from hostagent.api.server import create_app
from hostagent.errors import ControllerUnavailable, NotFound
from vxcommon.retry import MAX_WAIT, advised_delay


@pytest.mark.parametrize(
    ("status", "header", "want"),
    [
        (503, "1", 1.0),
        (503, " 0 ", 0.0),
        (429, "2.5", 2.5),
        (503, "3600", MAX_WAIT),  # capped
        (503, None, None),  # no advice: not retried here
        (503, "Wed, 21 Oct 2015 07:28:00 GMT", None),  # a date is not honoured
        (503, "-1", None),
        (503, "nan", None),
        (500, "1", None),
        (409, "1", None),
    ],
)
def test_advised_delay(status: int, header: str | None, want: float | None) -> None:
    assert advised_delay(status, header) == want


def test_agent_api_passes_the_controllers_advice_on() -> None:
    router = APIRouter()

    @router.post("/busy")
    def busy() -> None:
        raise ControllerUnavailable("controller: 503 write queue full", retry_after=0.4)

    @router.post("/gone")
    def gone() -> None:
        raise NotFound("no such endpoint")

    client = TestClient(create_app("test", [router]))
    r = client.post("/busy")
    assert r.status_code == 503 and r.headers["retry-after"] == "1"  # whole seconds, rounded up
    r = client.post("/gone")
    assert r.status_code == 404 and "retry-after" not in r.headers
