"""Upstream messages ingest could not record: each one noted once, beside the position past it.

A message that cannot be decoded, belongs on another topic or is refused by
the ledger goes to ``<topic>.dlq``, and the broker acknowledges the dead
letter before the batch commits. Should ingest crash between the two, the
batch is read again and the dead letter sent again: the topic may hold one
twice. The event store holds it once: an :class:`UpstreamDeadLetter` is saved
in the batch's transaction, with the position past it, so counting them
answers how many messages were dead-lettered, and which. It says where the
message was and why (the error's class, and the clause of the policy that
refused it), never what the message or the error's text held: either may
hold a person's data, and the dead-letter topic keeps them for whoever mends
the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.creation import create
from domain.identity import deterministic_id
from domain.quickinit import quick_init, quicken_events


def dead_letter_id(stream: str, offset: int) -> UUID:
    """One id per message of an upstream stream (a Kafka topic partition, under ingest's epoch)."""
    return deterministic_id("upstream-dead-letter", stream, str(offset))


@quicken_events
class UpstreamDeadLetter(Aggregate):
    """The message at ``offset`` of an upstream stream, sent to the dead-letter topic, not recorded."""

    class Recorded(Aggregate.Created):
        stream: str
        topic: str
        partition: int
        offset: int
        error_class: str
        clause: str | None
        cause: Cause

    def __init__(
        self, *, stream: str, topic: str, partition: int, offset: int, error_class: str, clause: str | None
    ) -> None:
        self.stream = stream
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.error_class = error_class
        self.clause = clause

    @classmethod
    def recorded(
        cls,
        *,
        stream: str,
        topic: str,
        partition: int,
        offset: int,
        error_class: str,
        clause: str | None,
        cause: Cause,
    ) -> UpstreamDeadLetter:
        return create(
            cls,
            cls.Recorded,
            dead_letter_id(stream, offset),
            stream=stream,
            topic=topic,
            partition=partition,
            offset=offset,
            error_class=error_class,
            clause=clause,
            cause=cause,
        )


@quick_init
@dataclass(frozen=True)
class RecordedDeadLetter:
    """A dead letter as a listing shows it."""

    stream: str
    topic: str
    partition: int
    offset: int
    error_class: str
    clause: str | None
    occurred_at: datetime
    recorded_at: datetime
    notification_id: int

    def as_dict(self) -> dict[str, Any]:
        """As JSON values (``kiroku consume dead-letters --json``)."""
        return {
            "stream": self.stream,
            "topic": self.topic,
            "partition": self.partition,
            "offset": self.offset,
            "error_class": self.error_class,
            "clause": self.clause,
            "occurred_at": self.occurred_at.isoformat(),
            "recorded_at": self.recorded_at.isoformat(),
            "notification_id": self.notification_id,
        }
