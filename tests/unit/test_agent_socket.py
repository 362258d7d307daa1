"""The agent's unix sockets and files: never usable or writable by other users.

The real agent's sockets (its API, the Docker plugin's) are checked again on a running agent
in tests/integration/test_portsec.py, with a non-root user trying to connect.
"""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
from ipaddress import IPv4Network
from pathlib import Path

import pytest
from pydantic import ValidationError

from hostagent.api.server import bind_unix
from hostagent.runtimes.docker.pools import PoolTable
from hostagent.settings import AgentSettings

BASE = ["--controller", "http://127.0.0.1:1", "--host", "h1", "--underlay-ip", "198.18.0.1"]


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_socket_is_0600_even_under_a_zero_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        sock = bind_unix(str(tmp_path / "run" / "agent.sock"))
    finally:
        os.umask(old)
    try:
        path = tmp_path / "run" / "agent.sock"
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert _mode(path) == 0o600
        assert _mode(path.parent) == 0o755  # nobody else may replace the socket
        assert os.lstat(path).st_uid == os.geteuid()
    finally:
        sock.close()


def test_socket_with_a_group_is_0660_and_that_group(tmp_path: Path) -> None:
    gid = grp.getgrnam("nogroup").gr_gid if _has_group("nogroup") else os.getegid()
    path = tmp_path / "agent.sock"
    sock = bind_unix(str(path), gid)
    try:
        assert _mode(path) == 0o660
        assert os.lstat(path).st_gid == gid
        with socket.socket(socket.AF_UNIX) as client:  # still a listening socket
            client.connect(str(path))
    finally:
        sock.close()


def test_a_leftover_file_or_dangling_link_at_the_path_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "agent.sock"
    path.symlink_to(tmp_path / "nowhere")
    sock = bind_unix(str(path))
    try:
        assert stat.S_ISSOCK(os.lstat(path).st_mode) and _mode(path) == 0o600
    finally:
        sock.close()


def test_socket_group_option_names_an_existing_group() -> None:
    settings = AgentSettings.from_cli([*BASE, "--socket-group", "0"])
    assert settings.socket_gid == 0
    assert AgentSettings.from_cli(BASE).socket_gid is None
    with pytest.raises(ValidationError, match="no group 'no-such-group-vx'"):
        AgentSettings.from_cli([*BASE, "--socket-group", "no-such-group-vx"])


def test_docker_pool_table_is_0600_even_over_a_wide_leftover(tmp_path: Path) -> None:
    path = tmp_path / "vxplane-pools.json"
    leftover = Path(f"{path}.tmp")
    leftover.write_text("{}")
    leftover.chmod(0o666)
    table = PoolTable(str(path))
    table.learn(table.request(IPv4Network("10.9.0.0/24")), "net1")
    assert json.loads(path.read_text())["pools"]
    assert _mode(path) == 0o600


def _has_group(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True
