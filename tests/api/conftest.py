"""API test fixtures: the app on a migrated SQLite file, with a recording fake FlowSync.

``make_client`` builds clients that carry an admin token (``token=None``: none; or a token
from ``make_token``); the TestClient's Host header ``testserver`` is allowed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import RecordingSync
from fastapi.testclient import TestClient

from controller.api.app import create_app
from controller.auth import Role
from controller.config import Settings
from controller.db import migrate, tokens
from controller.db.session import make_engine, make_session_factory


@pytest.fixture
def db_file_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path}/state/vxplane.db"
    migrate.upgrade(url)
    return url


@pytest.fixture
def sync() -> RecordingSync:
    return RecordingSync()


ClientFactory = Callable[..., TestClient]
TokenFactory = Callable[..., str]
ADMIN = object()  # make_client(token=ADMIN): a fresh admin token (the default)


@pytest.fixture
def make_token(db_file_url: str) -> Iterator[TokenFactory]:
    """``make_token(role, host=None, expires_at=None)``: a token made in the database."""
    engine = make_engine(db_file_url)
    factory = make_session_factory(engine)

    def make(role: str = "admin", host: str | None = None, **kwargs: object) -> str:
        with factory() as session:
            _, token = tokens.create_token(session, Role(role), host=host, **kwargs)  # type: ignore[arg-type]
            session.commit()
        return token

    yield make
    engine.dispose()


@pytest.fixture
def make_client(
    db_file_url: str, sync: RecordingSync, make_token: TokenFactory
) -> Iterator[ClientFactory]:
    """Build clients on the same database, with settings overrides; each carries ``token``
    (default: a new admin token; None: no token at all)."""
    clients: list[TestClient] = []

    def build(token: object = ADMIN, **overrides: object) -> TestClient:
        overrides.setdefault("allowed_hosts", ["testserver"])
        settings = Settings(db_url=db_file_url, **overrides)  # type: ignore[arg-type]
        client = TestClient(create_app(settings=settings, sync=sync))
        if token is ADMIN:
            token = make_token("admin")
        if token is not None:
            client.headers["Authorization"] = f"Bearer {token}"
        client.__enter__()
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: ClientFactory) -> TestClient:
    return make_client(ready_timeout=2.0)
