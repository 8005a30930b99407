"""How kiroku's value objects are stored inside events (JSON)."""

from __future__ import annotations

import base64
import binascii
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.persistence import JSONTranscoder, Transcoding

from domain.cause import Cause
from domain.personal import Sealed


class CauseAsDict(Transcoding):
    type = Cause
    name = "kiroku.cause"

    def encode(self, obj: Any) -> dict[str, Any]:
        assert isinstance(obj, Cause)
        return {
            "actor": obj.actor,
            "source_system": obj.source_system,
            "occurred_at": obj.occurred_at.isoformat(),
            "upstream_event_id": obj.upstream_event_id,
            "correlation_id": obj.correlation_id,
            "kafka_position": obj.kafka_position,
        }

    def decode(self, data: Any) -> Cause:
        return Cause.restored(
            actor=data["actor"],
            source_system=data["source_system"],
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            upstream_event_id=data.get("upstream_event_id"),
            correlation_id=data.get("correlation_id"),
            kafka_position=data.get("kafka_position"),
        )


class SealedAsDict(Transcoding):
    type = Sealed
    name = "kiroku.sealed"

    def encode(self, obj: Any) -> dict[str, Any]:
        assert isinstance(obj, Sealed)
        return {
            "s": obj.subject_id.hex,
            "g": obj.generation,
            "k": obj.kind,
            "b": base64.b64encode(obj.blob).decode("ascii"),
        }

    def decode(self, data: Any) -> Sealed:
        return Sealed.restored(UUID(data["s"]), int(data["g"]), data["k"], binascii.a2b_base64(data["b"]))


def register_kiroku_transcodings(transcoder: JSONTranscoder) -> None:
    transcoder.register(CauseAsDict())
    transcoder.register(SealedAsDict())
