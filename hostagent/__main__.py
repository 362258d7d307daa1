"""``python -m hostagent``: run the host agent (see ``hostagent.agent.run_agent``)."""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and run the agent until it is stopped."""
    parser = argparse.ArgumentParser(prog="python -m hostagent", description=__doc__)
    parser.add_argument("--controller", required=True, help="controller URL, http://IP:PORT")
    parser.add_argument("--host", required=True, help="this host's name")
    parser.add_argument("--underlay-ip", required=True, help="this host's VXLAN underlay IPv4")
    parser.add_argument("--bridge", default="br-int")
    parser.add_argument("--ovsdb", default=None, help="ovsdb remote, e.g. unix:/path/db.sock")
    parser.add_argument("--socket", default="/run/vxplane/agent.sock", help="API unix socket")
    parser.add_argument("--openflow", default=None, help="tcp:IP:PORT (default: controller:6653)")
    parser.add_argument("--mtu", type=int, default=1450, help="container MTU")
    parser.add_argument("--heartbeat-interval", type=float, default=5.0)
    parser.add_argument("--datapath-type", choices=["system", "netdev"], default=None)
    parser.add_argument("--dpid", default=None, help="br-int datapath id, 16 hex digits")
    parser.add_argument("--ready-timeout", type=float, default=10.0)
    parser.add_argument("--docker-plugin", default=None, help="serve the Docker drivers here")
    parser.add_argument("--docker-engine", default="unix:///run/docker.sock")
    parser.add_argument("--docker-scope", choices=["local", "global"], default="local")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    from hostagent.agent import run_agent

    run_agent(
        args.controller,
        args.host,
        args.underlay_ip,
        bridge=args.bridge,
        ovsdb=args.ovsdb,
        socket_path=args.socket,
        openflow_target=args.openflow,
        mtu=args.mtu,
        heartbeat_interval=args.heartbeat_interval,
        datapath_type=args.datapath_type,
        dpid=args.dpid,
        ready_timeout=args.ready_timeout,
        docker_plugin=args.docker_plugin,
        docker_engine=args.docker_engine,
        docker_scope=args.docker_scope,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
