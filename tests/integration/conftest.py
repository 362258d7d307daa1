"""Fixtures for tests against real OVS in emulated hosts (root, network namespaces)."""

from __future__ import annotations

import os
import shutil

import pytest

OVS_TOOLS = ("ovsdb-tool", "ovsdb-server", "ovs-vswitchd", "ovs-vsctl", "ovs-ofctl")
LAB_TOOLS = (*OVS_TOOLS, "ip", "ethtool", "nsenter", "ping", "iperf3")


def _missing_prerequisites(tools: tuple[str, ...]) -> str | None:
    if os.geteuid() != 0:
        return "needs root (network namespaces, veths, OVS daemons)"
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        return f"missing binaries: {', '.join(missing)}"
    if not os.path.exists("/usr/share/openvswitch/vswitch.ovsschema"):
        return "missing /usr/share/openvswitch/vswitch.ovsschema"
    return None


@pytest.fixture(scope="session")
def lab_prerequisites() -> None:
    """Skip (with the reason) when the lab cannot run here; under CI, fail instead."""
    reason = _missing_prerequisites(LAB_TOOLS)
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the lab tests: {reason}")
        pytest.skip(reason)
