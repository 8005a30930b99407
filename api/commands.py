"""Shared pieces of the write endpoints: who asks, idempotency keys, and what a write returns."""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import Header
from pydantic import BaseModel, Field

from api.auth import Principal
from api.context import Context
from api.problems import ApiProblem
from domain.cause import Cause
from domain.commands import CommandResult
from domain.identity import SubjectKey

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Repeat a write safely: same key, same effect, once.",
    ),
]


def cause_for(context: Context, principal: Principal, idempotency_key: str | None) -> Cause:
    return Cause(
        actor=f"api:{principal.name}",
        source_system="kiroku-api",
        occurred_at=context.clock(),
        upstream_event_id=idempotency_key or None,
    )


def written(result: CommandResult) -> dict[str, Any]:
    return {
        "id": str(result.id) if result.id else None,
        "position": result.position,
        "duplicate": result.duplicate,
    }


class SubjectRef(BaseModel):
    """A data subject, by id or by e-mail address."""

    subject_id: UUID | None = None
    email: Annotated[str | None, Field(max_length=254)] = None

    def resolve(self) -> UUID | SubjectKey:
        if (self.subject_id is None) == (self.email is None):
            raise ApiProblem(422, "Invalid request", "name the subject by exactly one of subject_id or email")
        return self.subject_id if self.subject_id is not None else SubjectKey.email(self.email or "")


__all__ = ["IdempotencyKey", "SubjectRef", "cause_for", "written"]
