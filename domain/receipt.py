"""Idempotency: one receipt per upstream event id, recorded with the command's effects."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.creation import create
from domain.identity import deterministic_id
from domain.quickinit import quicken_events


def receipt_id(source_system: str, upstream_event_id: str) -> UUID:
    return deterministic_id("upstream-event", source_system, upstream_event_id)


@quicken_events
class UpstreamReceipt(Aggregate):
    """Says that an upstream event was applied, by which command, with what result.

    Saved in the same transaction as the command's events, so a replay either
    finds the receipt (and changes nothing) or conflicts on its id.
    """

    class Applied(Aggregate.Created):
        command: str
        fingerprint: str
        result_id: UUID | None
        cause: Cause

    def __init__(self, command: str, fingerprint: str, result_id: UUID | None) -> None:
        self.command = command
        self.fingerprint = fingerprint
        self.result_id = result_id

    @classmethod
    def applied(
        cls,
        *,
        source_system: str,
        upstream_event_id: str,
        command: str,
        fingerprint: str,
        result_id: UUID | None,
        cause: Cause,
    ) -> UpstreamReceipt:
        return create(
            cls,
            cls.Applied,
            receipt_id(source_system, upstream_event_id),
            command=command,
            fingerprint=fingerprint,
            result_id=result_id,
            cause=cause,
        )
