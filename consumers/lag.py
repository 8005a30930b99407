"""How far ingest is behind the broker, partition by partition (``kiroku consume status``).

The event store's tracking records say which message of each partition was
recorded last; the broker says where each partition's log starts and ends.
From the two: the messages not yet recorded, and two states ingest stops a
partition for (``consumers.ingest``), because it cannot mend them itself:

- **lost**: the broker's log now starts after the next message to record
  (retention removed messages before they were recorded).
- **ahead**: a partition's recorded position lies past the broker's end (the
  topic was deleted and made again, or this is another cluster); reading on
  would skip the new log's messages up to the recorded position.
- **remade**: the topic's id on the broker is not the one its positions were
  recorded from (``domain.source.UpstreamTopic``): it was deleted and made
  again, and its new log may already have grown past the recorded positions.

Reads only: it joins no consumer group and commits nothing. ``accept_loss``
(``kiroku consume accept-loss``) is the one write: a person accepts a LOST
partition's gap, which the ledger records, and ingest goes on after it.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from kafka import KafkaConsumer, TopicPartition

from consumers.topics import UPSTREAM_TOPICS
from domain.application import Ledger
from domain.cause import Cause
from domain.commands import CommandResult
from domain.errors import InvalidCommand
from domain.source import made_again


def stream_name(topic: str, partition: int) -> str:
    """The tracking record's name for a topic partition."""
    return f"{topic}:{partition}"


def topic_uuid(consumer: KafkaConsumer, topic: str) -> UUID | None:
    """The broker's id for ``topic`` from the consumer's metadata (None: the broker gives none).

    kafka-python keeps it in the client's cluster metadata and has no public
    accessor; a kafka-python without it fails loudly here rather than skip the check.
    """
    found: UUID | None = consumer._client.cluster.topic_id(topic)
    if found is None or found.int == 0:  # a broker without topic ids sends the zero UUID
        return None
    return found


@dataclass(frozen=True)
class LogBounds:
    """The topics' partitions as the broker holds them, and the topics it does not have."""

    #: Each partition's (log start offset, end offset: its high watermark).
    partitions: dict[TopicPartition, tuple[int, int]]
    missing_topics: tuple[str, ...]
    #: The broker's id for each topic that has one (brokers before Kafka 2.8 give none).
    topic_ids: dict[str, UUID] = field(default_factory=dict)


def bounded_consumer(bootstrap_servers: str, timeout_s: float, **config: Any) -> KafkaConsumer:
    """A consumer outside any group (no commits) whose every request is bounded by ``timeout_s``.

    Not kafka-python's 30 s: a broker that accepts a request and never answers
    (the metadata or the offsets) is reported within the timeout.
    """
    waits_ms = max(int(timeout_s * 1000), 2)
    return KafkaConsumer(
        bootstrap_servers=bootstrap_servers,
        enable_auto_commit=False,
        bootstrap_timeout_ms=waits_ms,
        request_timeout_ms=waits_ms,
        connections_max_idle_ms=max(540_000, waits_ms + 1),
        **config,
    )


def log_bounds(bootstrap_servers: str, topics: Sequence[str], *, timeout_s: float = 30.0) -> LogBounds:
    """Where each partition's log starts and ends on the broker.

    The end is not ``KafkaConsumer.end_offsets`` alone: Tansu answers
    ListOffsets(latest) with the base offset of the partition's last record
    batch plus one, short by the rest of that batch (7 records sent in one
    batch after 10 alone: 11, not 17). The high watermark a fetch response
    carries is right on Tansu as on Kafka, so each partition is fetched from
    just before the listed end and the larger of the two kept.
    """
    deadline = time.monotonic() + timeout_s
    waits_ms = max(int(timeout_s * 1000), 2)
    # A fetch may wait at most half of the timeout.
    consumer = bounded_consumer(bootstrap_servers, timeout_s, fetch_max_wait_ms=min(500, waits_ms // 2))

    def left_ms() -> int:
        return max(int((deadline - time.monotonic()) * 1000), 1)

    try:
        found = {t: consumer.partitions_for_topic(t) for t in topics}
        partitions = [TopicPartition(t, p) for t in topics for p in sorted(found[t] or [])]
        missing = tuple(t for t in topics if not found[t])
        if not partitions:
            return LogBounds({}, missing)
        starts: dict[TopicPartition, int] = consumer.beginning_offsets(partitions, timeout_ms=left_ms())
        listed: dict[TopicPartition, int] = consumer.end_offsets(partitions, timeout_ms=left_ms())
        consumer.assign(partitions)
        for tp in partitions:
            consumer.seek(tp, max(listed[tp] - 1, starts[tp]))
        while any(consumer.highwater(tp) is None for tp in partitions):
            if time.monotonic() > deadline:
                raise TimeoutError(f"no fetch gave every partition's high watermark in {timeout_s} s")
            consumer.poll(timeout_ms=200, max_records=1)
        bounds = {tp: (starts[tp], max(listed[tp], consumer.highwater(tp))) for tp in partitions}
        ids = {t: found_id for t in topics if found[t] and (found_id := topic_uuid(consumer, t)) is not None}
    finally:
        consumer.close()
    return LogBounds(bounds, missing, ids)


def end_offsets(
    bootstrap_servers: str, topics: Sequence[str] = UPSTREAM_TOPICS, *, timeout_s: float = 30.0
) -> dict[str, int]:
    """Each partition's end offset (its high watermark) on the broker, by the name of its tracking record."""
    bounds = log_bounds(bootstrap_servers, topics, timeout_s=timeout_s).partitions
    return {stream_name(tp.topic, tp.partition): end for tp, (_, end) in bounds.items()}


def recorded_messages(ledger: Ledger, streams: Iterable[str]) -> int:
    """How many messages of these streams lie at or before their recorded positions."""
    positions = ledger.tracked_positions(streams).values()
    return sum(0 if position is None else position + 1 for position in positions)


def lost_before(recorded: int | None, log_start: int) -> int:
    """Messages after the offset recorded last that the broker no longer holds (LOST when above 0)."""
    return 0 if recorded is None else max(log_start - (recorded + 1), 0)


def lies_ahead(recorded: int | None, log_end: int) -> bool:
    """The offset recorded last lies at or past the log's end: not the log it was recorded from (AHEAD)."""
    return recorded is not None and recorded + 1 > log_end


@dataclass(frozen=True)
class PartitionLag:
    """One partition: the offset recorded last (None: none yet) against the broker's log."""

    topic: str
    partition: int
    recorded: int | None
    start: int
    end: int
    #: The topic was deleted and made again since positions were recorded from it (its id changed).
    remade: bool = False

    @property
    def stream(self) -> str:
        return stream_name(self.topic, self.partition)

    @property
    def first_to_record(self) -> int:
        """The first offset still to record that the broker holds (after the recorded one)."""
        return self.start if self.recorded is None else max(self.recorded + 1, self.start)

    @property
    def behind(self) -> int:
        """Messages on the broker that ingest has still to record (none where it lies ahead)."""
        return max(self.end - self.first_to_record, 0)

    @property
    def lost(self) -> int:
        """Messages after the recorded position that the broker no longer holds."""
        return lost_before(self.recorded, self.start)

    @property
    def ahead(self) -> bool:
        """The recorded position lies past the broker's end: not the log it was recorded from."""
        return lies_ahead(self.recorded, self.end)


@dataclass(frozen=True)
class IngestLag:
    """Every upstream partition's lag, and the upstream topics the broker does not have."""

    partitions: tuple[PartitionLag, ...]
    missing_topics: tuple[str, ...]

    @property
    def behind(self) -> int:
        return sum(p.behind for p in self.partitions)

    @property
    def troubled(self) -> tuple[PartitionLag, ...]:
        """The partitions that lost messages, lie ahead of the broker, or are of a topic made again."""
        return tuple(p for p in self.partitions if p.lost or p.ahead or p.remade)


def ingest_lag(
    ledger: Ledger,
    bootstrap_servers: str,
    topics: Sequence[str] = UPSTREAM_TOPICS,
    *,
    stream_prefix: str = "",
    timeout_s: float = 30.0,
) -> IngestLag:
    """Each partition's recorded position (from the event store) against its log on the broker."""
    bounds = log_bounds(bootstrap_servers, topics, timeout_s=timeout_s)
    ordered = sorted(bounds.partitions, key=lambda tp: (tp.topic, tp.partition))
    names = {tp: stream_prefix + stream_name(tp.topic, tp.partition) for tp in ordered}
    recorded = ledger.tracked_positions(names.values())
    remade = {
        topic
        for topic, found in bounds.topic_ids.items()
        if made_again(
            ledger.bound_topic_id(stream_prefix, topic),
            str(found),
            any(recorded[names[tp]] is not None for tp in ordered if tp.topic == topic),
        )
    }
    return IngestLag(
        tuple(
            PartitionLag(
                tp.topic, tp.partition, recorded[names[tp]], *bounds.partitions[tp], tp.topic in remade
            )
            for tp in ordered
        ),
        bounds.missing_topics,
    )


def accept_loss(
    ledger: Ledger, partition: PartitionLag, *, reason: str, cause: Cause, stream_prefix: str = ""
) -> CommandResult:
    """Records a LOST partition's missing offsets as an accepted gap; ingest reads on from the log's start.

    ``partition`` is as ``ingest_lag`` read it just before. Refused (``InvalidCommand``)
    unless messages are lost, and for a partition AHEAD or of a topic made again
    (another log: a new epoch is the way on). The ledger checks again that the
    recorded position is the one read.
    """
    name = f"{partition.topic}/{partition.partition}"
    if partition.remade:
        raise InvalidCommand(
            f"{name} is of a topic made again since it was recorded from (another log, not lost "
            "messages): a new KIROKU_INGEST_EPOCH starts over"
        )
    if partition.ahead:
        raise InvalidCommand(
            f"{name} lies AHEAD of the broker's log (another log, not lost messages): "
            "a new KIROKU_INGEST_EPOCH starts over"
        )
    if not partition.lost or partition.recorded is None:
        recorded = "nothing" if partition.recorded is None else f"up to {partition.recorded:,}"
        raise InvalidCommand(
            f"{name}: nothing is lost (the log starts at offset {partition.start:,}; recorded {recorded})"
        )
    return ledger.accept_upstream_gap(
        stream=stream_prefix + partition.stream,
        first_missing=partition.recorded + 1,
        next_available=partition.start,
        reason=reason,
        cause=cause,
    )
