"""The dashboard reads every page of the controller's lists (``getAll`` follows ``Link``).

No lab: the app on a real uvicorn with a SQLite file, and Debian's chromium.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.auth import Role
from controller.config import Settings
from controller.db import migrate, tokens
from controller.db.session import make_engine, make_session_factory
from tests.liveserver import serve

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def live_url(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The API on a real uvicorn with five networks, and an admin token."""
    url = f"sqlite:///{tmp_path}/vxplane.db"
    migrate.upgrade(url)
    engine = make_engine(url)
    with make_session_factory(engine)() as session:
        _, token = tokens.create_token(session, Role.admin)
        session.commit()
    engine.dispose()
    app = create_app(Settings(db_url=url, allowed_hosts=["127.0.0.1", "testserver"]))
    with TestClient(app, headers={"Authorization": f"Bearer {token}"}) as client:
        for i in range(5):
            body = {"name": f"n{i}", "subnet": f"10.{i}.0.0/24"}
            assert client.post("/api/v1/networks", json=body).status_code == 201
    with serve(app) as base:
        yield base, token


def test_the_dashboard_follows_the_link_header(browser: Any, live_url: tuple[str, str]) -> None:
    base, token = live_url
    page = browser.new_page()
    try:
        page.goto(base + "/")
        page.evaluate(
            """async (token) => {
                const { api } = await import("/static/api.js");
                await api("POST", "/api/v1/session", { token });
            }""",
            token,
        )
        names = page.evaluate(
            """async () => {
                const { getAll } = await import("/static/api.js");
                const nets = await getAll("/api/v1/networks?limit=2");
                return nets.map((n) => n.name);
            }"""
        )
    finally:
        page.close()
    assert names == ["n0", "n1", "n2", "n3", "n4"]
