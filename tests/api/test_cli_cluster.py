"""The CLI with several controllers: `--api`/VXPLANE_API take a list and fail over to the next
when one cannot be reached; `vxplane controllers ls` lists the members (real uvicorn)."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator

import httpx
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


def test_status_and_host_ls_show_the_members_and_what_each_masters(
    server: str, db_file_url: str, make_token: Callable[..., str]
) -> None:
    env = {"VXPLANE_API": server, "VXPLANE_TOKEN": make_token("admin"),
           "VXPLANE_TOKEN_FILE": "/nonexistent"}  # fmt: skip
    result = CliRunner().invoke(cli, ["status"], env=env)
    assert result.exit_code == 0, result.stderr
    assert "0 live" in result.stdout  # controllers older than the feature register nothing
    auth = {"Authorization": f"Bearer {env['VXPLANE_TOKEN']}"}
    for i in (1, 2, 3):
        body = {"underlay_ip": f"198.18.0.{i}", "dpid": f"{i:016x}"}
        httpx.put(f"{server}/api/v1/hosts/h{i}", json=body, headers=auth).raise_for_status()
    engine = make_engine(db_file_url)
    with make_session_factory(engine)() as s:
        for member in ("aaaa", "bbbb", "aaaa"):  # a's second tick rebalances: 2 and 1
            members.tick(s, member, f"http://{member}:8080", f"tcp:{member}:6653", 60.0)
            s.commit()
    engine.dispose()
    got = json.loads(CliRunner().invoke(cli, ["status", "-o", "json"], env=env).stdout)
    masters = {m["id"]: m["masters"] for m in got["controllers"]}
    assert sorted(masters) == ["aaaa", "bbbb"]
    assert sorted(masters["aaaa"] + masters["bbbb"]) == ["h1", "h2", "h3"]
    assert sorted(len(v) for v in masters.values()) == [1, 2]
    assert all(m["alive"] and not m["this"] and m["lease_age"] < 60 for m in got["controllers"])
    result = CliRunner().invoke(cli, ["status"], env=env)
    assert result.exit_code == 0, result.stderr
    assert "controllers 2 live" in result.stdout
    for member, hosts in masters.items():
        assert f"http://{member}:8080: lease " in result.stdout
        assert f"masters {', '.join(hosts)}" in result.stdout
    table = CliRunner().invoke(cli, ["host", "ls"], env={**env, "COLUMNS": "250"})
    assert table.exit_code == 0, table.stderr
    for member, hosts in masters.items():
        for host in hosts:
            line = next(ln for ln in table.stdout.splitlines() if f" {host} " in ln)
            assert f"http://{member}:8080" in line, line
