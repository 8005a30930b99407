"""Certificates, the audit trail and the upstream gaps accepted (no personal values in any)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from api.auth import Permission, Principal
from api.context import NO_NUL, AppContext, next_cursor, parse_cursor, requires
from api.problems import ApiProblem
from projections.sql import utc_text

router = APIRouter()
Reader = Annotated[Principal, Depends(requires(Permission.READ_RECORDS))]
MAX_PAGE = 500


@router.get("/certificates/{record_id}", tags=["certificates"])
async def certificate(
    record_id: UUID, context: AppContext, _: Reader, as_of: datetime | None = None
) -> dict[str, Any]:
    """A certificate record's current information, status and recipients; with ``as_of``, as it was then."""
    # On the event loop: a read of two view rows (see api.context). The as_of
    # answer replays the record's events, in the thread pool.
    if as_of is not None:
        if as_of.tzinfo is None:
            raise ApiProblem(422, "Invalid request", "as_of needs a time zone")
        record = await run_in_threadpool(context.ledger.certificate_record_as_of, record_id, as_of)
        return {
            "as_of": as_of.isoformat(),
            "record_id": str(record.id),
            "record_ref": record.record_ref,
            "channel": record.channel,
            "policy_version": record.policy_version,
            "purposes": record.purposes,
            "common_name": record.common_name,
            "sans": record.sans,
            "serial": record.serial,
            "validation": record.validation,
            "organisation": record.organisation,
            "account_id": str(record.account_id) if record.account_id else None,
            "not_before": utc_text(record.not_before),
            "not_after": utc_text(record.not_after),
            "status": record.status_at(as_of),
            "recipients": [
                {"provision_id": str(p), "category": c, "recipient_id": r} for p, c, r in record.provisions
            ],
        }
    state = context.projections.certificate(record_id, context.clock())
    if state is None:
        raise ApiProblem(404, "Not found", f"certificate record {record_id} not found")
    return state


class AuditFilters(BaseModel):
    """Which events of the audit trail to list (query parameters, validated without a call)."""

    model_config = ConfigDict(extra="ignore")

    subject: UUID | None = None
    certificate: UUID | None = None
    event_type: Annotated[str | None, Field(max_length=100, pattern=NO_NUL)] = None
    actor: Annotated[str | None, Field(max_length=200, pattern=NO_NUL)] = None
    since: datetime | None = None
    until: datetime | None = None
    cursor: Annotated[str | None, Field(max_length=100)] = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 100


@router.get("/audit", tags=["audit"])
async def audit(context: AppContext, _: Reader, filters: Annotated[AuditFilters, Query()]) -> dict[str, Any]:
    """The audit trail, oldest first, a page at a time: ask again with ``next_cursor``."""
    # On the event loop: one indexed page of one view (see api.context).
    after = parse_cursor(filters.cursor)
    try:
        rows = context.projections.audit_page(
            after=after,
            limit=filters.limit,
            subject=filters.subject,
            certificate=filters.certificate,
            event_type=filters.event_type,
            actor=filters.actor,
            since=filters.since,
            until=filters.until,
        )
    except ValueError as exc:
        raise ApiProblem(422, "Invalid request", str(exc)) from None
    more = next_cursor(rows[-1]["notification_id"]) if len(rows) == filters.limit else None
    return {"items": rows, "next_cursor": more}


class Page(BaseModel):
    """A page of a listing: where to go on from (a ``next_cursor`` given before) and how many."""

    model_config = ConfigDict(extra="ignore")

    cursor: Annotated[str | None, Field(max_length=100)] = None
    limit: Annotated[int, Field(ge=1, le=MAX_PAGE)] = 100


@router.get("/upstream-gaps", tags=["audit"])
async def upstream_gaps(context: AppContext, _: Reader, page: Annotated[Page, Query()]) -> dict[str, Any]:
    """Every upstream gap a person accepted (``kiroku consume accept-loss``), oldest first, a page at a time.

    Which messages of which upstream stream will never be recorded, the reason
    given, who accepted it and when. Read from the event store through an
    index of its own, in the thread pool. Ask again with ``next_cursor``.
    """
    after = parse_cursor(page.cursor)
    gaps = await run_in_threadpool(context.ledger.accepted_gaps, after=after, limit=page.limit)
    more = next_cursor(gaps[-1].notification_id) if len(gaps) == page.limit else None
    return {"items": [gap.as_dict() for gap in gaps], "next_cursor": more}


@router.get("/dead-letters", tags=["audit"])
async def dead_letters(context: AppContext, _: Reader, page: Annotated[Page, Query()]) -> dict[str, Any]:
    """The upstream messages ingest sent to a dead-letter topic, once each, oldest first, a page at a time.

    Where each was (stream, topic, partition, offset) and why (the error's
    class, the clause of the policy that refused it, if one did); never the
    message or the error's text. Read from the event store through an index
    of its own, in the thread pool. Ask again with ``next_cursor``.
    """
    after = parse_cursor(page.cursor)
    letters = await run_in_threadpool(context.ledger.dead_letters, after=after, limit=page.limit)
    more = next_cursor(letters[-1].notification_id) if len(letters) == page.limit else None
    return {"items": [letter.as_dict() for letter in letters], "next_cursor": more}
