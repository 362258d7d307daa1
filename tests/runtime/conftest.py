"""Fixtures for tests of the runtime adapters (CNI plugin, Docker drivers) on a real lab."""

from __future__ import annotations

import os
import shutil
import socket

import pytest

LAB_TOOLS = (
    "ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl",
    "ip", "ethtool", "nsenter", "ping", "busybox",
)  # fmt: skip


def require(reason: str | None) -> None:
    """Skip with ``reason`` (if any); under CI=true fail instead: CI must run these tests."""
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the runtime tests: {reason}")
        pytest.skip(reason)


def missing_lab_prerequisites() -> str | None:
    """Why the lab cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veths, OVS daemons)"
    missing = [t for t in LAB_TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing binaries: {', '.join(missing)}"
    if not os.path.exists("/usr/share/openvswitch/vswitch.ovsschema"):
        return "missing /usr/share/openvswitch/vswitch.ovsschema"
    return None


@pytest.fixture(scope="session")
def lab_prerequisites() -> None:
    """Skip (with the reason) when the lab cannot run here; under CI, fail instead."""
    require(missing_lab_prerequisites())


DOCKER_TOOLS = ("dockerd", "containerd", "runc", "unshare", "findmnt")


def missing_docker_prerequisites() -> str | None:
    """Why a Docker engine cannot run in the lab here, or None."""
    reason = missing_lab_prerequisites()
    if reason:
        return reason
    missing = [t for t in DOCKER_TOOLS if shutil.which(t) is None]
    if not os.path.exists("/usr/bin/docker") and shutil.which("docker") is None:
        missing.append("docker (CLI)")
    if missing:
        return f"missing {', '.join(missing)}: apt-get install docker.io (scripts/install-deps.sh)"
    if not os.path.exists("/bin/busybox"):
        return "missing /bin/busybox: apt-get install busybox-static"
    return None


@pytest.fixture(scope="session")
def docker_prerequisites() -> None:
    """Skip (with the reason) when no Docker engine can run here; under CI, fail instead."""
    require(missing_docker_prerequisites())


def require_free_ports(*ports: int) -> None:
    """Fail if a port is taken: a stale controller there would answer for ours."""
    for port in ports:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("0.0.0.0", port))
            except OSError as exc:
                pytest.fail(f"port {port} is in use ({exc}): a leftover controller?")
