"""Batch binds: ``POST /api/v1/bindings`` binds and unbinds many endpoints in one request.

One request is one write of the group-commit writer (``controller.api.writer``): one
transaction, and in it one set-based write of all the items (``controller.db.bindings``: a
handful of statements for the whole batch, not a dozen per item). Each item is checked as the
single request would be (the agent's host, its scope over the endpoint, revisions, ports),
against the state the items before it left, so the semantics are per item: an item that fails
changes nothing and is reported with its status and ``detail``; the others are applied and
committed together, at one revision. If the set-based write meets a unique-index violation (a
concurrent bind on PostgreSQL), it is rolled back and each item runs alone in a SAVEPOINT, as
a single request would. A malformed request (a bad field in any item, no items, more than
``MAX_BATCH_ITEMS``) is refused as a whole with 422 and changes nothing.

The answer is 200 with one outcome per item, in order (a multi-status); items are bound
``pending`` (no ``wait_ready``: read each endpoint with ``wait_ready`` to wait for it).
"""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from controller.api.auth import PrincipalDep, allow
from controller.api.deps import SettingsDep, WriterDep
from controller.api.routes.endpoints import scope_of
from controller.api.schemas import (
    BindingBatch,
    BindingBatchResult,
    BindingItem,
    BindingOutcome,
    EndpointPublic,
)
from controller.api.status import status_of
from controller.auth import Role, require_host
from controller.db import bindings, changes
from controller.errors import Conflict, VxplaneError

router = APIRouter(prefix="/api/v1", tags=["endpoints"])


@router.post("/bindings")
@allow(Role.agent)
async def bind_many(
    body: BindingBatch, writer: WriterDep, settings: SettingsDep, principal: PrincipalDep
) -> BindingBatchResult:
    """Bind or unbind each item (per-item outcomes; see the module docstring): an agent's
    token only for its own host, each item in one transaction with the others."""
    outcomes: list[BindingOutcome | None] = [None] * len(body.items)
    todo: list[tuple[int, bindings.Binding]] = []
    for n, item in enumerate(body.items):
        try:
            what = "unbind endpoints from" if item.unbind else "bind endpoints to"
            require_host(principal, item.host, what)
        except VxplaneError as exc:
            outcomes[n] = _failed(exc)
            continue
        todo.append((n, _binding(item)))
    scope = scope_of(settings, principal)

    def write(session: Session) -> tuple[list[bindings.Outcome], int | None]:
        items = [b for _, b in todo]
        try:
            with session.begin_nested():
                done = bindings.write(session, items, scope=scope)
        except IntegrityError:  # a concurrent change: each item alone, as single requests
            changes.take(session)
            done = [_alone(session, b, scope) for b in items]
        revisions = [d.revision for d in done if d.revision is not None]
        return done, max(revisions, default=None)

    done = await writer.run(write, principal) if todo else []
    for (n, _), d in zip(todo, done, strict=True):
        outcomes[n] = _shown(d)
    return BindingBatchResult(items=[o for o in outcomes if o is not None])


def _binding(item: BindingItem) -> bindings.Binding:
    if item.unbind:
        return bindings.Binding(item.network, item.name, item.host)
    return bindings.Binding(
        item.network, item.name, item.host, item.ofport, port_name=item.port_name, ip=item.ip,
        labels=item.labels, if_revision=item.if_revision, move=item.move, create=item.create,
    )  # fmt: skip


def _alone(
    session: Session, item: bindings.Binding, scope: bindings.Scope | None
) -> bindings.Outcome:
    """One item in its own SAVEPOINT, rolled back if it fails."""
    try:
        with session.begin_nested():
            done = bindings.write(session, [item], scope=scope)[0]
            if done.error is not None:
                raise done.error
            return done
    except VxplaneError as exc:
        changes.take(session)  # the rolled-back item announces nothing
        return bindings.Outcome(error=exc)
    except IntegrityError:
        changes.take(session)
        return bindings.Outcome(
            error=Conflict("conflicts with a concurrent change; retry the item")
        )


def _shown(done: bindings.Outcome) -> BindingOutcome:
    if done.error is not None:
        return _failed(done.error)
    shown = EndpointPublic.model_validate(done.record)
    return BindingOutcome(status=201 if done.created else 200, endpoint=shown)


def _failed(exc: VxplaneError) -> BindingOutcome:
    held = getattr(exc, "endpoint", None)  # RevisionMismatch: the endpoint as it is
    shown = EndpointPublic.model_validate(held) if held is not None else None
    return BindingOutcome(status=status_of(exc), endpoint=shown, detail=exc.message)
