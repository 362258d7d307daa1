"""Shared test plumbing: what the real-parts tests need, and skip-or-fail when it is missing.

A test that needs root, OVS, Docker or a browser skips with the reason on a developer's
machine that lacks it; under CI (``CI`` set) it fails instead: CI must run the real tests.
"""

from __future__ import annotations

import os
import shutil

import pytest

OVS_TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl")
LAB_TOOLS = (*OVS_TOOLS, "ip", "ethtool", "nsenter", "ping", "iperf3", "busybox")


def require(reason: str | None, what: str = "these tests") -> None:
    """Skip with ``reason`` (if any); under CI fail instead."""
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run {what}: {reason}")
        pytest.skip(reason)


def missing_lab_prerequisites(tools: tuple[str, ...] = LAB_TOOLS) -> str | None:
    """Why the lab of emulated hosts cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, veths, OVS daemons)"
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"missing binaries: {', '.join(missing)} (scripts/install-deps.sh installs them)"
    if not os.path.exists("/usr/share/openvswitch/vswitch.ovsschema"):
        return "missing /usr/share/openvswitch/vswitch.ovsschema"
    return None


@pytest.fixture(scope="session")
def lab_prerequisites() -> None:
    """Skip (with the reason) when the lab cannot run here; under CI, fail instead."""
    require(missing_lab_prerequisites(), "the lab tests")
