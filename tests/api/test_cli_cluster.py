"""The CLI with several controllers: `--api`/VXPLANE_API take a list and fail over to the next
when one cannot be reached; `vxplane controllers ls` lists the members (real uvicorn)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import pytest
from fakes import RecordingSync
from typer.testing import CliRunner

from controller.api.app import create_app
from controller.cli.main import app as cli
from controller.config import Settings
from controller.db import members
from controller.db.session import make_engine, make_session_factory
from tests.liveserver import serve


@pytest.fixture
def server(db_file_url: str) -> Iterator[str]:
    app = create_app(Settings(db_url=db_file_url), sync=RecordingSync())
    with serve(app) as url:
        yield url


def _dead_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"  # closed: connection refused


def test_controllers_ls_through_a_dead_controller_first(
    server: str, db_file_url: str, make_token: Callable[..., str]
) -> None:
    engine = make_engine(db_file_url)
    with make_session_factory(engine)() as s:
        members.tick(s, "feedc0de", "http://c1:8080", "tcp:c1:6653", 30.0)
        s.commit()
    engine.dispose()
    env = {"VXPLANE_API": f"{_dead_url()},{server}", "VXPLANE_TOKEN": make_token("viewer"),
           "VXPLANE_TOKEN_FILE": "/nonexistent"}  # fmt: skip
    result = CliRunner().invoke(cli, ["controllers", "ls"], env=env)
    assert result.exit_code == 0, result.stderr
    assert "feedc0de" in result.stdout and "live" in result.stdout
    result = CliRunner().invoke(cli, ["controllers", "ls", "-o", "json"], env=env)
    assert [m["id"] for m in json.loads(result.stdout)] == ["feedc0de"]
    env["VXPLANE_API"] = f"{_dead_url()},{_dead_url()}"
    result = CliRunner().invoke(cli, ["controllers", "ls"], env=env)
    assert result.exit_code == 1 and "cannot reach the controller" in result.stderr
