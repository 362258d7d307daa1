"""Controller settings (pydantic-settings): the one place that reads the environment."""

from __future__ import annotations

import os
from functools import lru_cache
from typing import Literal

from pydantic import AliasChoices, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DB_URL = "sqlite:////var/lib/vxplane/vxplane.db"
DEFAULT_TOKEN_FILE = "/var/lib/vxplane/admin-token"
MAX_RESERVATION_TTL = 10 * 365 * 86400  # ten years, in seconds
WILDCARDS = ("0.0.0.0", "::", "")  # listen addresses that name no address to advertise


class Settings(BaseSettings):
    """Controller settings; every field can be set as ``VXPLANE_<FIELD>`` in the environment."""

    model_config = SettingsConfigDict(env_prefix="VXPLANE_", extra="ignore")

    db_url: str = Field(DEFAULT_DB_URL, description="SQLAlchemy URL of the intent database")
    api_host: str = Field("127.0.0.1", description="listen address of the REST API")
    api_port: int = 8080
    allowed_hosts: list[str] = Field(
        default_factory=list,
        description="Host header values the API answers (default: the listen address, "
        "127.0.0.1 and localhost; '*' for any)",
    )
    api_cert: str | None = Field(None, description="PEM certificate: serve the API over TLS")
    api_key: str | None = Field(None, description="PEM private key of --api-cert")
    admin_token_file: str = Field(
        DEFAULT_TOKEN_FILE,
        description="where the bootstrap admin token is written (mode 0600) at start",
        validation_alias=AliasChoices("admin_token_file", "VXPLANE_TOKEN_FILE"),
    )
    openflow_host: str = "127.0.0.1"
    openflow_port: int = 6653
    openflow_cert: str | None = Field(
        None, description="PEM certificate of the OpenFlow listener (TLS with key and CA)"
    )
    openflow_key: str | None = Field(None, description="private key of openflow_cert (PEM)")
    openflow_ca: str | None = Field(
        None, description="CA that signs the switches' certificates (required with TLS)"
    )
    default_block_prefix: int = Field(26, ge=8, le=32, description="host-affinity block size")
    reservation_ttl: int = Field(
        86400,
        ge=0,
        le=MAX_RESERVATION_TTL,
        description="default of a new network's reservation_ttl: seconds after which an "
        "unbound endpoint's address may be reclaimed by a full subnet (0: never)",
    )
    engine_poll_interval: float = Field(
        2.0, gt=0, description="the flow engine looks at the database at least this often (s)"
    )
    engine_audit_interval: float = Field(
        60.0,
        gt=0,
        description="the flow engine compares its in-memory intent with the whole database "
        "this often (s), in pages (see engine_audit_page_endpoints); a difference is logged as "
        "an error, reported and a full read adopted",
    )
    engine_audit_page_endpoints: int = Field(
        5000,
        ge=1,
        description="the audit reads the database in pages of about this many bound endpoints "
        "(a slice of the hosts each), one every audit interval / pages seconds",
    )
    ready_timeout: float = Field(10.0, description="longest wait_ready a request may ask for (s)")
    trace_timeout: float = Field(
        5.0, gt=0, description="how long each host on a trace's path has to answer (s)"
    )
    task_poll_max: float = Field(
        30.0, gt=0, description="longest an agent's task poll is held open (s)"
    )
    host_dead_after: float = Field(30.0, description="heartbeat age after which a host is lost (s)")
    host_watch_interval: float = Field(
        1.0, gt=0, description="how often hosts' heartbeats are checked for host.lost events (s)"
    )
    events_capacity: int = Field(2000, ge=1, description="recent events kept for replay")
    events_keepalive: float = Field(
        15.0, gt=0, description="seconds between keep-alive comments on an idle event stream"
    )
    max_body_bytes: int = Field(
        1024 * 1024, ge=1024, description="largest request body accepted; larger: 413 (bytes)"
    )
    max_event_subscribers: int = Field(
        64, ge=1, description="open event streams at most; more: 503 with Retry-After"
    )
    max_event_subscribers_per_token: int = Field(
        8, ge=1, description="open event streams of one token at most; more: 503"
    )
    write_batch_max: int | None = Field(
        None,
        ge=1,
        description="endpoint writes committed together at most (group commit; 1: one "
        "transaction per write); default 64 on SQLite, 1 on PostgreSQL",
    )
    write_workers: int | None = Field(
        None,
        ge=1,
        description="write transactions run side by side; default 1 on SQLite, 16 on "
        "PostgreSQL (more than 1 only with write_batch_max 1)",
    )
    write_queue_max: int = Field(
        1024, ge=1, description="endpoint writes waiting for the writer at most; more: 503"
    )
    switch_echo_interval: float = Field(2.0, gt=0, description="OpenFlow echo probe period (s)")
    switch_handshake_timeout: float = Field(
        10.0, gt=0, description="s a new OpenFlow connection has to finish its handshake"
    )
    switch_echo_misses: int = Field(
        3, ge=1, description="unanswered echo probes before a switch counts as disconnected"
    )
    openflow_bundles: Literal["auto", "always", "never"] = Field(
        "auto",
        description="send a batch as one atomic ONF bundle: auto (batches that replace or "
        "remove flows while adding others), always, never",
    )
    openflow_max_dumps: int = Field(
        100,  # controller.engine.MAX_DUMPS
        ge=1,
        description="flow dumps under way at once at most; more switches to read wait "
        "(a restart's whole fleet reconnects at once: this bounds its memory peak)",
    )
    advertise_api: str | None = Field(
        None,
        description="API URL the other controllers and the agents reach this one at "
        "[default: http(s)://<api listen address>]",
    )
    advertise_openflow: str | None = Field(
        None,
        description="OpenFlow target switches reach this controller at, as OVS writes it "
        "(tcp:HOST:PORT or ssl:HOST:PORT) [default: from the OpenFlow listen address]",
    )
    lease: float = Field(3.0, gt=0, description="membership lease (s): writes stop when it lapses")
    lease_renew: float = Field(1.0, gt=0, description="how often the lease is renewed (s)")
    log_level: str = "INFO"

    def write_path(self, dialect: str) -> tuple[int, int]:
        """(write_batch_max, write_workers) for a database of ``dialect``: as set, else
        one writer of 64 on SQLite (one writer anyway), 16 writers of one on PostgreSQL."""
        if dialect == "sqlite":
            return self.write_batch_max or 64, self.write_workers or 1
        batch = self.write_batch_max or 1
        return batch, self.write_workers or (16 if batch == 1 else 1)

    def allowed_hosts_or_default(self) -> list[str]:
        """The Host header values to accept: as configured, else the listen address (unless
        it is a wildcard), 127.0.0.1, ::1 and localhost."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        names = ["127.0.0.1", "::1", "localhost"]
        if self.api_host not in ("0.0.0.0", "::", "", *names):
            names.insert(0, self.api_host)
        return names

    @property
    def api_url(self) -> str:
        """The API URL this controller advertises to the cluster ("" when it listens on every
        address and was not told which one to advertise: nobody could tell)."""
        if self.advertise_api:
            return self.advertise_api.rstrip("/")
        if self.api_host in WILDCARDS:
            return ""
        scheme = "https" if self.api_cert else "http"
        host = f"[{self.api_host}]" if ":" in self.api_host else self.api_host
        return f"{scheme}://{host}:{self.api_port}"

    @property
    def openflow_target(self) -> str:
        """The OpenFlow target (``tcp:`` or ``ssl:``) this controller advertises ("" when it
        listens on every address and has no --advertise-openflow: agents then keep the
        targets they were given instead of pointing br-int at a loopback address)."""
        if self.advertise_openflow:
            return self.advertise_openflow
        if self.openflow_host in WILDCARDS:
            return ""
        scheme = "ssl" if self.openflow_tls else "tcp"
        return f"{scheme}:{self.openflow_host}:{self.openflow_port}"

    @model_validator(mode="after")
    def _lease(self) -> Settings:
        if self.lease_renew >= self.lease:
            raise ValueError(
                f"the lease ({self.lease} s) must be longer than its renewal period "
                f"({self.lease_renew} s)"
            )
        if self.advertise_api and not self.advertise_api.startswith(("http://", "https://")):
            raise ValueError(f"--advertise-api {self.advertise_api!r}: an http(s):// URL")
        target = self.advertise_openflow
        if target and (not target.startswith(("tcp:", "ssl:")) or target.count(":") < 2):
            raise ValueError(f"--advertise-openflow {target!r}: tcp:HOST:PORT or ssl:HOST:PORT")
        return self

    @model_validator(mode="after")
    def _openflow_tls(self) -> Settings:
        given = [self.openflow_cert, self.openflow_key, self.openflow_ca]
        if any(given) and not all(given):
            raise ValueError(
                "OpenFlow TLS needs all three of --openflow-cert, --openflow-key and "
                "--openflow-ca (VXPLANE_OPENFLOW_CERT, _KEY, _CA)"
            )
        for path in given:
            if path and not os.path.isfile(path):
                raise ValueError(f"OpenFlow TLS file {path} does not exist")
        return self

    @property
    def openflow_tls(self) -> tuple[str, str, str] | None:
        """(certificate, key, CA) when OpenFlow runs over TLS."""
        if self.openflow_cert and self.openflow_key and self.openflow_ca:
            return self.openflow_cert, self.openflow_key, self.openflow_ca
        return None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
