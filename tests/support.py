"""A controller (SQLite) plus a lab of emulated hosts pointed at it, for the real-parts tests."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from controller.launch import ControllerProcess
from hostagent.lab import Lab


def _require_free(port: int) -> None:
    """Fail if ``port`` has a live listener: a stale controller there would answer for ours."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("0.0.0.0", port))
        except OSError as exc:
            raise RuntimeError(f"port {port} is in use ({exc}): a leftover controller?") from exc


@contextmanager
def controller_and_lab(
    tmp: Path,
    *,
    prefix: str,
    underlay: str,
    api_port: int,
    openflow_port: int,
    hosts: int,
    env: dict[str, str] | None = None,
    **up: Any,
) -> Iterator[tuple[Lab, ControllerProcess, httpx.Client]]:
    """Start a controller and a ``hosts``-host lab; remove both afterwards, also on failure.

    Each test module uses its own prefix, underlay and ports, so modules never share a lab.
    ``up`` goes to ``Lab.up`` (``docker=True``, ``extra_agent_args=[...]``).
    """
    lab = Lab(prefix=prefix, underlay=underlay, state_dir=f"/run/vxplane/test-{prefix.strip('-')}")
    lab.down()  # leftovers of an interrupted run
    _require_free(openflow_port)  # the API port is checked by ControllerProcess.start
    ctl = ControllerProcess(
        f"sqlite:///{tmp}/vx.db", tmp / "controller.log", api_port, openflow_port, env=env
    )
    api = httpx.Client(base_url=f"http://127.0.0.1:{api_port}", timeout=30)
    try:
        ctl.start()
        lab.up(
            hosts=hosts,
            controller_url=f"http://{lab.gateway_ip}:{api_port}",
            openflow=f"tcp:{lab.gateway_ip}:{openflow_port}",
            **up,
        )
        yield lab, ctl, api
    finally:
        api.close()
        lab.down()
        ctl.stop()
