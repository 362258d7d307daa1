"""The contract between the API (writers of intent) and the OpenFlow side (flow sync).

The API commits a change, which bumps the database revision, then calls ``notify``; it may
then wait until every switch whose flows that revision changed has confirmed them:
``until_applied`` from the event loop (a waiting request holds no thread, so many waits cannot
starve other requests), ``wait_applied`` from a thread. The OpenFlow engine
implements this protocol; API tests use a small in-memory implementation.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Protocol

from controller.model import Snapshot


@dataclass(frozen=True, slots=True)
class SwitchStatus:
    """What the controller knows of one connected (or once connected) switch."""

    dpid: int
    connected: bool
    address: str | None
    applied_revision: int
    flow_count: int
    host: str | None = None
    rejected_flows: int = 0  # flows the switch refused, held back and retried with backoff
    wanted_generation: int = 0  # bumped when the host's desired flows change
    applied_generation: int = 0  # the newest generation the switch confirmed (barrier)
    role: str | None = None  # this controller's OpenFlow role on it (None: no cluster roles)
    # its flow dump: "queued" (waiting for one of the engine's dump slots), "under_way", or
    # None (none wanted, e.g. synced)
    flow_dump: str | None = None


class FlowSync(Protocol):
    """Notified of intent changes; tells how far each switch has applied them."""

    def notify(self, revision: int) -> None:
        """Intent changed and was committed at ``revision``: recompute and push flows."""

    def wait_applied(self, revision: int, timeout: float, hosts: Collection[str] = ()) -> bool:
        """Block until every connected switch has applied ``revision`` and the switches of
        ``hosts`` are connected (True), or until ``timeout`` (False)."""

    async def until_applied(
        self, revision: int, timeout: float, hosts: Collection[str] = ()
    ) -> bool:
        """``wait_applied`` without holding a thread: await it in the event loop."""

    def switches(self) -> list[SwitchStatus]:
        """Status of every switch seen since start."""

    def waiting_on(self, revision: int) -> list[str] | None:
        """Hosts whose switches have not confirmed what ``revision`` changed for them
        (empty: ready; None: not known yet)."""

    def intent_view(self) -> Snapshot | None:
        """The intent as this process last read it (networks, hosts, blocks and *bound*
        endpoints), for reads served while the database is unavailable; None: none read."""


class NullSync:
    """A FlowSync with no switches: every revision is applied at once (tests, no OpenFlow)."""

    def __init__(self) -> None:
        self.notified: list[int] = []

    def notify(self, revision: int) -> None:
        self.notified.append(revision)

    def wait_applied(self, revision: int, timeout: float, hosts: Collection[str] = ()) -> bool:
        return True

    async def until_applied(
        self, revision: int, timeout: float, hosts: Collection[str] = ()
    ) -> bool:
        return True

    def switches(self) -> list[SwitchStatus]:
        return []

    def waiting_on(self, revision: int) -> list[str] | None:
        return []

    def intent_view(self) -> Snapshot | None:
        return None
