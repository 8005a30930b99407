"""The provision ledger (APPI Art. 29 records), filtered, as JSON or CSV; and the policy."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Response
from pydantic import BaseModel, Field

from api.auth import Permission, Principal
from api.commands import IdempotencyKey, cause_for, written
from api.context import NO_NUL, AppContext, requires
from api.problems import ApiProblem

router = APIRouter()
Reader = Annotated[Principal, Depends(requires(Permission.READ_RECORDS))]
COLUMNS = [
    "provision_id",
    "provided_at",
    "category",
    "legal_ground",
    "recipient_id",
    "recipient_name",
    "country",
    "foreign_recipient",
    "unspecified_many",
    "certificate_record_id",
    "ct_log_id",
    "ct_logged_at",
    "record_required",
    "retention_until",
    "items",
]


@dataclass
class LedgerFilters:
    recipient: Annotated[str | None, Query(max_length=200, pattern=NO_NUL)] = None
    category: Literal["4.1", "4.2", "4.3", "4.4"] | None = None
    country: Annotated[str | None, Query(pattern=r"^[A-Z]{2}$")] = None
    foreign_only: bool = False
    since: datetime | None = None
    until: datetime | None = None


def _rows(context: AppContext, filters: LedgerFilters) -> list[dict[str, Any]]:
    try:
        return context.projections.provision_records(
            recipient=filters.recipient,
            category=filters.category,
            country=filters.country,
            foreign_only=filters.foreign_only,
            since=filters.since,
            until=filters.until,
        )
    except ValueError as exc:
        raise ApiProblem(422, "Invalid request", str(exc)) from None


@router.get("/provisions", tags=["provisions"])
def provisions(
    context: AppContext, _: Reader, filters: Annotated[LedgerFilters, Depends()]
) -> dict[str, Any]:
    """Every provision to a third party with its basis, recipient, items and retention deadline."""
    return {"provisions": _rows(context, filters)}


@router.get("/provisions.csv", tags=["provisions"], response_class=Response)
def provisions_csv(context: AppContext, _: Reader, filters: Annotated[LedgerFilters, Depends()]) -> Response:
    """The same records as CSV, for auditors."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(_rows(context, filters))
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": 'attachment; filename="provision-ledger.csv"'},
    )


@router.get("/provisions/bulk", tags=["provisions"])
def bulk(context: AppContext, _: Reader) -> dict[str, Any]:
    """Continuous provision to verifiers and CT logs, one record per recipient and category."""
    return {"recipients": context.projections.bulk_provisions()}


@router.get("/policy", tags=["policy"])
def policy(context: AppContext, _: Reader) -> dict[str, Any]:
    """The policy versions with their purposes, channels and dates."""
    rows = context.projections.rows("policy_versions", "versions")
    return {"versions": sorted(rows, key=lambda r: r["effective_from"])}


class Revision(BaseModel):
    version: Annotated[str, Field(min_length=1, max_length=50)]
    effective_from: datetime
    announced_at: datetime
    purposes: dict[
        Literal["P1", "P2", "P3", "P4", "P5", "P6", "P7", "P8"], Annotated[str, Field(min_length=1)]
    ]
    channels: list[Literal["C1", "C2", "C3", "C4"]]
    justification: Annotated[str | None, Field(max_length=4000)] = None


@router.post("/policy/revisions", status_code=201, tags=["policy"])
def revise(
    body: Revision,
    context: AppContext,
    principal: Annotated[Principal, Depends(requires(Permission.WRITE_POLICY))],
    key: IdempotencyKey = None,
) -> dict[str, Any]:
    """§12: publishes a revision; §3: a change of purposes needs its justification."""
    result = context.ledger.publish_policy(
        version=body.version,
        effective_from=body.effective_from,
        announced_at=body.announced_at,
        purposes={str(code): text for code, text in body.purposes.items()},
        channels=list(body.channels),
        justification=body.justification,
        cause=cause_for(context, principal, key),
    )
    return written(result)
