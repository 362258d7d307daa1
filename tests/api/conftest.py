"""API test fixtures: the app on a migrated SQLite file, with a recording fake FlowSync."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.config import Settings
from controller.db import migrate


@pytest.fixture
def db_file_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/state/vxplane.db"
    migrate.upgrade(url)
    return url


@pytest.fixture
def sync() -> RecordingSync:
    return RecordingSync()


ClientFactory = Callable[..., TestClient]


@pytest.fixture
def make_client(db_file_url: str, sync: RecordingSync) -> Iterator[ClientFactory]:
    """Build clients on the same database, with settings overrides."""
    clients: list[TestClient] = []

    def build(**overrides: object) -> TestClient:
        settings = Settings(db_url=db_file_url, **overrides)  # type: ignore[arg-type]
        client = TestClient(create_app(settings=settings, sync=sync))
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client(ready_timeout=2.0)
