"""Certificates and the audit trail (no personal values in either)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query

from api.auth import Permission, Principal
from api.context import AppContext, next_cursor, parse_cursor, requires
from api.problems import ApiProblem
from projections.sql import utc_text

router = APIRouter()
Reader = Annotated[Principal, Depends(requires(Permission.READ_RECORDS))]
MAX_PAGE = 500


@router.get("/certificates/{record_id}", tags=["certificates"])
def certificate(record_id: UUID, context: AppContext, _: Reader) -> dict[str, Any]:
    """A certificate record's current information, status and recipients."""
    state = context.projections.certificate(record_id, context.clock())
    if state is None:
        raise ApiProblem(404, "Not found", f"certificate record {record_id} not found")
    return state


@dataclass
class AuditFilters:
    """Which events of the audit trail to list."""

    subject: UUID | None = None
    certificate: UUID | None = None
    event_type: Annotated[str | None, Query(max_length=100)] = None
    actor: Annotated[str | None, Query(max_length=200)] = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: Annotated[str | None, Query(max_length=100)] = None
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100


@router.get("/audit", tags=["audit"])
def audit(context: AppContext, _: Reader, filters: Annotated[AuditFilters, Depends()]) -> dict[str, Any]:
    """The audit trail, oldest first, a page at a time: ask again with ``next_cursor``."""
    after = parse_cursor(filters.cursor)
    where: dict[str, Any] = {}
    if filters.certificate:
        where["certificate_record_id"] = str(filters.certificate)
    if filters.event_type:
        where["event_type"] = filters.event_type
    if filters.actor:
        where["actor"] = filters.actor
    conditions: list[tuple[str, str, Any]] = [("notification_id", ">", after)]
    for operator, moment in ((">=", filters.since), ("<", filters.until)):
        if moment is not None:
            if moment.tzinfo is None:
                raise ApiProblem(422, "Invalid request", "times need a time zone")
            conditions.append(("occurred_at", operator, utc_text(moment.astimezone(UTC))))
    store, view = context.projections.store, context.projections.view("audit_trail")
    if filters.subject:
        concerning = store.read(
            view,
            "event_subjects",
            {"subject_id": str(filters.subject)},
            "notification_id",
            conditions=[("notification_id", ">", after)],
        )
        conditions.append(("notification_id", "in", [r["notification_id"] for r in concerning]))
    rows = store.read(view, "events", where, "notification_id", conditions=conditions, limit=filters.limit)
    more = next_cursor(rows[-1]["notification_id"]) if len(rows) == filters.limit else None
    return {"items": rows, "next_cursor": more}
