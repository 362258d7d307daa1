"""Tasks for agents, handed out over the agent's own authenticated connection.

An agent opens no port for the controller: it long-polls ``GET /api/v1/hosts/{host}/tasks``
with its own token and answers each task with ``PUT .../tasks/{id}``. ``vxplane trace`` asks
the hosts on a packet's path this way to run ``ofproto/trace`` on their switch.

Everything here runs on the API's event loop (the routes are ``async``), so a waiting poll or
a waiting question holds no thread. Tasks live in this process's memory only: with several
controller processes, a host answers only the one its agent polls (the asker then reports
that the host did not answer). A task is handed out once; one whose asker gave up is dropped.
"""

from __future__ import annotations

import asyncio
import secrets
from dataclasses import dataclass, field
from typing import Any

MAX_PENDING_PER_HOST = 64


class BoardFull(Exception):
    """A host has ``MAX_PENDING_PER_HOST`` tasks nobody took: it is not polling."""


@dataclass(eq=False)
class Task:
    """One question for one host's agent."""

    id: str
    host: str
    kind: str
    args: dict[str, Any]
    answer: asyncio.Future[dict[str, Any]]
    handed: bool = False


@dataclass
class TaskBoard:
    """Pending tasks per host and the agents' polls waiting for them."""

    _pending: dict[str, dict[str, Task]] = field(default_factory=dict)
    _wake: dict[str, asyncio.Event] = field(default_factory=dict)

    def _event(self, host: str) -> asyncio.Event:
        return self._wake.setdefault(host, asyncio.Event())

    async def ask(
        self, host: str, kind: str, args: dict[str, Any], timeout: float
    ) -> dict[str, Any] | None:
        """Give ``host`` a task and wait up to ``timeout`` s for its answer (None: none came)."""
        tasks = self._pending.setdefault(host, {})
        if len(tasks) >= MAX_PENDING_PER_HOST:
            raise BoardFull(f"host {host} has {len(tasks)} tasks waiting: its agent is not polling")
        task = Task(
            secrets.token_hex(8), host, kind, args, asyncio.get_running_loop().create_future()
        )
        tasks[task.id] = task
        self._event(host).set()
        try:
            return await asyncio.wait_for(asyncio.shield(task.answer), timeout)
        except TimeoutError:
            return None
        finally:
            tasks.pop(task.id, None)

    async def take(self, host: str, wait: float) -> list[Task]:
        """Tasks for ``host`` not handed out yet, waiting up to ``wait`` s for one."""
        event = self._event(host)
        ready = self._fresh(host)
        if not ready and wait > 0:
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), wait)
            except TimeoutError:
                pass
            ready = self._fresh(host)
        for task in ready:
            task.handed = True
        return ready

    def _fresh(self, host: str) -> list[Task]:
        return [t for t in self._pending.get(host, {}).values() if not t.handed]

    def answer(self, host: str, task_id: str, result: dict[str, Any]) -> bool:
        """The agent's answer; False if no such task waits (it expired, or another host's)."""
        task = self._pending.get(host, {}).get(task_id)
        if task is None or task.answer.done():
            return False
        task.answer.set_result(result)
        return True
