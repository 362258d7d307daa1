"""A recording fake of the FlowSync protocol for the API tests."""

from __future__ import annotations

from collections.abc import Collection

from controller.model import Snapshot
from controller.sync import SwitchStatus


class RecordingSync:
    """A FlowSync that records notifications and waits, and answers as told."""

    def __init__(self) -> None:
        self.notified: list[int] = []
        self.waits: list[tuple[int, float]] = []
        self.wait_hosts: list[list[str]] = []
        self.applied = True
        self.status: list[SwitchStatus] = []
        self.waiting: dict[int, list[str]] = {}  # revision -> hosts not confirmed yet
        self.view: Snapshot | None = None  # what intent_view answers

    def notify(self, revision: int) -> None:
        self.notified.append(revision)

    def wait_applied(self, revision: int, timeout: float, hosts: Collection[str] = ()) -> bool:
        self.waits.append((revision, timeout))
        self.wait_hosts.append(list(hosts))
        return self.applied

    async def until_applied(
        self, revision: int, timeout: float, hosts: Collection[str] = ()
    ) -> bool:
        return self.wait_applied(revision, timeout, hosts)

    def switches(self) -> list[SwitchStatus]:
        return list(self.status)

    def waiting_on(self, revision: int) -> list[str] | None:
        return self.waiting.get(revision, [])

    def intent_view(self) -> Snapshot | None:
        return self.view
