"""HostPaths: where an emulated host's OVS and agent keep their files and sockets."""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HostPaths:
    """Files and sockets under one emulated host's directory (``<state_dir>/<host>``)."""

    dir: str

    @property
    def db_file(self) -> str:
        return os.path.join(self.dir, "conf.db")

    @property
    def db_sock(self) -> str:
        return os.path.join(self.dir, "db.sock")

    @property
    def db(self) -> str:
        """The ovsdb remote for ``ovs-vsctl --db=``."""
        return f"unix:{self.db_sock}"

    @property
    def agent_sock(self) -> str:
        return os.path.join(self.dir, "agent.sock")

    def pidfile(self, daemon: str) -> str:
        return os.path.join(self.dir, f"{daemon}.pid")

    def ctl(self, daemon: str) -> str:
        """The unixctl socket of ``daemon`` (for ``ovs-appctl -t``)."""
        return os.path.join(self.dir, f"{daemon}.ctl")

    @property
    def agent_token(self) -> str:
        return os.path.join(self.dir, "agent-token")

    def log(self, daemon: str) -> str:
        return os.path.join(self.dir, f"{daemon}.log")

    def mgmt(self, bridge: str = "br-int") -> str:
        """The OpenFlow management target of ``bridge`` for ``ovs-ofctl``."""
        return f"unix:{os.path.join(self.dir, bridge + '.mgmt')}"

    @property
    def env(self) -> dict[str, str]:
        """Environment for OVS tools so they find this host's run, log and db dirs."""
        return {
            **os.environ,
            "OVS_RUNDIR": self.dir,
            "OVS_LOGDIR": self.dir,
            "OVS_DBDIR": self.dir,
            "OVS_SYSCONFDIR": self.dir,
        }
