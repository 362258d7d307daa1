"""GET /healthz: the controller answers and its database is readable."""

from __future__ import annotations

from fastapi import APIRouter

from controller.api.deps import SessionDep
from controller.api.schemas import HealthPublic
from controller.db import repo

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz(session: SessionDep) -> HealthPublic:
    """``ok`` and the current intent revision (503 when the database is unavailable)."""
    return HealthPublic(status="ok", revision=repo.current_revision(session))
