"""Agents' tasks: the long poll ``GET /api/v1/hosts/{name}/tasks`` and its answers.

Only the host's own agent (or an admin) may take a host's tasks or answer them; a viewer
may not, since taking a task hands it out. See ``controller.tasks``.
"""

from __future__ import annotations

from typing import Annotated, Any, cast

from fastapi import APIRouter, Query, Request, Response, status
from pydantic import BaseModel, Field

from controller.api.auth import PrincipalDep, allow
from controller.api.deps import SettingsDep
from controller.auth import Forbidden, Principal, Role, require_host
from controller.errors import NotFound
from controller.tasks import TaskBoard

router = APIRouter(prefix="/api/v1/hosts", tags=["tasks"])


class TaskPublic(BaseModel):
    """A task for the host's agent: ``kind`` says what to do with ``args``."""

    id: str
    kind: str = Field(description="ofproto/trace: run it on the bridge with the flow in args")
    args: dict[str, Any]


class TaskResult(BaseModel):
    """What the agent found: the command's output, or why it could not run it."""

    # 64 Ki characters: even escaped as JSON (\uXXXX pairs) the body stays under the API's
    # 1 MiB limit, so a too-long output is a 422, not a 413; ofproto/trace prints a few KiB
    output: str = Field("", max_length=64 * 1024)
    error: str | None = Field(None, max_length=4096)


def board(request: Request) -> TaskBoard:
    """The app's task board."""
    return cast(TaskBoard, request.app.state.tasks)


def _own(principal: Principal, name: str, what: str) -> None:
    if principal.role is Role.viewer:
        raise Forbidden(f"a viewer token may not {what} host {name!r}'s tasks")
    require_host(principal, name, f"{what} the tasks of")


@router.get("/{name}/tasks")
async def take_tasks(
    name: str,
    request: Request,
    principal: PrincipalDep,
    settings: SettingsDep,
    wait: Annotated[
        float, Query(ge=0, le=300, description="seconds to wait for one (capped by settings)")
    ] = 0,
) -> list[TaskPublic]:
    """Tasks for this host not handed out yet, waiting up to ``wait`` s (its agent, or admin)."""
    _own(principal, name, "take")
    tasks = await board(request).take(name, min(wait, settings.task_poll_max))
    return [TaskPublic(id=t.id, kind=t.kind, args=t.args) for t in tasks]


@router.put("/{name}/tasks/{task_id}", status_code=status.HTTP_204_NO_CONTENT)
@allow(Role.agent)
async def answer_task(
    name: str, task_id: str, body: TaskResult, request: Request, principal: PrincipalDep
) -> Response:
    """The answer to a task (404 when nobody waits for it any more)."""
    _own(principal, name, "answer")
    if not board(request).answer(name, task_id, body.model_dump()):
        raise NotFound(f"no task {task_id!r} waits for host {name!r} (it expired)")
    return Response(status_code=status.HTTP_204_NO_CONTENT)
