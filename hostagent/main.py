"""Run the agent: the one place that puts the parts together.

The agent (``agent.py``) on its edges (``ovs.OvsdbOps``, ``netlink.LinkOps``) and its
controller client, its local API (``api/``) with the CNI routes on top
(``runtimes/cni_routes.py``), and with ``--docker-plugin`` the Docker drivers
(``runtimes/docker/``) on their own socket.
"""

from __future__ import annotations

import logging
import signal
import sys
from collections.abc import Callable

from hostagent.agent import Agent
from hostagent.api.routes import agent_router
from hostagent.api.server import UnixServer, create_app
from hostagent.client import ControllerClient
from hostagent.metrics import AgentMetrics, TimedOvs
from hostagent.netlink import LinkOps
from hostagent.ovs import OvsdbOps
from hostagent.runtimes.cni_routes import cni_router
from hostagent.settings import AgentSettings
from hostagent.tasks import TaskLoop, vswitchd_ctl


def run(settings: AgentSettings) -> None:
    """Run the agent until SIGTERM or SIGINT."""
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    metrics = AgentMetrics()
    agent = Agent(
        settings,
        client=ControllerClient(
            settings.controller, token=settings.read_token(), ca=settings.controller_ca
        ),
        ovs=TimedOvs(OvsdbOps(settings.ovsdb), metrics),
        links=LinkOps(),
        metrics=metrics,
    )
    metrics.watch(agent)
    stop_metrics = _serve_metrics(settings, metrics)
    server = UnixServer(
        create_app("vxplane host agent", [agent_router(agent), cni_router(agent)]),
        settings.socket,
        settings.socket_gid,
    )
    agent.start()
    # `vxplane trace` asks this host's switch over the agent's own connection (a long poll)
    tasks = TaskLoop(
        agent.client, settings.host, settings.bridge, vswitchd_ctl(settings.ovsdb, settings.ovs_ctl)
    )
    tasks.start()
    stop_docker: Callable[[], None] | None = None
    if settings.docker_plugin:
        from hostagent.runtimes.docker.driver import start_docker_plugin

        stop_docker = start_docker_plugin(
            agent, settings.docker_plugin, settings.docker_engine, settings.docker_scope
        )
    # uvicorn re-raises the signal it caught once it stopped: exit through the finally below.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        server.run()
    finally:
        if stop_docker is not None:
            stop_docker()
        if stop_metrics is not None:
            stop_metrics()
        tasks.stop()
        agent.stop()


def _serve_metrics(settings: AgentSettings, metrics: AgentMetrics) -> Callable[[], None] | None:
    """With ``--metrics``: serve them there (tokens checked with the controller)."""
    if settings.metrics is None:
        return None
    from hostagent.api.metrics import MetricsServer, TokenCheck, create_metrics_app

    check = TokenCheck(settings.controller, settings.controller_ca)
    app = create_metrics_app(metrics, check.check)
    server = MetricsServer(app, settings.metrics, settings.metrics_cert, settings.metrics_key)
    logging.getLogger("hostagent").info("metrics on %s (token required)", settings.metrics)
    return server.start()


def main(argv: list[str] | None = None) -> int:
    """``python -m hostagent`` / ``vxplane agent``: parse the options and run."""
    run(AgentSettings.from_cli(sys.argv[1:] if argv is None else argv))
    return 0
