"""``vxplane network create --reclaim --reservation-ttl``: the options reach the API body."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from controller.cli import resources
from controller.cli.main import app


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    bodies: list[dict[str, Any]] = []

    def call(api: Any, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        bodies.append(kwargs["json"])
        return {"name": "n", "subnet": "10.0.0.0/24", "vni": 1, **kwargs["json"]}

    monkeypatch.setattr(resources, "call", call)
    return bodies


def test_reclaim_is_off_unless_asked(sent: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["network", "create", "n", "--subnet", "10.0.0.0/24"])
    assert result.exit_code == 0, result.output
    assert sent == [{"name": "n", "subnet": "10.0.0.0/24"}]


def test_reclaim_and_ttl_are_sent(sent: list[dict[str, Any]]) -> None:
    args = ["network", "create", "n", "--subnet", "10.0.0.0/24", "--reclaim"]
    result = CliRunner().invoke(app, [*args, "--reservation-ttl", "600"])
    assert result.exit_code == 0, result.output
    assert sent == [{"name": "n", "subnet": "10.0.0.0/24", "reclaim": True, "reservation_ttl": 600}]


def test_negative_ttl_is_refused(sent: list[dict[str, Any]]) -> None:
    args = ["network", "create", "n", "--subnet", "10.0.0.0/24", "--reservation-ttl", "-1"]
    assert CliRunner().invoke(app, args).exit_code != 0 and sent == []


def test_external_is_sent_and_set_patches(sent: list[dict[str, Any]]) -> None:
    args = ["network", "create", "n", "--subnet", "10.0.0.0/24", "--external"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "created external network" in result.output
    assert sent == [{"name": "n", "subnet": "10.0.0.0/24", "external": True}]
    for flag, want in (("--no-external", False), ("--external", True)):
        result = CliRunner().invoke(app, ["network", "set", "n", flag])
        assert result.exit_code == 0, result.output
        assert sent[-1] == {"external": want}
    assert CliRunner().invoke(app, ["network", "set", "n"]).exit_code != 0  # nothing to change
    assert len(sent) == 3


def test_publish_parses_the_mapping(sent: list[dict[str, Any]]) -> None:
    for mapping, want in (
        ("8080:80", (8080, 80, "tcp")),
        ("5353:53/udp", (5353, 53, "udp")),
        ("8443:443/tcp", (8443, 443, "tcp")),
    ):
        result = CliRunner().invoke(app, ["endpoint", "publish", "shop", "a/b", mapping])
        assert result.exit_code == 0, result.output
        assert sent[-1] == dict(zip(("host_port", "port", "proto"), want, strict=True)) | {
            "endpoint": "a/b"
        }
    for bad in ("8080", "8080:80/sctp", "x:80", "8080:", ":80"):
        before = len(sent)
        assert CliRunner().invoke(app, ["endpoint", "publish", "shop", "w", bad]).exit_code != 0
        assert len(sent) == before, bad


def test_subnet6_is_sent_and_shown(sent: list[dict[str, Any]]) -> None:
    args = ["network", "create", "n", "--subnet", "10.0.0.0/24", "--subnet6", "fd00:10::/64"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "10.0.0.0/24 fd00:10::/64" in result.output
    assert sent == [{"name": "n", "subnet": "10.0.0.0/24", "subnet6": "fd00:10::/64"}]


def test_set_subnet6_and_back_to_ipv4_only(sent: list[dict[str, Any]]) -> None:
    result = CliRunner().invoke(app, ["network", "set", "n", "--subnet6", "fd00:1::/64"])
    assert result.exit_code == 0, result.output
    assert sent[-1] == {"subnet6": "fd00:1::/64"} and "dual stack fd00:1::/64" in result.output
    result = CliRunner().invoke(app, ["network", "set", "n", "--no-subnet6"])
    assert result.exit_code == 0, result.output
    assert sent[-1] == {"subnet6": None} and "IPv4 only" in result.output
    both = ["network", "set", "n", "--subnet6", "fd00:1::/64", "--no-subnet6"]
    assert CliRunner().invoke(app, both).exit_code != 0 and len(sent) == 2
