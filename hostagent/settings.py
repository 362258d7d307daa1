"""Agent settings (pydantic-settings): the one definition of every agent option.

Both command lines (``vxplane agent`` and ``python -m hostagent``) are this class's own CLI
(``AgentSettings.from_cli``); every option can also be set in the environment as
``VXPLANE_AGENT_<OPTION>`` (for example ``VXPLANE_AGENT_CONTROLLER``). Nothing else in the
agent reads arguments or the environment.
"""

from __future__ import annotations

import grp
from ipaddress import IPv4Address, IPv6Address
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from vxcommon.names import check_name

DEFAULT_SOCKET = "/run/vxplane/agent.sock"
DEFAULT_DOCKER_PLUGIN = "/run/docker/plugins/vxplane.sock"
DEFAULT_TOKEN_FILE = "/etc/vxplane/agent-token"


def group_id(group: str) -> int:
    """The id of ``group`` (a name or a number); ValueError if there is no such group."""
    try:
        entry = grp.getgrgid(int(group)) if group.isdigit() else grp.getgrnam(group)
    except KeyError:
        raise ValueError(f"no group {group!r} on this machine") from None
    return entry.gr_gid


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` or ``[V6]:PORT`` -> (host, port); ValueError with what is wrong."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ValueError(f"{address!r}: expected HOST:PORT with an address, e.g. 127.0.0.1:9101")
    return host, int(port)


class AgentSettings(BaseSettings):
    """How one host's agent runs: its identity, its controller, its bridge and its sockets."""

    model_config = SettingsConfigDict(
        env_prefix="VXPLANE_AGENT_",
        extra="ignore",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_prog_name="vxplane agent",
    )

    controller: str = Field(
        description="controller API URL, e.g. http://10.0.0.5:8080; several, comma-separated, "
        "for a cluster (the agent also follows the members the cluster advertises)"
    )
    token_file: str = Field(
        DEFAULT_TOKEN_FILE,
        description="file holding this host's agent token (`vxplane token create --role agent "
        "--host NAME`); readable by root only",
    )
    controller_ca: str | None = Field(
        None, description="CA certificate (PEM) to check an https:// controller against"
    )
    host: str = Field(description="this host's name in vxplane")
    underlay_ip: IPv4Address = Field(description="this host's VXLAN (underlay) IPv4 address")
    egress_ip: IPv4Address | None = Field(
        None,
        description="a spare address of one of this host's subnets that external networks' "
        "endpoints leave with (the host answers ARP for it and routes it into its gateway "
        "port vxgw0) [default: none; this host gives no external access]",
    )
    egress_ip6: IPv6Address | None = Field(
        None,
        description="with --egress-ip: a spare IPv6 address of one of this host's IPv6 "
        "subnets that external dual-stack networks' endpoints leave with over IPv6 (the host "
        "answers neighbour solicitations for it and routes it into vxgw0) [default: none; "
        "no IPv6 way out]",
    )
    bridge: str = Field("br-int", description="integration bridge")
    ovsdb: str = Field(
        "unix:/run/openvswitch/db.sock", description="OVSDB remote, e.g. unix:/path/db.sock"
    )
    openflow: str | None = Field(
        None,
        description="OpenFlow target(s) of br-int, comma-separated [tcp:<each controller's "
        "host>:6653, or ssl:... with --ovs-ssl-key/--ovs-ssl-cert/--ovs-ssl-ca]; then the "
        "targets the cluster's members advertise",
    )
    ovs_ssl_key: str | None = Field(
        None, description="private key of this host's switch for OpenFlow over TLS (PEM)"
    )
    ovs_ssl_cert: str | None = Field(
        None, description="this host's certificate (CN = --host; `vxplane pki host`)"
    )
    ovs_ssl_ca: str | None = Field(
        None, description="CA certificate the controller's certificate chains to"
    )
    ovs_ctl: str | None = Field(
        None,
        description="ovs-vswitchd's control socket, for `vxplane trace` [beside the --ovsdb "
        "socket: ovs-vswitchd.ctl, else ovs-vswitchd.<pid>.ctl]",
    )
    socket: str = Field(DEFAULT_SOCKET, description="unix socket of the agent's local API")
    socket_group: str | None = Field(
        None, description="group that may also use the agent's socket (mode 0660) [root only: 0600]"
    )
    mtu: int = Field(1450, ge=576, le=9000, description="container MTU: underlay MTU minus 50")
    heartbeat_interval: float = Field(5.0, gt=0, description="seconds between heartbeats")
    datapath_type: Literal["system", "netdev"] | None = Field(
        None, description="br-int datapath [system if the kernel module loads, else netdev]"
    )
    dpid: str | None = Field(None, description="br-int datapath id, 16 hex digits")
    ready_timeout: float = Field(
        10.0, gt=0, le=60, description="longest wait for an endpoint's flows (s)"
    )
    docker_plugin: str | None = Field(
        None,
        description=f"serve Docker's network and IPAM drivers here, e.g. {DEFAULT_DOCKER_PLUGIN}",
    )
    docker_engine: str = Field(
        "unix:///run/docker.sock", description="the Docker engine whose events the agent follows"
    )
    docker_scope: Literal["local", "global"] = Field(
        "local", description="Docker driver scope: local, or global under swarm"
    )
    metrics: str | None = Field(
        None,
        description="serve Prometheus metrics (GET /metrics) on HOST:PORT, e.g. "
        "198.18.0.1:9101 [off]; each scrape needs a vxplane API token the controller takes "
        "(a viewer token will do): see docs/metrics.md",
    )
    metrics_cert: str | None = Field(
        None, description="certificate (PEM) to serve --metrics over TLS [plain HTTP]"
    )
    metrics_key: str | None = Field(None, description="private key of --metrics-cert (PEM)")
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING, ERROR")
    adopt_cluster: bool = Field(
        False,
        description="join the controller's cluster even if br-int belongs to another one "
        "(external_ids:vxplane-cluster-id); without it the agent refuses such a controller",
    )

    def read_token(self) -> str:
        """The agent token from ``token_file``; exits with what to do if it is missing."""
        try:
            with open(self.token_file) as file:
                token = file.read().strip()
        except OSError as exc:
            raise SystemExit(
                f"vxplane agent: cannot read the agent token from {self.token_file} "
                f"({exc.strerror}): make one with `vxplane token create --role agent "
                f"--host {self.host}` and write it there (mode 0600), or pass --token-file"
            ) from None
        if not token:
            raise SystemExit(f"vxplane agent: {self.token_file} is empty: it must hold the token")
        return token

    @field_validator("host")
    @classmethod
    def _host(cls, value: str) -> str:
        return check_name(value)

    @field_validator("socket_group")
    @classmethod
    def _socket_group(cls, value: str | None) -> str | None:
        if value is not None:
            group_id(value)  # an unknown group fails here, not when the socket is made
        return value

    @field_validator("dpid")
    @classmethod
    def _dpid(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            number = int(value, 16)
        except ValueError:
            number = -1
        if not 0 <= number < 1 << 64:
            raise ValueError(f"dpid {value!r}: up to 16 hex digits")
        return f"{number:016x}"

    @field_validator("controller")
    @classmethod
    def _controller(cls, value: str) -> str:
        urls = [u.strip().rstrip("/") for u in value.split(",") if u.strip()]
        if not urls:
            raise ValueError("controller: at least one http(s)://HOST:PORT URL")
        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise ValueError(f"controller {url!r}: an http(s)://HOST:PORT URL")
        return ",".join(urls)

    @property
    def controllers(self) -> list[str]:
        """The controller API URLs given (``--controller``, comma-separated)."""
        return self.controller.split(",")

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: str | None) -> str | None:
        if value is not None:
            parse_address(value)
        return value

    @model_validator(mode="after")
    def _egress(self) -> AgentSettings:
        if self.egress_ip is not None and self.egress_ip == self.underlay_ip:
            raise ValueError("--egress-ip must not be the underlay address (the kernel owns it)")
        if self.egress_ip6 is not None and self.egress_ip is None:
            raise ValueError("--egress-ip6 needs --egress-ip (the gateway port it leaves by)")
        if self.egress_ip6 is not None and (
            self.egress_ip6.is_link_local or self.egress_ip6.is_multicast
            or self.egress_ip6.is_loopback or self.egress_ip6.is_unspecified
        ):  # fmt: skip
            raise ValueError(f"--egress-ip6 {self.egress_ip6}: needs a unicast global address")
        return self

    @model_validator(mode="after")
    def _ssl(self) -> AgentSettings:
        if bool(self.metrics_cert) != bool(self.metrics_key):
            raise ValueError("--metrics-cert and --metrics-key go together")
        if self.metrics_cert and not self.metrics:
            raise ValueError("--metrics-cert needs --metrics HOST:PORT")
        given = [self.ovs_ssl_key, self.ovs_ssl_cert, self.ovs_ssl_ca]
        if any(given) and not all(given):
            raise ValueError(
                "OpenFlow over TLS needs --ovs-ssl-key, --ovs-ssl-cert and --ovs-ssl-ca"
            )
        ssl_targets = [t for t in (self.openflow or "").split(",") if t.strip().startswith("ssl:")]
        if ssl_targets and not all(given):
            raise ValueError(
                f"--openflow {self.openflow}: an ssl: target needs --ovs-ssl-key, "
                "--ovs-ssl-cert and --ovs-ssl-ca"
            )
        return self

    @property
    def ovs_ssl(self) -> tuple[str, str, str] | None:
        """(key, certificate, CA) of the switch's TLS, when given."""
        if self.ovs_ssl_key and self.ovs_ssl_cert and self.ovs_ssl_ca:
            return self.ovs_ssl_key, self.ovs_ssl_cert, self.ovs_ssl_ca
        return None

    @property
    def socket_gid(self) -> int | None:
        """The id of ``--socket-group``, if one was given."""
        return None if self.socket_group is None else group_id(self.socket_group)

    @property
    def openflow_targets(self) -> tuple[str, ...]:
        """``--openflow`` (comma-separated), or ``tcp:<each controller's host>:6653``
        (``ssl:`` with TLS files): br-int's first targets, before the cluster tells more."""
        if self.openflow:
            return tuple(t.strip() for t in self.openflow.split(",") if t.strip())
        scheme = "ssl" if self.ovs_ssl else "tcp"
        return tuple(f"{scheme}:{urlsplit(u).hostname}:6653" for u in self.controllers)

    @classmethod
    def from_cli(cls, argv: list[str]) -> AgentSettings:
        """Parse ``argv`` (options as ``--kebab-case``; the environment fills the rest)."""
        return cls(_cli_parse_args=argv)  # type: ignore[call-arg]
