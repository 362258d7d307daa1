"""Several controllers on one database and a lab whose agents know them all (HA lab tests).

Each controller advertises its API and OpenFlow address on the lab's fabric gateway, as
``--advertise-api``/``--advertise-openflow`` do in production; every agent gets every
controller's URL, and its bridge starts with the first controller's OpenFlow target (the
agents then follow the membership). Everything is removed at the end, also on failure: the
lab's namespaces by name and the controllers by pid.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from vxlab.lab import Lab
from vxlab.launch import ControllerProcess


@contextmanager
def controllers_and_lab(
    lab: Lab,
    db_url: str,
    logdir: Path,
    api_ports: Sequence[int],
    of_ports: Sequence[int],
    hosts: int,
) -> Iterator[list[ControllerProcess]]:
    """One controller per (API port, OpenFlow port) on ``db_url``, then ``hosts`` emulated
    hosts; yields the controllers (started, in port order)."""
    lab.down()  # leftovers of an interrupted run
    ctls: list[ControllerProcess] = []
    try:
        lab.ensure_fabric()
        gw = lab.gateway_ip
        for api_port, of_port in zip(api_ports, of_ports, strict=True):
            env = {
                "VXPLANE_ADVERTISE_API": f"http://{gw}:{api_port}",
                "VXPLANE_ADVERTISE_OPENFLOW": f"tcp:{gw}:{of_port}",
            }
            ctl = ControllerProcess(
                db_url, logdir / f"controller-{api_port}.log", api_port, of_port,
                api_host=gw, openflow_host=gw, env=env,
                admin_token_file=logdir / f"admin-token-{api_port}",
            )  # fmt: skip
            ctls.append(ctl.start())
        lab.up(
            hosts=hosts,
            controller_url=",".join(c.url for c in ctls),
            openflow=f"tcp:{gw}:{of_ports[0]}",
            admin_token=ctls[0].token,
            extra_agent_args=["--heartbeat-interval", "1"],
        )
        yield ctls
    finally:
        lab.down()
        for ctl in ctls:
            ctl.stop()
