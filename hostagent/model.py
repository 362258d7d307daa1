"""The agent's typed view of the controller's answers (frozen values, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv4Interface, IPv6Address, IPv6Interface
from typing import Any

from hostagent.errors import ControllerUnavailable


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as the controller reports it (``docs/api.md``, EndpointPublic)."""

    network: str
    name: str
    ip: IPv4Address
    prefixlen: int
    gateway: IPv4Address | None
    mac: str
    vni: int = 0
    host: str | None = None
    ofport: int | None = None
    port_name: str | None = None
    state: str = "reserved"
    revision: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    ip6: IPv6Address | None = None  # dual stack: the network's subnet6 + ``ip`` as low 32 bits
    prefixlen6: int | None = None
    gateway6: IPv6Address | None = None

    @property
    def key(self) -> tuple[str, str]:
        """(network, name): the endpoint's identity."""
        return (self.network, self.name)

    @property
    def interface(self) -> IPv4Interface:
        """The address with its prefix length, as configured in the container."""
        return IPv4Interface(f"{self.ip}/{self.prefixlen}")

    @property
    def interface6(self) -> IPv6Interface | None:
        """The IPv6 address with its prefix length (None: the network is IPv4 only)."""
        if self.ip6 is None or self.prefixlen6 is None:
            return None
        return IPv6Interface(f"{self.ip6}/{self.prefixlen6}")

    @property
    def ready(self) -> bool:
        """The controller confirmed the endpoint's flows on every switch that needs them."""
        return self.state == "ready"

    @classmethod
    def from_api(cls, doc: Any) -> Endpoint:
        """Parse one EndpointPublic; a malformed answer is the controller's fault (503)."""
        try:
            ip6 = IPv6Address(doc["ip6"]) if doc.get("ip6") else None
            prefixlen6 = int(doc["prefixlen6"]) if ip6 is not None else None
            if prefixlen6 is not None and not 0 < prefixlen6 <= 128:
                raise ValueError(f"prefixlen6 {prefixlen6}")
            return cls(
                network=str(doc["network"]),
                name=str(doc["name"]),
                ip=IPv4Address(doc["ip"]),
                prefixlen=int(doc["prefixlen"]),
                gateway=IPv4Address(doc["gateway"]) if doc.get("gateway") else None,
                mac=str(doc["mac"]).lower(),
                vni=int(doc.get("vni", 0)),
                host=doc.get("host"),
                ofport=doc.get("ofport"),
                port_name=doc.get("port_name"),
                state=str(doc.get("state", "reserved")),
                revision=int(doc.get("revision", 0)),
                labels=dict(doc.get("labels") or {}),
                ip6=ip6,
                prefixlen6=prefixlen6,
                gateway6=IPv6Address(doc["gateway6"]) if ip6 and doc.get("gateway6") else None,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ControllerUnavailable(f"malformed endpoint from the controller: {exc!r}") from exc

    def to_api(self) -> dict[str, Any]:
        """The JSON shape the agent's own API answers with (the controller's, as received)."""
        return {
            "network": self.network,
            "name": self.name,
            "ip": str(self.ip),
            "prefixlen": self.prefixlen,
            "gateway": str(self.gateway) if self.gateway else None,
            "mac": self.mac,
            "vni": self.vni,
            "host": self.host,
            "ofport": self.ofport,
            "port_name": self.port_name,
            "state": self.state,
            "revision": self.revision,
            "labels": dict(self.labels),
            "ip6": str(self.ip6) if self.ip6 else None,
            "prefixlen6": self.prefixlen6,
            "gateway6": str(self.gateway6) if self.gateway6 else None,
        }


@dataclass(frozen=True, slots=True)
class Network:
    """A network as the controller reports it."""

    name: str
    subnet: str
    gateway: str
    vni: int
    subnet6: str | None = None  # dual stack: its IPv6 prefix
    gateway6: str | None = None

    @classmethod
    def from_api(cls, doc: Any) -> Network:
        """Parse one NetworkPublic."""
        try:
            return cls(
                str(doc["name"]), str(doc["subnet"]), str(doc["gateway"]), int(doc["vni"]),
                str(doc["subnet6"]) if doc.get("subnet6") else None,
                str(doc["gateway6"]) if doc.get("gateway6") else None,
            )  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise ControllerUnavailable(f"malformed network from the controller: {exc!r}") from exc
