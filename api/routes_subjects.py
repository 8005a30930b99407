"""Data subjects: found by e-mail, name or common name; their state. Every read is recorded."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query
from starlette.concurrency import run_in_threadpool

from api.auth import Permission, Principal
from api.context import NO_NUL, AppContext, record_access, requires
from api.problems import ApiProblem

router = APIRouter(tags=["subjects"])
Reader = Annotated[Principal, Depends(requires(Permission.READ_PERSONAL))]


@router.get("/subjects")
async def find_subjects(
    context: AppContext,
    principal: Reader,
    email: Annotated[str | None, Query(max_length=254, pattern=NO_NUL)] = None,
    name: Annotated[str | None, Query(max_length=300, pattern=NO_NUL)] = None,
    common_name: Annotated[str | None, Query(max_length=255, pattern=NO_NUL)] = None,
) -> dict[str, Any]:
    """Data subjects by e-mail address, name (through the blind index) or certificate common name."""
    # On the event loop: index look-ups and the access record's commit (see api.context).
    given = [(k, v) for k, v in (("email", email), ("name", name), ("common_name", common_name)) if v]
    if len(given) != 1:
        raise ApiProblem(422, "Invalid request", "give exactly one of email, name or common_name")
    kind, value = given[0]
    projections = context.projections
    if kind == "common_name":
        found: set[UUID] = set()
        for record in projections.rows(
            "certificates", "certificates", {"common_name": value.strip().lower()}
        ):
            holders = projections.rows("subjects", "records", {"record_id": record["record_id"]})
            found |= {UUID(r["subject_id"]) for r in holders}
        subject_ids = sorted(found, key=str)
    else:
        subject_ids = projections.subjects_by(kind, value)
    await record_access(context, principal, subject_ids, f"GET /subjects?{kind}")
    return {"subjects": [str(s) for s in subject_ids]}


@router.get("/subjects/{subject_id}")
async def subject(
    subject_id: UUID, context: AppContext, principal: Reader, as_of: datetime | None = None
) -> dict[str, Any]:
    """A data subject's current items, records, holds, open requests, stop and erasure state.

    With ``as_of``: everything the ledger held about them at that moment, rebuilt from the events.
    """
    if as_of is not None:
        if as_of.tzinfo is None:
            raise ApiProblem(422, "Invalid request", "as_of needs a time zone")
        package = await run_in_threadpool(context.ledger.disclosure_package, subject_id, as_of=as_of)
        await record_access(context, principal, [subject_id], "GET /subjects/{subject_id}?as_of")
        return {"as_of": as_of.isoformat(), **package}
    # On the event loop: one snapshot of the subject's view rows, their keys and the
    # access record's commit (see api.context). The as_of answer replays events, in the thread pool.
    state = context.projections.subject(subject_id, context.clock())
    if state is None:
        raise ApiProblem(404, "Not found", f"data subject {subject_id} not found")
    await record_access(context, principal, [subject_id], "GET /subjects/{subject_id}")
    return state
