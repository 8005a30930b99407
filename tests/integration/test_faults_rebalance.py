"""A consumer that lost its partitions mid-batch (a zombie): what it holds is refused, nothing twice.

A batch that takes longer than ``max_poll_interval_ms`` (a slow statement, a
stalled process or machine) makes kafka-python's heartbeat thread leave the
group while the batch goes on; the group gives its partitions to the other
members, which record from the positions in the event store. When the batch
ends, its commit must not record a message a second time, nor count one.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import TopicPartition

from consumers.contract import Contract
from consumers.ingest import Ingest
from consumers.lag import end_offsets
from consumers.synthetic import Traffic
from consumers.topics import UPSTREAM_TOPICS
from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from tests.conftest import postgres_environ
from tests.helpers import publish_policy
from tests.integration.kafka_support import (
    caught_up,
    handled,
    publish,
    read_dead_letters,
    receipts,
    running,
    send_raw,
    settings_for,
    shared,
    wait_for,
)

CONTRACT = Contract.load()


class HeldIngest(Ingest):
    """Once armed, holds one batch until released: before its commands (``at = "work"``) or its commit.

    With ``stream`` set, only a batch of that stream that follows one this
    consumer recorded there is held.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.at = "commit"
        self.stream: str | None = None
        self.armed = threading.Event()
        self.held = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()
        #: The held batch: its stream, first and last offset.
        self.held_batch: tuple[str, int, int] | None = None
        self._hold_at_commit = False

    def _record(
        self, records: list[Any], stream: str, topic_system: str, after: int | None
    ) -> tuple[int, int, int]:
        tp = TopicPartition(records[0].topic, records[0].partition)
        if (
            not self.armed.is_set()
            or self.held_batch is not None
            or (self.stream is not None and (stream != self.stream or self.recorded_offset.get(tp) is None))
        ):
            return super()._record(records, stream, topic_system, after)
        self.held_batch = (stream, records[0].offset, records[-1].offset)
        if self.at == "work":
            self._hold()
        else:
            self._hold_at_commit = True
        try:
            return super()._record(records, stream, topic_system, after)
        finally:
            self.done.set()

    def _confirm_topic(self, topic: str) -> None:
        super()._confirm_topic(topic)
        if self._hold_at_commit:
            self._hold_at_commit = False
            self._hold()

    def stop(self) -> None:
        self.release.set()  # a test that failed while a batch was held ends without waiting for it
        super().stop()

    def _hold(self) -> None:
        self.held.set()
        self.release.wait(120)


@pytest.fixture
def two_ledgers(postgres_url: str, postgres_schema: str) -> Iterator[tuple[Ledger, Ledger]]:
    """Two ledgers on one store with the same keys, as two `kiroku consume` processes have."""
    settings = Settings.from_env(postgres_environ(postgres_url, postgres_schema))
    first, second = build_ledger(settings), build_ledger(settings)
    publish_policy(first)
    yield first, second
    first.close()
    second.close()


@pytest.mark.slow
def test_a_batch_that_outlasts_the_poll_interval_records_nothing_twice_and_counts_nothing_twice(
    kafka: str, two_ledgers: tuple[Ledger, Ledger], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kiroku.ingest")
    ledger_a, ledger_b = two_ledgers
    messages = list(Traffic(CONTRACT, seed=31).messages(3000))
    group = settings_for(kafka)
    # The held consumer leaves the group 3 s into its held batch.
    held_settings = dataclasses.replace(group, max_poll_interval_ms=3000)
    with running(ledger_a, held_settings, kind=HeldIngest) as zombie, running(ledger_b, group) as other:
        assert isinstance(zombie, HeldIngest)
        wait_for(lambda: shared(zombie, other), what="the group to settle with partitions on both members")
        zombie.armed.set()
        # Each partition starts with a message that cannot be decoded: the held batch has a dead letter.
        for topic in UPSTREAM_TOPICS:
            for partition in range(3):
                send_raw(kafka, topic, [b"not an upstream message"], partition=partition)
        publish(kafka, messages)
        ends = end_offsets(kafka)
        wait_for(zombie.held.is_set, what="the held batch")
        # The held member leaves the group 3 s into its batch; the other gets every
        # partition and records every message, those of the held batch included.
        wait_for(lambda: caught_up(ledger_b, ends), timeout=180, what="the other consumer")
        assert other.counters.recorded == len(messages)
        zombie.release.set()
        wait_for(lambda: zombie.counters.retries >= 1, what="the held batch's commit")
        # The held member joins the group again and takes its share of the partitions.
        wait_for(lambda: shared(zombie, other), what="the group to settle again")
    for counters in (zombie.counters, other.counters):
        assert counters.consumed == handled(counters), counters
    assert zombie.counters.recorded == 0, "the held batch recorded nothing"
    assert zombie.counters.duplicates == zombie.counters.dead_letters == 0
    assert other.counters.dead_letters == 6
    recorded = receipts(ledger_a)
    assert len(recorded) == len(set(recorded)) == len(messages)
    # Each undecodable message is dead-lettered once: the held batch's was not sent by its consumer.
    letters = [
        (h["kiroku.original.topic"], h["kiroku.original.partition"], h["kiroku.original.offset"])
        for topic in UPSTREAM_TOPICS
        for h in (letter.headers for letter in read_dead_letters(kafka, topic, expected=100, timeout=5))
    ]
    assert sorted(letters) == sorted(
        (t.encode(), str(p).encode(), b"0") for t in UPSTREAM_TOPICS for p in range(3)
    )
    warnings = [r.getMessage() for r in caplog.records if r.name == "kiroku.ingest"]
    assert any("another consumer recorded up to offset" in w and "dropped" in w for w in warnings), warnings


def dropped(caplog: pytest.LogCaptureFixture) -> bool:
    return any(
        "another consumer recorded up to offset" in r.getMessage() and "dropped" in r.getMessage()
        for r in caplog.records
        if r.name == "kiroku.ingest"
    )


@pytest.mark.slow
@pytest.mark.parametrize("at", ["work", "commit"])
def test_a_batch_held_while_another_consumer_records_part_of_it_records_none_of_it(
    kafka: str, two_ledgers: tuple[Ledger, Ledger], caplog: pytest.LogCaptureFixture, at: str
) -> None:
    """The held batch is let go once the other consumer has recorded only its first messages.

    Held before its commands, the batch finds those messages recorded and the
    rest not: without the store's check that a batch follows the position it
    started from, it recorded the rest of a partition that was no longer its
    consumer's (the tracking position was past the other's). Held before its
    commit, its first messages conflict: before, the consumer then recorded the rest.
    """
    caplog.set_level(logging.WARNING, logger="kiroku.ingest")
    ledger_a, ledger_b = two_ledgers
    messages = list(Traffic(CONTRACT, seed=32).messages(1200))
    group = settings_for(kafka)
    held_settings = dataclasses.replace(group, max_poll_interval_ms=3000)
    # The other consumer records in small batches, so that it has recorded only part of the held one.
    other_settings = dataclasses.replace(group, max_poll_records=10)
    with (
        running(ledger_a, held_settings, kind=HeldIngest) as zombie,
        running(ledger_b, other_settings, kind=HeldIngest) as other,
    ):
        assert isinstance(zombie, HeldIngest) and isinstance(other, HeldIngest)
        wait_for(lambda: shared(zombie, other), what="the group to settle with partitions on both members")
        zombie.at = at
        zombie.armed.set()
        publish(kafka, messages)
        ends = end_offsets(kafka)
        wait_for(zombie.held.is_set, what="the held batch")
        assert zombie.held_batch is not None
        stream, _, held_last = zombie.held_batch
        # The other consumer takes the partition once the held one has left the group,
        # records one batch of it, and is held before its next.
        other.at, other.stream = "work", stream
        other.armed.set()
        wait_for(other.held.is_set, timeout=60, what="the other consumer's second batch of the stream")
        recorded_by_other = ledger_b.tracked_position(stream)
        assert recorded_by_other is not None and recorded_by_other < held_last, "a part of the held batch"
        zombie.release.set()
        wait_for(lambda: dropped(caplog), what="the held batch to be dropped")
        assert ledger_b.tracked_position(stream) == recorded_by_other, "the held batch recorded nothing"
        other.release.set()
        wait_for(lambda: caught_up(ledger_b, ends), timeout=180, what="the other consumer")
        wait_for(lambda: shared(zombie, other), what="the group to settle again")
    for counters in (zombie.counters, other.counters):
        assert counters.consumed == handled(counters), counters
    # Once back in the group the first consumer records from the partitions it is given.
    assert zombie.counters.recorded + other.counters.recorded == len(messages)
    recorded = receipts(ledger_a)
    assert len(recorded) == len(set(recorded)) == len(messages)
