"""Helpers for the ingest tests: a real broker, topics, an ingest thread, counting effects."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from consumers.contract import Contract
from consumers.ingest import Ingest, IngestCounters, IngestSettings
from consumers.synthetic import Message
from domain.application import Ledger

RECEIPT_TOPIC = "domain.receipt:UpstreamReceipt.Applied"


def bootstrap_from_env() -> str | None:
    """A real Kafka cluster to test against instead of a fresh Tansu, if configured."""
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or None


def publish(bootstrap: str, messages: Iterable[Message]) -> int:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=5)
    count = 0
    for message in messages:
        producer.send(message.topic, key=message.key, value=message.value)
        count += 1
    producer.flush()
    producer.close()
    return count


def send_raw(
    bootstrap: str, topic: str, values: Iterable[bytes], key: bytes = b"raw", partition: int = 0
) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    for value in values:
        producer.send(topic, key=key, value=value, partition=partition)
    producer.flush()
    producer.close()


def settings_for(bootstrap: str, group: str | None = None) -> IngestSettings:
    return IngestSettings(
        bootstrap_servers=bootstrap,
        group_id=group or f"kiroku-test-{uuid4().hex[:8]}",
        max_poll_records=500,
        session_timeout_ms=6000,
        heartbeat_interval_ms=600,
    )


@contextmanager
def running(
    ledger: Ledger, settings: IngestSettings, contract: Contract | None = None, kind: type[Ingest] = Ingest
) -> Iterator[Ingest]:
    """An ingest loop on a thread, stopped (and the group left) on exit."""
    ingest = kind(ledger, settings, contract=contract)
    thread = threading.Thread(target=ingest.run, name="ingest", daemon=True)
    thread.start()
    try:
        yield ingest
    finally:
        ingest.stop()
        thread.join(timeout=60)
        assert not thread.is_alive(), "the ingest loop did not stop"


def wait_for(condition: Callable[[], bool], timeout: float = 120.0, what: str = "the condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def caught_up(ledger: Ledger, ends: dict[str, int]) -> bool:
    """Whether the store's recorded positions reach these end offsets (by stream)."""
    positions = ledger.tracked_positions(list(ends))
    for stream, end in ends.items():
        position = positions[stream]
        if end > 0 and (position is None or position < end - 1):
            return False
    return True


def shared(first: Ingest, second: Ingest) -> bool:
    """Whether two members of one group hold the six upstream partitions between them, each some."""
    return (
        len(first.next_offset) + len(second.next_offset) == 6
        and bool(first.next_offset)
        and bool(second.next_offset)
    )


def handled(counters: IngestCounters) -> int:
    return counters.recorded + counters.duplicates + counters.dead_letters


def receipts(ledger: Ledger) -> list[str]:
    """The upstream event ids recorded, one per upstream message that took effect."""
    ids: list[str] = []
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start=start, limit=5000, topics=[RECEIPT_TOPIC])
        if not page:
            return ids
        for notification in page:
            event: Any = ledger.mapper.to_domain_event(notification)
            ids.append(event.cause.upstream_event_id)
        start = page[-1].id + 1


def stored_events(ledger: Ledger) -> Counter[tuple[str, int, str]]:
    """Every stored event as (aggregate id, version, topic), counted.

    Notification ids are not compared: a transaction killed mid-insert burns
    values of PostgreSQL's sequence, so a store that survived crashes has gaps
    where a clean one has none, with the very same events.
    """
    events: Counter[tuple[str, int, str]] = Counter()
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start=start, limit=5000)
        if not page:
            return events
        events.update((str(n.originator_id), n.originator_version, n.topic) for n in page)
        start = page[-1].id + 1


@dataclass(frozen=True)
class DeadLetterRead:
    value: bytes
    headers: dict[str, bytes]


def read_dead_letters(
    bootstrap: str, topic: str, expected: int, timeout: float = 30.0
) -> list[DeadLetterRead]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    tp = TopicPartition(f"{topic}.dlq", 0)
    consumer.assign([tp])
    consumer.seek_to_beginning(tp)
    letters: list[DeadLetterRead] = []
    deadline = time.monotonic() + timeout
    while len(letters) < expected and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            letters.extend(DeadLetterRead(r.value, dict(r.headers)) for r in records)
    consumer.close()
    return letters
