"""Host liveness: alive while the last heartbeat is recent; a pure watcher of transitions.

``is_alive`` is the one definition the API (``HostPublic.alive``) and the watcher share.
``HostWatch.check`` compares the hosts it is given with what it saw last time and returns
the ``host.lost`` / ``host.alive`` events to publish; the controller calls it periodically
(see ``controller.api.app``). New hosts are announced by their registration, not here.

The first call only learns the hosts as they are (a restarted controller does not report
every long-dead host again). After it, a host the watcher has not seen before was just
registered and so counts as alive: one that is already dead at its first sighting (it
registered and stopped heartbeating between two looks) is reported lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any, Protocol


class Seen(Protocol):
    """What the watcher reads of a host (a ``HostRecord``, or the two columns alone as
    ``repo.host_heartbeats`` reads them)."""

    @property
    def name(self) -> str: ...

    @property
    def last_seen(self) -> datetime | None: ...


def is_alive(last_seen: datetime | None, now: datetime, dead_after: float) -> bool:
    """The host heartbeated (or registered) at most ``dead_after`` seconds before ``now``."""
    return last_seen is not None and (now - last_seen).total_seconds() <= dead_after


class HostWatch:
    """Remembers which hosts were alive; reports the ones that changed."""

    def __init__(self) -> None:
        self._alive: dict[str, bool] = {}
        self._primed = False

    def check(
        self, hosts: Iterable[Seen], now: datetime, dead_after: float
    ) -> list[tuple[str, dict[str, Any]]]:
        """Events for hosts whose liveness changed since the last call."""
        events: list[tuple[str, dict[str, Any]]] = []
        seen: dict[str, bool] = {}
        for host in hosts:
            alive = is_alive(host.last_seen, now, dead_after)
            seen[host.name] = alive
            registered = self._primed and host.last_seen is not None
            before = self._alive.get(host.name, True if registered else None)
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
        self._primed = True
        return events
