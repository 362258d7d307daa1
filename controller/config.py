"""Controller settings (pydantic-settings): the one place that reads the environment."""

from __future__ import annotations

from functools import lru_cache

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_DB_URL = "sqlite:////var/lib/vxplane/vxplane.db"
DEFAULT_TOKEN_FILE = "/var/lib/vxplane/admin-token"


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
    default_block_prefix: int = Field(26, ge=8, le=32, description="host-affinity block size")
    ready_timeout: float = Field(10.0, description="longest wait_ready a request may ask for (s)")
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
    switch_echo_interval: float = Field(2.0, gt=0, description="OpenFlow echo probe period (s)")
    switch_echo_misses: int = Field(
        3, ge=1, description="unanswered echo probes before a switch counts as disconnected"
    )
    log_level: str = "INFO"

    def allowed_hosts_or_default(self) -> list[str]:
        """The Host header values to accept: as configured, else the listen address (unless
        it is a wildcard), 127.0.0.1, ::1 and localhost."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        names = ["127.0.0.1", "::1", "localhost"]
        if self.api_host not in ("0.0.0.0", "::", "", *names):
            names.insert(0, self.api_host)
        return names


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment on first use."""
    return Settings()
