"""§8, §10: every showing of personal data is itself recorded: who, whose, where, when."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.creation import create
from domain.errors import InvalidCommand
from domain.quickinit import quicken_events


@quicken_events
class AccessRecord(Aggregate):
    """One response that showed personal data of these subjects to an actor."""

    class Recorded(Aggregate.Created):
        subject_ids: list[UUID]
        endpoint: str
        cause: Cause

    def __init__(self, *, subject_ids: list[UUID], endpoint: str) -> None:
        self.subject_ids = list(subject_ids)
        self.endpoint = endpoint

    @classmethod
    def record(
        cls, *, access_id: UUID, subject_ids: Sequence[UUID], endpoint: str, cause: Cause
    ) -> AccessRecord:
        if not subject_ids:
            raise InvalidCommand("an access record names the subjects whose data was shown")
        if not isinstance(endpoint, str) or not endpoint.strip() or len(endpoint) > 300:
            raise InvalidCommand("an access record names the endpoint (1-300 characters)")
        return create(
            cls,
            cls.Recorded,
            access_id,
            subject_ids=sorted(set(subject_ids), key=str),
            endpoint=endpoint,
            cause=cause,
        )
