"""What a dead-letter topic holds, so that a batch recorded again does not send its dead letters twice.

A batch's dead letters reach ``<topic>.dlq`` before the batch commits. When the
consumer crashes in between (or loses the partition and its commit is
refused), the next owner of the partition records the batch again. Before,
it sent its dead letters again too: the topic held them twice, while the
event store noted them once. Now, when a partition is positioned, the tail
of its dead-letter topic is read (the last ``window`` records of each of its
partitions) for dead letters of messages past the recorded position; a batch
recorded later notes those in the store as usual but does not send them
again.

A dead letter counts as the message's only when its headers name the same
topic, partition and offset and it carries the same timestamp and value (a
topic deleted and made again reuses offsets). A dead letter further back than
the window is not seen, and is sent again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaConsumer, TopicPartition

from consumers.lag import bounded_consumer
from consumers.topics import dead_letter_topic

#: A message as its dead letter shows it: (Kafka timestamp, digest of the value).
Identity = tuple[int, bytes]


def identity(timestamp: int, value: bytes | None) -> Identity:
    """How a message and its dead letter are matched besides its position."""
    return timestamp, hashlib.blake2b(value or b"", digest_size=16).digest()


def _header(headers: list[tuple[str, bytes]] | None, name: str) -> str | None:
    for key, value in headers or []:
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def sent_past(
    bootstrap_servers: str,
    topic: str,
    past: Mapping[int, int | None],
    *,
    window: int = 10_000,
    timeout_s: float = 10.0,
) -> dict[int, dict[int, Identity]]:
    """The dead letters of ``topic``'s messages its dead-letter topic holds, past the offsets ``past`` gives.

    ``past`` maps a partition of ``topic`` to the offset recorded last (None:
    nothing yet). The answer maps each partition to the offsets found, and
    each offset to its message's :func:`identity`. Only the last ``window``
    records of each partition of the dead-letter topic are read. Raises
    ``TimeoutError`` (or kafka-python's errors) if the broker does not answer
    within ``timeout_s``.
    """
    found: dict[int, dict[int, Identity]] = {}
    dlq = dead_letter_topic(topic)
    deadline = time.monotonic() + timeout_s
    waits_ms = max(int(timeout_s * 1000), 2)
    # A look: a missing dead-letter topic holds nothing, and is not to be made.
    consumer = bounded_consumer(
        bootstrap_servers, timeout_s, fetch_max_wait_ms=100, allow_auto_create_topics=False
    )
    try:
        partitions = [TopicPartition(dlq, p) for p in sorted(consumer.partitions_for_topic(dlq) or [])]
        if not partitions:
            return found
        starts = consumer.beginning_offsets(partitions, timeout_ms=waits_ms)
        # Tansu lists an end short by the rest of the last record batch (``consumers.lag.log_bounds``),
        # but past the start whenever the partition holds a record; an empty one is not fetched (a
        # fetch with nothing to give waits). The end is the high watermark a fetch gives.
        listed = consumer.end_offsets(partitions, timeout_ms=waits_ms)
        reading = [tp for tp in partitions if listed[tp] > starts[tp]]
        if not reading:
            return found
        consumer.assign(reading)
        ends = _high_watermarks(consumer, reading, starts, listed, deadline)
        for tp in reading:
            consumer.seek(tp, max(starts[tp], ends[tp] - window))
        while reading:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dlq}: its last records were not read within {timeout_s} s")
            for records in consumer.poll(timeout_ms=200).values():
                for record in records:
                    _note(found, topic, past, record)
            reading = [tp for tp in reading if not _read_to_end(consumer, tp)]
    finally:
        consumer.close()
    return found


def _high_watermarks(
    consumer: KafkaConsumer,
    partitions: list[TopicPartition],
    starts: dict[TopicPartition, int],
    listed: dict[TopicPartition, int],
    deadline: float,
) -> dict[TopicPartition, int]:
    """Each partition's high watermark, from a fetch of its last listed record (which has one to give)."""
    for tp in partitions:
        consumer.seek(tp, max(listed[tp] - 1, starts[tp]))
    ends: dict[TopicPartition, int] = {}
    while len(ends) < len(partitions):
        if time.monotonic() > deadline:
            raise TimeoutError("no fetch gave the dead-letter topic's high watermarks in time")
        consumer.poll(timeout_ms=200, max_records=1)
        ends = {tp: hw for tp in partitions if (hw := consumer.highwater(tp)) is not None}
    return ends


def _read_to_end(consumer: KafkaConsumer, tp: TopicPartition) -> bool:
    highwater = consumer.highwater(tp)
    return highwater is not None and consumer.position(tp) >= highwater


def _note(
    found: dict[int, dict[int, Identity]], topic: str, past: Mapping[int, int | None], record: Any
) -> None:
    """Adds the dead letter ``record`` to ``found`` if it is of a message of ``topic`` past its position."""
    headers = record.headers
    if _header(headers, "kiroku.original.topic") != topic:
        return
    try:
        partition = int(_header(headers, "kiroku.original.partition") or "")
        offset = int(_header(headers, "kiroku.original.offset") or "")
        timestamp = int(_header(headers, "kiroku.original.timestamp") or "")
    except ValueError:
        return  # not one of kiroku's dead letters
    if partition not in past:
        return
    recorded = past[partition]
    if recorded is not None and offset <= recorded:
        return
    found.setdefault(partition, {})[offset] = identity(timestamp, record.value)
