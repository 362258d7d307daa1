"""Batch binds: ``POST /api/v1/bindings`` binds and unbinds many endpoints in one request.

One request is one write of the group-commit writer (``controller.api.writer``): one
transaction. Each item runs in its own SAVEPOINT and is checked as the single request would be
(the agent's host, its scope over the endpoint, revisions, ports), so the semantics are per
item: an item that fails is rolled back alone and reported with its status and ``detail``; the
others are applied and committed together. A malformed request (a bad field in any item, no
items, more than ``MAX_BATCH_ITEMS``) is refused as a whole with 422 and changes nothing.

The answer is 200 with one outcome per item, in order (a multi-status); items are bound
``pending`` (no ``wait_ready``: read each endpoint with ``wait_ready`` to wait for it).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.api.auth import PrincipalDep, allow
from controller.api.deps import SettingsDep, WriterDep
from controller.api.routes.endpoints import check_scope
from controller.api.schemas import (
    BindingBatch,
    BindingBatchResult,
    BindingItem,
    BindingOutcome,
    EndpointPublic,
)
from controller.api.status import status_of
from controller.auth import Principal, Role, require_host
from controller.config import Settings
from controller.db import changes, repo
from controller.errors import VxplaneError

router = APIRouter(prefix="/api/v1", tags=["endpoints"])


@router.post("/bindings")
@allow(Role.agent)
async def bind_many(
    body: BindingBatch, writer: WriterDep, settings: SettingsDep, principal: PrincipalDep
) -> BindingBatchResult:
    """Bind or unbind each item (per-item outcomes; see the module docstring): an agent's
    token only for its own host, each item in one transaction with the others."""

    def write(session: Session) -> tuple[list[BindingOutcome], int | None]:
        outcomes: list[BindingOutcome] = []
        notes: list[tuple[str, dict[str, Any]]] = []
        revision: int | None = None
        for item in body.items:
            notes += changes.take(session)
            try:
                with session.begin_nested():
                    outcome, changed = _apply(session, settings, principal, item)
            except VxplaneError as exc:
                changes.take(session)  # the rolled-back item announces nothing
                outcomes.append(_failed(exc))
                continue
            except IntegrityError:  # a concurrent change: as the single request answers
                changes.take(session)
                outcomes.append(BindingOutcome(status=409, detail="conflicts with a concurrent "
                                               "change; retry the item"))  # fmt: skip
                continue
            outcomes.append(outcome)
            if changed is not None:
                revision = max(revision or 0, changed)
        for kind, data in notes + changes.take(session):
            changes.note(session, kind, **data)
        return outcomes, revision

    outcomes = await writer.run(write, principal)
    return BindingBatchResult(items=outcomes)


def _apply(
    session: Session, settings: Settings, principal: Principal, item: BindingItem
) -> tuple[BindingOutcome, int | None]:
    if item.unbind:
        require_host(principal, item.host, "unbind endpoints from")
        record, revision = repo.unbind_endpoint(session, item.network, item.name, host=item.host)
        return BindingOutcome(status=200, endpoint=EndpointPublic.model_validate(record)), revision
    require_host(principal, item.host, "bind endpoints to")
    assert item.ofport is not None  # the schema's validator
    check_scope(session, settings, principal, item.network, item.name, "bind")
    record, created, revision = repo.attach_endpoint(
        session,
        item.network,
        item.name,
        item.host,
        item.ofport,
        port_name=item.port_name,
        ip=item.ip,
        labels=item.labels,
        if_revision=item.if_revision,
        move=item.move,
        create=item.create,
    )
    shown = EndpointPublic.model_validate(record)
    return BindingOutcome(status=201 if created else 200, endpoint=shown), revision


def _failed(exc: VxplaneError) -> BindingOutcome:
    held = getattr(exc, "endpoint", None)  # RevisionMismatch: the endpoint as it is
    shown = EndpointPublic.model_validate(held) if held is not None else None
    return BindingOutcome(status=status_of(exc), endpoint=shown, detail=exc.message)
