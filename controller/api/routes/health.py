"""GET /healthz: the controller answers; its database is readable, or reads come from memory."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Response

from controller.api import stale
from controller.api.deps import SessionDep, SyncDep
from controller.api.schemas import HealthPublic
from controller.db import repo

router = APIRouter(tags=["health"])
log = logging.getLogger(__name__)


@router.get("/healthz", response_model_exclude_none=True)
def healthz(session: SessionDep, sync: SyncDep, response: Response) -> HealthPublic:
    """``ok`` and the current intent revision. While the database cannot be reached:
    ``degraded`` with the reason and the revision of the in-memory intent (200: the
    controller serves reads from memory and keeps the switches' flows); 503 when it has no
    intent in memory either."""
    try:
        return HealthPublic(status="ok", revision=repo.current_revision(session))
    except Exception as exc:
        view = stale.fallback(exc, sync, response)
        cause = str(getattr(exc, "orig", exc)).strip().splitlines()[0][:200]
        return HealthPublic(
            status="degraded",
            revision=view.revision,
            reason=(
                f"database unavailable ({cause}): writes answer 503; networks, hosts and bound "
                f"endpoints are served from memory at revision {view.revision} "
                f"({stale.STALE_HEADER}: 1); flows on the switches are kept"
            ),
        )
