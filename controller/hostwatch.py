"""Host liveness: alive while the last heartbeat is recent; a pure watcher of transitions.

``is_alive`` is the one definition the API (``HostPublic.alive``) and the watcher share.
``HostWatch.check`` compares the hosts it is given with what it saw last time and returns
the ``host.lost`` / ``host.alive`` events to publish; the controller calls it periodically
(see ``controller.api.app``). New hosts are announced by their registration, not here.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from controller.db.records import HostRecord


def is_alive(last_seen: datetime | None, now: datetime, dead_after: float) -> bool:
    """The host heartbeated (or registered) at most ``dead_after`` seconds before ``now``."""
    return last_seen is not None and (now - last_seen).total_seconds() <= dead_after


class HostWatch:
    """Remembers which hosts were alive; reports the ones that changed."""

    def __init__(self) -> None:
        self._alive: dict[str, bool] = {}

    def check(
        self, hosts: Iterable[HostRecord], now: datetime, dead_after: float
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events for hosts whose liveness changed since the last call."""
        events: list[tuple[str, dict[str, Any]]] = []
        seen: dict[str, bool] = {}
        for host in hosts:
            alive = is_alive(host.last_seen, now, dead_after)
            seen[host.name] = alive
            before = self._alive.get(host.name)
            if before is None or before == alive:
                continue
            last_seen = host.last_seen.isoformat() if host.last_seen else None
            events.append(
                (
                    "host.alive" if alive else "host.lost",
                    {"host": host.name, "last_seen": last_seen},
                )
            )
        self._alive = seen
        return events
