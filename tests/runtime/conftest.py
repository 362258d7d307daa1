"""Fixtures for tests of the runtime adapters (CNI plugin, Docker drivers) on a real lab."""

from __future__ import annotations

import os
import shutil

import pytest

from tests.conftest import missing_lab_prerequisites, require

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
