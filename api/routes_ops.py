"""Health and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api.context import AppContext
from api.problems import ApiProblem

router = APIRouter(tags=["operations"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/ready")
def ready(context: AppContext) -> dict[str, Any]:
    """The event store answers and every view has been built."""
    statuses = context.projections.status()
    unbuilt = [s.name for s in statuses if s.state in {"not built", "stopped"}]
    if unbuilt:
        raise ApiProblem(503, "Not ready", f"views not ready: {', '.join(unbuilt)}")
    return {"status": "ready", "lag": max((s.lag for s in statuses), default=0)}
