"""Published ports asked for by a runtime (Docker ``-p``, the CNI ``portMappings``
capability): publish them at the controller all or none, and take back only what is ours.

A runtime's list is recorded on the endpoint's OVS interface (``external_ids``, see
``encode``), so whatever tears the attachment down (Docker's revoke, leave or delete, the
agent's cleanup after a vanished container, CNI DEL) knows what to unpublish, also after an
agent restart. Unpublishing is conditional on the endpoint (``?endpoint=``): a cleanup after
a start that was refused because another container holds the host port never removes it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from hostagent.client import ControllerClient, ControllerError

log = logging.getLogger("hostagent.publish")

EXT_PUBLISHED = "vxplane-published"
PROTOS = ("tcp", "udp")


@dataclass(frozen=True, order=True)
class PortMap:
    """``host_port``/``proto`` of the endpoint's host forwarded to the endpoint's ``port``."""

    host_port: int
    port: int
    proto: str = "tcp"

    def __str__(self) -> str:
        return f"{self.host_port}:{self.port}/{self.proto}"


def encode(maps: list[PortMap]) -> str:
    """``8080:80/tcp,53:53/udp`` (what ``external_ids`` keeps; "" for none)."""
    return ",".join(str(m) for m in maps)


def decode(text: str | None) -> list[PortMap]:
    """The maps of ``encode``'s text; malformed parts are skipped (hand-edited rows)."""
    maps = []
    for part in filter(None, (text or "").split(",")):
        ports, _, proto = part.partition("/")
        host, _, port = ports.partition(":")
        if host.isdigit() and port.isdigit() and proto in PROTOS:
            maps.append(PortMap(int(host), int(port), proto))
    return maps


def check(maps: list[PortMap]) -> list[PortMap]:
    """The distinct maps, sorted; ValueError with a message for the user if one is not
    publishable or two want the same host port."""
    seen: dict[tuple[int, str], PortMap] = {}
    for m in maps:
        if m.proto not in PROTOS:
            raise ValueError(f"{m}: vxplane publishes tcp and udp ports only")
        if not 1 <= m.host_port <= 32767:
            raise ValueError(
                f"{m}: host port must be 1..32767 (32768 and up are the gateway's source ports)"
            )
        if not 1 <= m.port <= 65535:
            raise ValueError(f"{m}: container port must be 1..65535")
        other = seen.setdefault((m.host_port, m.proto), m)
        if other != m:
            raise ValueError(f"host port {m.host_port}/{m.proto} asked for twice ({other}, {m})")
    return sorted(seen.values())


def publish_all(client: ControllerClient, network: str, endpoint: str, maps: list[PortMap]) -> None:
    """Publish every map for ``endpoint``, or none: on the first refusal, the ones made
    here are taken back and the refusal (``ControllerError``, its status and message) is
    raised."""
    done: list[PortMap] = []
    try:
        for m in maps:
            client.publish(network, endpoint, m.host_port, m.port, m.proto)
            done.append(m)
    except BaseException:
        unpublish_all(client, network, endpoint, done)
        raise


def unpublish_all(
    client: ControllerClient, network: str, endpoint: str, maps: list[PortMap]
) -> list[PortMap]:
    """Take back ``endpoint``'s publications of ``maps`` (those still its own); returns the
    ones removed. Gone already (404) or held by another endpoint (409) is fine; an
    unreachable controller raises (the caller's cleanup runs again later)."""
    removed = []
    for m in maps:
        try:
            client.unpublish(network, m.proto, m.host_port, endpoint=endpoint)
            removed.append(m)
        except ControllerError as exc:
            if exc.status not in (404, 409):
                raise
            log.info("unpublish %s of %s/%s: %s", m, network, endpoint, exc.detail)
    return removed
