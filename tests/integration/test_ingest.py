"""Ingest from a real Kafka-protocol broker into PostgreSQL: exactly one effect per message."""

from __future__ import annotations

import io
import json
import struct
import threading
import uuid
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import avro.io
import avro.schema
import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from consumers.contract import Contract
from consumers.ingest import Ingest
from consumers.lag import end_offsets
from consumers.synthetic import Traffic
from consumers.topics import create_topics
from domain.application import Ledger
from domain.codes import ProvisionCategory
from domain.identity import SubjectKey
from projections.service import Projections
from tests.integration.kafka_support import (
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


def test_every_message_has_one_effect_and_a_redelivery_changes_nothing(kafka: str, pg_ledger: Ledger) -> None:
    messages = list(Traffic(CONTRACT, seed=11).messages(600))
    publish(kafka, messages)
    with running(pg_ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: handled(ingest.counters) >= len(messages), what="the first delivery")
    assert ingest.counters.dead_letters == 0, "synthetic traffic is all valid"
    recorded = receipts(pg_ledger)
    assert len(recorded) == len(set(recorded)) == len(messages)
    events_after_first = pg_ledger.recorder.max_notification_id()

    # The same messages published again: new offsets, same upstream event ids.
    publish(kafka, messages)
    with running(pg_ledger, settings_for(kafka)) as again:
        wait_for(lambda: handled(again.counters) >= len(messages), what="the redelivery")
    assert again.counters.duplicates == len(messages)
    assert again.counters.recorded == 0
    assert pg_ledger.recorder.max_notification_id() == events_after_first
    assert len(receipts(pg_ledger)) == len(messages)


class RewindingIngest(Ingest):
    """Ingest that rewinds every partition to offset 0 when asked, on its own thread."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.rewind = threading.Event()

    def poll_once(self, timeout_ms: int = 500) -> None:
        consumer = self._consumer
        if self.rewind.is_set() and consumer is not None:
            self.rewind.clear()
            for tp in list(self.next_offset):
                self.next_offset[tp] = 0
                consumer.seek(tp, 0)
        super().poll_once(timeout_ms)


def test_a_partition_rewound_to_zero_changes_nothing(kafka: str, pg_ledger: Ledger) -> None:
    messages = list(Traffic(CONTRACT, seed=12).messages(300))
    publish(kafka, messages)
    with running(pg_ledger, settings_for(kafka), kind=RewindingIngest) as ingest:
        wait_for(lambda: handled(ingest.counters) >= len(messages), what="the first delivery")
        before = pg_ledger.recorder.max_notification_id()
        consumed_before = ingest.counters.consumed
        assert isinstance(ingest, RewindingIngest)
        ingest.rewind.set()
        wait_for(lambda: ingest.counters.consumed >= consumed_before + len(messages), what="the re-read")
        wait_for(lambda: ingest.counters.retries >= 1, what="the store to refuse the stale batches")
        # Messages read again that were recorded already count as duplicates.
        wait_for(lambda: ingest.counters.consumed == handled(ingest.counters), what="the re-read counted")
    assert ingest.counters.duplicates >= len(messages)
    assert pg_ledger.recorder.max_notification_id() == before
    assert len(receipts(pg_ledger)) == len(messages)


def test_a_new_group_starts_from_the_recorded_positions_not_from_kafka(kafka: str, pg_ledger: Ledger) -> None:
    messages = list(Traffic(CONTRACT, seed=13).messages(200))
    publish(kafka, messages)
    with running(pg_ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: handled(ingest.counters) >= len(messages), what="ingest")
    with running(pg_ledger, settings_for(kafka)) as fresh:
        wait_for(lambda: len(fresh.next_offset) == 6, what="the new group's assignment")
    assert fresh.counters.consumed == 0


def _valid_application(source: str = "registrar", purposes: list[str] | None = None) -> bytes:
    record: dict[str, Any] = {
        "envelope": {
            "event_id": uuid.uuid4(),
            "occurred_at": datetime(2025, 5, 1, tzinfo=UTC),
            "source_system": source,
            "actor": "operator:7",
            "correlation_id": None,
        },
        "application_id": f"app-{uuid.uuid4().hex[:8]}",
        "operator_id": "op-7",
        "certificate": {"common_name": "www.example.jp", "sans": [], "validation": "DV", "serial": None},
        "organisation": None,
        "applicant": {
            "subject_ref": None,
            "name": "山田 太郎",
            "email": "taro@example.jp",
            "phone": None,
            "postal_address": None,
        },
        "contacts": [],
        "purposes": purposes or ["P1"],
    }
    return CONTRACT.encode_confluent("jp.kiroku.upstream.registrar.ApplicationSubmitted", record)


def test_bad_messages_go_to_the_dead_letter_topic_and_the_rest_go_on(kafka: str, pg_ledger: Ledger) -> None:
    good_before, good_after = _valid_application(), _valid_application()
    valid = _valid_application()
    bad = {
        b"garbage": "UnknownFraming",
        b"\x07" + valid[1:]: "UnknownFraming",  # wrong magic byte
        b"\x00" + struct.pack(">I", 999) + valid[5:]: "UnknownSchema",
        valid[: len(valid) // 2]: "MalformedBody",  # truncated
        _valid_application(purposes=["P1", "P9"]): "PolicyViolation",  # §2: no such purpose in force
        _valid_application(source="acme"): "NotForThisTopic",
    }
    send_raw(kafka, "registrar.events", [good_before, *bad, good_after])
    with running(pg_ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: handled(ingest.counters) >= len(bad) + 2, what="all eight messages")
    assert ingest.counters.recorded == 2
    assert ingest.counters.dead_letters == len(bad)
    letters = read_dead_letters(kafka, "registrar.events", expected=len(bad))
    assert [letter.value for letter in letters] == list(bad)
    for letter, error in zip(letters, bad.values(), strict=True):
        assert letter.headers["kiroku.original.topic"] == b"registrar.events"
        assert letter.headers["kiroku.original.partition"] == b"0"
        assert letter.headers["kiroku.error.class"].decode() == error
        assert letter.headers["kiroku.error.message"]
    offsets = [int(letter.headers["kiroku.original.offset"]) for letter in letters]
    assert offsets == list(range(1, 1 + len(bad)))
    policy_letter = letters[4]
    assert policy_letter.headers["kiroku.error.clause"] == "§2".encode()
    assert pg_ledger.tracked_position("registrar.events:0") == len(bad) + 1
    # The event store notes each one, with where it was and why (never the message or the error's text).
    noted = pg_ledger.dead_letters()
    assert [(d.stream, d.topic, d.partition, d.offset) for d in noted] == [
        ("registrar.events:0", "registrar.events", 0, offset) for offset in offsets
    ]
    assert [(d.error_class, d.clause) for d in noted] == [
        (error, "§2" if error == "PolicyViolation" else None) for error in bad.values()
    ]
    for d, letter in zip(noted, letters, strict=True):
        assert d.occurred_at == datetime.fromtimestamp(
            int(letter.headers["kiroku.original.timestamp"]) / 1000, UTC
        )
    projections = Projections(pg_ledger)
    projections.catch_up(["audit_trail"])
    trail = projections.audit_page(event_type="UpstreamDeadLetter.Recorded")
    assert sorted(
        (r["kafka_position"], r["clause"], r["actor"], r["source_system"]) for r in trail
    ) == sorted(
        (
            f"registrar.events/0/{offset}",
            "§2" if error == "PolicyViolation" else None,
            "kiroku-ingest",
            "registrar",
        )
        for offset, error in zip(offsets, bad.values(), strict=True)
    )
    stored = json.dumps(
        [n.state.decode() for n in pg_ledger.recorder.select_notifications(start=1, limit=1000)]
    )
    assert "kiroku.error.message" not in stored
    for letter in letters:
        assert letter.headers["kiroku.error.message"].decode() not in stored


def test_a_message_written_by_apache_avro_is_recorded(kafka: str, pg_ledger: Ledger) -> None:
    version = CONTRACT.latest["jp.kiroku.upstream.acme.AccountRegistered"]
    schema = avro.schema.parse(json.dumps(CONTRACT.expanded[version.schema_id]))
    record = {
        "envelope": {
            "event_id": str(uuid.uuid4()),
            "occurred_at": datetime(2025, 6, 1, 8, 30, tzinfo=UTC),
            "source_system": "acme",
            "actor": "acme-server",
            "correlation_id": None,
        },
        "account_id": "acct-apache",
        "contacts": ["apache@example.org"],
        "purposes": ["P1", "P3"],
        "external_account_binding": "eab-1",
    }
    body = io.BytesIO()
    avro.io.DatumWriter(schema).write(record, avro.io.BinaryEncoder(body))
    send_raw(kafka, "acme.events", [b"\x00" + struct.pack(">I", version.schema_id) + body.getvalue()])
    with running(pg_ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: handled(ingest.counters) >= 1, what="the message")
    assert ingest.counters.recorded == 1
    subject = pg_ledger.data_subject(SubjectKey.email("apache@example.org"))
    account = pg_ledger.acme_account(pg_ledger.subject_records(subject.id)[0])
    assert account.account_ref == "acct-apache" and account.purposes == ["P1", "P3"]
    assert account.collected_at == datetime(2025, 6, 1, 8, 30, tzinfo=UTC)


def test_every_message_type_reaches_the_ledger(kafka: str, pg_ledger: Ledger) -> None:
    messages = list(Traffic(CONTRACT, seed=14).messages(400))
    kinds = {m.type_name.rsplit(".", 1)[-1] for m in messages}
    assert kinds >= {
        "ApplicationSubmitted",
        "InformationProvided",
        "StatusPublished",
        "AccountRegistered",
        "PrecertificateSubmitted",
        "CertificateIssued",
    }
    publish(kafka, messages)
    with running(pg_ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: handled(ingest.counters) >= len(messages), what="ingest")
    assert ingest.counters.dead_letters == 0
    provisions = [
        pg_ledger.provision(UUID(str(n.originator_id))).category
        for n in pg_ledger.recorder.select_notifications(
            start=1, limit=100_000, topics=["domain.provision:Provision.Recorded"]
        )
    ]
    assert {ProvisionCategory(c) for c in provisions} >= {
        ProvisionCategory.MANAGING_OPERATOR,
        ProvisionCategory.VERIFIERS,
        ProvisionCategory.CT_LOG,
    }
    kafka_positions = [
        getattr(pg_ledger.mapper.to_domain_event(n), "cause").kafka_position  # noqa: B009
        for n in pg_ledger.recorder.select_notifications(start=1, limit=50)
    ]
    assert any(p and p.startswith(("acme.events/", "registrar.events/")) for p in kafka_positions)


@pytest.mark.slow
def test_two_consumers_in_one_group_share_the_partitions(kafka: str, pg_ledger: Ledger) -> None:
    messages = list(Traffic(CONTRACT, seed=15).messages(3000))
    settings = settings_for(kafka)
    with running(pg_ledger, settings) as first, running(pg_ledger, settings) as second:
        wait_for(lambda: shared(first, second), what="the group to settle with partitions on both members")
        publish(kafka, messages)
        wait_for(lambda: handled(first.counters) + handled(second.counters) >= len(messages), what="ingest")
    assert first.counters.recorded > 0 and second.counters.recorded > 0
    assert first.counters.recorded + second.counters.recorded == len(messages)
    recorded = receipts(pg_ledger)
    assert len(recorded) == len(set(recorded)) == len(messages)


def test_kafka_offsets_reset_ahead_skip_nothing(kafka: str, pg_ledger: Ledger) -> None:
    """An operator resets the group's Kafka offsets past unprocessed messages: kiroku reads from its own."""
    first = list(Traffic(CONTRACT, seed=16).messages(100))
    publish(kafka, first)
    settings = settings_for(kafka)
    with running(pg_ledger, settings) as ingest:
        wait_for(lambda: handled(ingest.counters) >= len(first), what="the first messages")
    second = list(Traffic(CONTRACT, seed=17).messages(100))
    publish(kafka, second)
    operator = KafkaConsumer(bootstrap_servers=kafka, group_id=settings.group_id, enable_auto_commit=False)
    ahead = {}
    for topic in ("acme.events", "registrar.events"):
        for partition in operator.partitions_for_topic(topic) or []:
            tp = TopicPartition(topic, partition)
            ahead[tp] = OffsetAndMetadata(
                (pg_ledger.tracked_position(f"{topic}:{partition}") or -1) + 11, "", -1
            )
    operator.commit(ahead)
    operator.close()
    with running(pg_ledger, settings) as again:
        wait_for(lambda: handled(again.counters) >= len(second), what="the second messages")
    recorded = receipts(pg_ledger)
    assert len(recorded) == len(set(recorded)) == len(first) + len(second)


def test_end_offsets_count_every_record_of_a_batched_partition(kafka: str) -> None:
    """Tansu lists a partition's end as its last batch's base offset + 1; end_offsets must not."""
    topic = f"ends-{uuid.uuid4().hex[:8]}"
    create_topics(kafka, [topic])
    alone = KafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=0)
    for _ in range(10):
        alone.send(topic, value=b"alone", partition=0).get(timeout=10)
    alone.close()
    batched = KafkaProducer(bootstrap_servers=kafka, acks="all", linger_ms=200)
    sent = [batched.send(topic, value=b"batched", partition=p) for p in (0, 0, 0, 0, 0, 0, 0, 1, 1)]
    batched.flush()
    batched.close()
    last: dict[int, int] = {}
    for future in sent:
        metadata = future.get(timeout=10)
        last[metadata.partition] = max(last.get(metadata.partition, -1), metadata.offset)
    assert last == {0: 16, 1: 1}
    assert end_offsets(kafka, [topic]) == {f"{topic}:0": 17, f"{topic}:1": 2, f"{topic}:2": 0}
