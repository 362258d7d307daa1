"""The vxplane agent of an emulated host: its command line, start, readiness and health.

The agent runs as ``python -m hostagent`` in the host's network namespace (``nsenter``), with
the host's ovsdb, its own unix socket under the host's dir, and the underlay address as its
datapath id. With Docker (``up(docker=True)``) it also joins the host's mount holder and
serves the Docker drivers there (``vxlab.docker``). A running agent is kept as long as its
recorded command line is still the one wanted; otherwise it is restarted.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from ipaddress import IPv4Address
from typing import Any

from hostagent.agent_client import AgentCallError, AgentClient, AgentUnavailable
from vxlab import docker
from vxlab.errors import LabError
from vxlab.fabric import netns_path
from vxlab.paths import HostPaths
from vxlab.proc import pid_alive, spawn, stop_pid

log = logging.getLogger(__name__)


def agent_argv(
    python: str,
    name: str,
    host: dict[str, Any],
    paths: HostPaths,
    controller_url: str,
    openflow: str,
    extra: Sequence[str],
) -> list[str]:
    """The command line of host ``name``'s agent (``host`` is its record in the state)."""
    holder = host["pids"].get("mnt-holder")
    mount = [f"--mount=/proc/{holder}/ns/mnt"] if holder else []
    if holder:
        extra = [*extra, "--docker-plugin", docker.PLUGIN_SOCKET,
                 "--docker-engine", f"unix://{docker.engine_paths(paths.dir)['sock']}"]  # fmt: skip
    return [
        "nsenter", f"--net={netns_path(name)}", *mount,
        python, "-m", "hostagent",
        "--controller", controller_url, "--host", name,
        "--underlay-ip", host["underlay_ip"], "--ovsdb", paths.db,
        "--socket", paths.agent_sock, "--openflow", openflow,
        "--token-file", paths.agent_token,
        "--datapath-type", "netdev", "--dpid", f"{int(IPv4Address(host['underlay_ip'])):016x}",
        *extra,
    ]  # fmt: skip


def ensure_agent(host: dict[str, Any], paths: HostPaths, argv: list[str]) -> None:
    """Start the agent with ``argv`` unless it already runs with exactly that command line
    (one with another is stopped first); records its pid and command line in ``host``."""
    pid = host["pids"].get("agent")
    if pid_alive(pid) and host.get("agent_argv") == argv:
        return
    if pid:
        stop_pid(pid, paths.agent_sock)
    host["pids"]["agent"] = spawn(argv, paths.log("agent")).pid
    host["agent_argv"] = argv


def wait_agent(
    name: str, pid: int, paths: HostPaths, deadline: float, wait_registered: bool
) -> None:
    """Wait for the agent's API and bridge (LabError if late), then for its registration at
    the controller (a warning if late: agents keep retrying)."""
    health: dict[str, Any] = {}
    while True:
        if not pid_alive(pid):
            raise LabError(f"agent of {name} exited; see {paths.log('agent')}")
        health = agent_health(paths.agent_sock) or {}
        if health.get("bridge_ready") and (health.get("registered") or not wait_registered):
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not health.get("bridge_ready"):
        raise LabError(f"agent of {name} not up in time; see {paths.log('agent')}")
    log.warning(
        "agent of %s not registered at %s yet: %s",
        name, health.get("controller"), health.get("last_error"),
    )  # fmt: skip


def agent_health(socket_path: str) -> dict[str, Any] | None:
    """The agent's ``/v1/healthz``, or None if it does not answer."""
    if not os.path.exists(socket_path):
        return None
    try:
        with AgentClient(socket_path, timeout=2) as agent:
            return agent.healthz()
    except (AgentCallError, AgentUnavailable):
        return None
