"""The CLI against a real uvicorn: where it finds its token, and `vxplane token`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fakes import RecordingSync
from typer.testing import CliRunner

from controller.api.app import create_app
from controller.cli.main import app as cli
from controller.config import Settings
from tests.liveserver import serve


@pytest.fixture
def server(db_file_url: str) -> Iterator[str]:
    app = create_app(Settings(db_url=db_file_url), sync=RecordingSync())
    with serve(app) as url:
        yield url


def run(url: str, args: list[str], **env: str) -> tuple[int, str, str]:
    environment = {"VXPLANE_API": url, "VXPLANE_TOKEN": "", "VXPLANE_TOKEN_FILE": "/nonexistent"}
    result = CliRunner().invoke(cli, args, env={**environment, **env})
    return result.exit_code, result.stdout, result.stderr


def test_cli_without_a_token_says_how_to_get_one(server: str) -> None:
    code, _, err = run(server, ["network", "ls"])
    assert code == 1
    assert "HTTP 401" in err and "VXPLANE_TOKEN" in err


def test_token_create_prints_the_token_last_and_the_cli_finds_it(
    server: str, make_token: Callable[..., str], tmp_path: Path
) -> None:
    admin = make_token("admin")
    token_file = tmp_path / "admin-token"
    token_file.write_text(admin + "\n")
    # the admin token file is read when neither --token nor VXPLANE_TOKEN is given
    code, out, err = run(
        server, ["token", "create", "--role", "viewer"], VXPLANE_TOKEN_FILE=str(token_file)
    )
    assert code == 0, err
    viewer = out.strip().splitlines()[-1]
    assert viewer.startswith("vxp_")
    code, out, err = run(server, ["network", "ls", "--token", viewer])
    assert code == 0, err
    code, out, err = run(server, ["token", "ls"], VXPLANE_TOKEN=viewer)
    assert code == 1 and "HTTP 403" in err
    code, out, err = run(server, ["token", "ls", "-o", "json"], VXPLANE_TOKEN=admin)
    assert code == 0 and viewer.split("_")[1] in out
    code, out, err = run(server, ["token", "revoke", viewer.split("_")[1], "--token", admin])
    assert code == 0, err
    code, _, err = run(server, ["network", "ls", "--token", viewer])
    assert code == 1 and "HTTP 401" in err
    code, out, err = run(
        server,
        ["token", "create", "--role", "agent", "--host", "h1", "--expires-in", "60"],
        VXPLANE_TOKEN=admin,
    )
    assert code == 0 and out.strip().splitlines()[-1].startswith("vxp_"), err
    agent = out.strip().splitlines()[-1]
    code, out, err = run(
        server, ["token", "rotate", agent.split("_")[1], "--grace", "30"], VXPLANE_TOKEN=admin
    )
    assert code == 0 and "stops working in 30 s" in err, err
    rotated = out.strip().splitlines()[-1]
    assert rotated.startswith("vxp_") and rotated != agent
