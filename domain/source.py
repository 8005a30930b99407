"""Which upstream topic ingest records from: a topic made again is not the one it recorded.

Kafka gives each topic an id when it is made. Ingest records positions per
topic partition; if the topic is deleted and made again, its new log starts
at offset 0 and, once it has grown past the recorded positions, nothing in
the offsets tells the two apart: reading on would skip the new log's
messages up to the old positions. So the first time ingest reads a topic
(under an ingest epoch) the ledger records the topic's id, and a topic whose
id has changed while positions are recorded for it is not read until a
person decides.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.creation import create
from domain.identity import deterministic_id
from domain.quickinit import quicken_events


def upstream_topic_id(stream_prefix: str, topic: str) -> UUID:
    """The aggregate id of ``topic`` as read under the ingest epoch whose stream prefix this is."""
    # The prefix ends in ":" (or is empty) and a topic's name has none: the joined name is unambiguous.
    return deterministic_id("upstream-topic", stream_prefix + topic)


def made_again(bound_id: str | None, broker_id: str, recorded: bool) -> bool:
    """Whether a topic is REMADE: its broker id is not the bound one, and positions were recorded from it.

    With nothing recorded from the topic yet, a new id is simply bound again
    (``UpstreamTopic.Rebound``). The one rule for the consumer
    (``LedgerBase.check_upstream_topic``) and ``kiroku consume status``.
    """
    return recorded and bound_id is not None and bound_id != broker_id


@quicken_events
class UpstreamTopic(Aggregate):
    """An upstream topic as ingest reads it under one epoch: the broker's id for it."""

    class Bound(Aggregate.Created):
        stream_prefix: str
        topic: str
        topic_id: str
        cause: Cause

    class Rebound(Aggregate.Event):
        """The topic was made again before anything was recorded from it: the new one is read."""

        topic_id: str
        previous_topic_id: str
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.topic_id = self.topic_id

    def __init__(self, stream_prefix: str, topic: str, topic_id: str) -> None:
        self.stream_prefix = stream_prefix
        self.topic = topic
        self.topic_id = topic_id

    @classmethod
    def bound(cls, *, stream_prefix: str, topic: str, topic_id: str, cause: Cause) -> UpstreamTopic:
        return create(
            cls,
            cls.Bound,
            upstream_topic_id(stream_prefix, topic),
            stream_prefix=stream_prefix,
            topic=topic,
            topic_id=topic_id,
            cause=cause,
        )

    def rebind(self, topic_id: str, cause: Cause) -> None:
        self.trigger_event(self.Rebound, topic_id=topic_id, previous_topic_id=self.topic_id, cause=cause)
