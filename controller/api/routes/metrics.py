"""GET /metrics: the controller's Prometheus metrics (any valid token; docs/metrics.md)."""

from __future__ import annotations

from typing import cast

from fastapi import APIRouter, Request
from fastapi.responses import Response

from controller.metrics import TEXT_FORMAT, ControllerMetrics

router = APIRouter(tags=["metrics"])


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text exposition format 0.0.4 (what every Prometheus reads)",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        }
    },
)
def metrics(request: Request) -> Response:
    """Switches, revision lag, flows, endpoints by state, attach-to-ready, engine passes, API
    latency by route and database errors, in Prometheus' text format (a viewer token will do)."""
    registry = cast(ControllerMetrics, request.app.state.metrics)
    return Response(registry.render(), media_type=TEXT_FORMAT)
