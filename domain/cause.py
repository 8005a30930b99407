"""Who or what caused an event, and when it happened upstream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from domain.errors import InvalidCommand
from domain.quickinit import quick_init

_MAX_TEXT = 200


def _check_text(name: str, value: str | None, *, required: bool) -> None:
    if value is None:
        if required:
            raise InvalidCommand(f"cause: {name} is required")
        return
    if not isinstance(value, str) or not value.strip():
        raise InvalidCommand(f"cause: {name} must be a non-empty string")
    if len(value) > _MAX_TEXT:
        raise InvalidCommand(f"cause: {name} is longer than {_MAX_TEXT} characters")
    if "\x00" in value:  # PostgreSQL's text and JSON values cannot hold it
        raise InvalidCommand(f"cause: {name} must not contain a NUL character")


@quick_init
@dataclass(frozen=True)
class Cause:
    """Carried by every event: actor, source system, upstream ids and times.

    ``upstream_event_id`` makes a command idempotent: the same id from the same
    source system applied twice changes nothing the second time.
    ``kafka_position`` is ``topic/partition/offset`` when the command came
    through Kafka.
    """

    actor: str
    source_system: str
    occurred_at: datetime
    upstream_event_id: str | None = None
    correlation_id: str | None = None
    kafka_position: str | None = None

    @classmethod
    def restored(
        cls,
        *,
        actor: str,
        source_system: str,
        occurred_at: datetime,
        upstream_event_id: str | None,
        correlation_id: str | None,
        kafka_position: str | None,
    ) -> Cause:
        """A cause read back from a stored event: checked when it was recorded, not again."""
        cause = object.__new__(cls)
        # One update of the instance's dict: a frozen dataclass refuses attribute assignment.
        cause.__dict__.update(
            actor=actor,
            source_system=source_system,
            occurred_at=occurred_at,
            upstream_event_id=upstream_event_id,
            correlation_id=correlation_id,
            kafka_position=kafka_position,
        )
        return cause

    def __post_init__(self) -> None:
        _check_text("actor", self.actor, required=True)
        _check_text("source_system", self.source_system, required=True)
        _check_text("upstream_event_id", self.upstream_event_id, required=False)
        _check_text("correlation_id", self.correlation_id, required=False)
        _check_text("kafka_position", self.kafka_position, required=False)
        if not isinstance(self.occurred_at, datetime):
            raise InvalidCommand("cause: occurred_at must be a datetime")
        if self.occurred_at.tzinfo is None or self.occurred_at.utcoffset() is None:
            raise InvalidCommand("cause: occurred_at must carry a time zone")
