"""Requests of data subjects and the officer's decisions: disclosure (§7), stop (§11), erasure; §4.3."""

from __future__ import annotations

import csv
import io
import json
import zipfile
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from api.auth import Permission, Principal
from api.commands import IdempotencyKey, SubjectRef, cause_for, written
from api.context import AppContext, record_access, requires
from domain.codes import DisclosureRefusalGround, LegalGround
from domain.commands import ProvidedItemInput
from domain.provision import Recipient

router = APIRouter()
Officer = Annotated[Principal, Depends(requires(Permission.WRITE_REQUESTS))]
PersonalReader = Annotated[Principal, Depends(requires(Permission.READ_PERSONAL))]


class DisclosureOpen(SubjectRef):
    requested_format: Literal["json", "csv", "paper"]
    due_at: datetime | None = None


class VerificationRequest(BaseModel):
    method: Annotated[str, Field(min_length=1, max_length=200)]


class Verified(BaseModel):
    evidence_ref: Annotated[str, Field(min_length=1, max_length=200)]


class VerificationFailed(BaseModel):
    reason: Annotated[str, Field(min_length=1, max_length=500)]


class Refusal(BaseModel):
    ground: DisclosureRefusalGround
    explanation: Annotated[str, Field(min_length=1, max_length=2000)]


@router.post("/disclosures", status_code=201, tags=["disclosures"])
def open_disclosure(
    body: DisclosureOpen, context: AppContext, principal: Officer, key: IdempotencyKey = None
) -> dict[str, Any]:
    """§7: a data subject asks to see all of their information."""
    result = context.ledger.open_disclosure(
        body.resolve(),
        requested_format=body.requested_format,
        due_at=body.due_at,
        cause=cause_for(context, principal, key),
    )
    return written(result)


@router.get("/disclosures", tags=["disclosures"])
def list_disclosures(
    context: AppContext,
    _: Annotated[Principal, Depends(requires(Permission.READ_RECORDS))],
    state: Literal["open", "overdue", "all"] = "open",
) -> dict[str, Any]:
    """Disclosure, stop and erasure requests; ``overdue`` ones are open past their due date."""
    rows = context.projections.requests(context.clock(), open_only=state != "all")
    if state == "overdue":
        rows = [r for r in rows if r["overdue"]]
    return {"requests": rows}


@router.post("/disclosures/{request_id}/verification-request", tags=["disclosures"])
def request_verification(
    request_id: UUID,
    body: VerificationRequest,
    context: AppContext,
    principal: Officer,
    key: IdempotencyKey = None,
) -> dict[str, Any]:
    return written(
        context.ledger.request_identity_verification(
            request_id, method=body.method, cause=cause_for(context, principal, key)
        )
    )


@router.post("/disclosures/{request_id}/verified", tags=["disclosures"])
def verified(
    request_id: UUID, body: Verified, context: AppContext, principal: Officer, key: IdempotencyKey = None
) -> dict[str, Any]:
    return written(
        context.ledger.record_identity_verified(
            request_id, evidence_ref=body.evidence_ref, cause=cause_for(context, principal, key)
        )
    )


@router.post("/disclosures/{request_id}/verification-failed", tags=["disclosures"])
def verification_failed(
    request_id: UUID,
    body: VerificationFailed,
    context: AppContext,
    principal: Officer,
    key: IdempotencyKey = None,
) -> dict[str, Any]:
    return written(
        context.ledger.record_identity_verification_failed(
            request_id, reason=body.reason, cause=cause_for(context, principal, key)
        )
    )


@router.post("/disclosures/{request_id}/refusal", tags=["disclosures"])
def refuse(
    request_id: UUID, body: Refusal, context: AppContext, principal: Officer, key: IdempotencyKey = None
) -> dict[str, Any]:
    return written(
        context.ledger.refuse_disclosure(
            request_id,
            ground=body.ground,
            explanation=body.explanation,
            cause=cause_for(context, principal, key),
        )
    )


def _package_zip(package: dict[str, Any]) -> bytes:
    items = io.StringIO()
    writer = csv.writer(items)
    writer.writerow(["record_id", "kind", "item", "value", "current", "superseded_at"])
    for record in package["records"]:
        for item, value in sorted(record["items"].items()):
            writer.writerow([record["record_id"], record["kind"], item, value, "yes", ""])
        for old in record["superseded_items"]:
            writer.writerow(
                [record["record_id"], record["kind"], old["item"], old["value"], "no", old["superseded_at"]]
            )
    provisions = io.StringIO()
    writer = csv.writer(provisions)
    writer.writerow(
        [
            "provision_id",
            "provided_at",
            "category",
            "legal_ground",
            "recipient_id",
            "recipient_name",
            "country",
            "foreign_recipient",
            "items",
            "record_retained_until",
        ]
    )
    for p in package["provisions"]:
        writer.writerow(
            [
                p["provision_id"],
                p["provided_at"],
                p["category"],
                p["legal_ground"] or "",
                p["recipient"]["recipient_id"],
                p["recipient"]["name"],
                p["recipient"]["country"],
                "yes" if p["foreign_recipient"] else "no",
                " ".join(p["items"]),
                p["record_retained_until"] or "",
            ]
        )
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("package.json", json.dumps(package, ensure_ascii=False, indent=2))
        archive.writestr("items.csv", items.getvalue())
        archive.writestr("provisions.csv", provisions.getvalue())
    return out.getvalue()


@router.post("/disclosures/{request_id}/fulfilment", tags=["disclosures"], response_model=None)
async def fulfil(
    request_id: UUID, request: Request, context: AppContext, principal: Officer, key: IdempotencyKey = None
) -> Response | dict[str, Any]:
    """§7: the package of all the subject's information, with the provision records.

    JSON by default; ``Accept: application/zip`` gives the same as JSON and CSV files in a zip.
    """
    # On the event loop (see api.context): one subject's records, read in one query.
    result, package = context.ledger.fulfil_disclosure(request_id, cause=cause_for(context, principal, key))
    await record_access(
        context, principal, [UUID(package["subject_id"])], "POST /disclosures/{request_id}/fulfilment"
    )
    if "application/zip" in request.headers.get("accept", ""):
        return Response(
            _package_zip(package),
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="disclosure-{request_id}.zip"'},
        )
    return {**written(result), "package": package}


# Stop of provision (§11), erasure, provision under a legal ground (§4.3) ---------------


class StopRequest(BaseModel):
    request_id: Annotated[str | None, Field(max_length=100)] = None


class StopDecision(BaseModel):
    accepted: bool
    reason: Annotated[str, Field(min_length=1, max_length=2000)]


@router.post("/subjects/{subject_id}/stop-requests", status_code=201, tags=["requests"])
def request_stop(
    subject_id: UUID, body: StopRequest, context: AppContext, principal: Officer, key: IdempotencyKey = None
) -> dict[str, Any]:
    result = context.ledger.request_stop(
        subject_id, request_id=body.request_id, cause=cause_for(context, principal, key)
    )
    return written(result)


@router.post("/subjects/{subject_id}/stop-requests/{request_id}/decision", tags=["requests"])
def decide_stop(
    subject_id: UUID,
    request_id: str,
    *,
    body: StopDecision,
    context: AppContext,
    principal: Officer,
    key: IdempotencyKey = None,
) -> dict[str, Any]:
    return written(
        context.ledger.decide_stop(
            subject_id,
            request_id=request_id,
            accepted=body.accepted,
            reason=body.reason,
            cause=cause_for(context, principal, key),
        )
    )


@router.post("/subjects/{subject_id}/erasure-request", status_code=201, tags=["requests"])
def request_erasure(
    subject_id: UUID, context: AppContext, principal: Officer, key: IdempotencyKey = None
) -> dict[str, Any]:
    return written(context.ledger.request_erasure(subject_id, cause=cause_for(context, principal, key)))


@router.post("/subjects/{subject_id}/erasure", tags=["requests"])
def carry_out_erasure(
    subject_id: UUID, context: AppContext, principal: Officer, key: IdempotencyKey = None
) -> dict[str, Any]:
    """Destroys the subject's key; refused (409, with the holds) while a legal hold applies."""
    return written(context.ledger.carry_out_erasure(subject_id, cause=cause_for(context, principal, key)))


class RecipientIn(BaseModel):
    recipient_id: Annotated[str, Field(min_length=1, max_length=200)]
    name: Annotated[str, Field(min_length=1, max_length=200)]
    country: Annotated[str, Field(pattern=r"^[A-Z]{2}$")]


class LegalProvision(BaseModel):
    """§4.3: information provided where the law requires it."""

    legal_ground: LegalGround
    recipient: RecipientIn
    subjects: Annotated[list[SubjectRef], Field(min_length=1, max_length=100)]
    items: Annotated[list[Literal["name", "postal_address", "phone", "email"]], Field(min_length=1)]
    certificate_record_id: UUID | None = None


@router.post("/provisions", status_code=201, tags=["provisions"])
def record_legal_provision(
    body: LegalProvision, context: AppContext, principal: Officer, key: IdempotencyKey = None
) -> dict[str, Any]:
    items = [ProvidedItemInput(item, subject.resolve()) for subject in body.subjects for item in body.items]
    result = context.ledger.record_provision(
        category="4.3",
        legal_ground=body.legal_ground,
        recipient=Recipient(**body.recipient.model_dump()),
        items=items,
        certificate_record_id=body.certificate_record_id,
        cause=cause_for(context, principal, key),
    )
    return written(result)
