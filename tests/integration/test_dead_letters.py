"""Dead letters after a crash between their send and the batch's commit: the event store notes each
one once, and the topic holds each once (the next consumer sees them there and does not send them again)."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from uuid import uuid4

import pytest
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition

from consumers.contract import Contract, UndecodableMessage
from consumers.dlq import identity, sent_past
from consumers.ingest import DeadLetter, Ingest
from consumers.synthetic import Traffic
from consumers.topics import create_topics, dead_letter_topic
from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.cli import main
from kiroku.settings import Settings
from tests.conftest import postgres_environ
from tests.helpers import publish_policy
from tests.integration.crash_after_dead_letters import CRASHED
from tests.integration.kafka_support import (
    handled,
    read_dead_letters,
    receipts,
    running,
    send_raw,
    settings_for,
    wait_for,
)

CONTRACT = Contract.load()
VALID = [m.value for m in Traffic(CONTRACT, seed=91).messages(40) if m.topic == "registrar.events"]


def test_a_dead_letter_sent_before_a_crash_is_noted_once_and_not_sent_again(
    kafka: str, postgres_url: str, postgres_schema: str
) -> None:
    """A consumer process crashes between a batch's dead letters reaching the broker and the batch's
    commit; the next consumer records the batch again, and finds its dead letters on the topic."""
    environ = {**os.environ, **postgres_environ(postgres_url, postgres_schema)}
    ledger = build_ledger(Settings.from_env(environ))
    publish_policy(ledger)
    unknown_schema = b"\x00" + struct.pack(">I", 999) + VALID[1][5:]
    send_raw(kafka, "registrar.events", [VALID[0], b"not avro", VALID[1], unknown_schema, VALID[2]])

    crashed = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "tests.integration.crash_after_dead_letters", kafka],
        env=environ,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == CRASHED, crashed.stderr.decode()[-3000:]
    assert ledger.dead_letters() == [], "the crash came before the batch's commit"
    assert (ledger.tracked_position("registrar.events:0") or -1) < 1

    with running(ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: ledger.tracked_position("registrar.events:0") == 4, what="the five messages")
    assert ingest.counters.dead_letters == 2
    # The topic holds each dead letter once: sent before the crash; the next consumer found them
    # there when it took the partition, and did not send them again.
    letters = read_dead_letters(kafka, "registrar.events", expected=3, timeout=3)
    assert Counter(int(letter.headers["kiroku.original.offset"]) for letter in letters) == {1: 1, 3: 1}
    # The event store, once each.
    noted = ledger.dead_letters()
    assert [(d.stream, d.offset, d.error_class) for d in noted] == [
        ("registrar.events:0", 1, "UnknownFraming"),
        ("registrar.events:0", 3, "UnknownSchema"),
    ]
    assert len(receipts(ledger)) == 3
    ledger.close()


def test_the_dead_letters_command_lists_each_once(
    kafka: str, cli_store: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["consume", "dead-letters"]) == 0
    assert capsys.readouterr().out == "no upstream message dead-lettered\n"
    send_raw(kafka, "registrar.events", [b"garbage", VALID[0]])
    send_raw(kafka, "acme.events", [VALID[3]])  # a registrar message on the ACME topic
    with running(cli_store, settings_for(kafka)) as ingest:
        wait_for(lambda: handled(ingest.counters) >= 3, what="the three messages")

    assert main(["consume", "dead-letters"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert sorted(line.split("  ", 1)[1] for line in out[:2]) == [
        "acme.events:0  offset 0  UndecodableMessage  (to acme.events.dlq)",
        "registrar.events:0  offset 0  UnknownFraming  (to registrar.events.dlq)",
    ]
    assert out[2] == "2 messages dead-lettered from 2 streams"
    assert main(["consume", "dead-letters", "--json"]) == 0
    listed: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    assert sorted(
        (d["topic"], d["partition"], d["offset"], d["error_class"], d["clause"]) for d in listed
    ) == [
        ("acme.events", 0, 0, "UndecodableMessage", None),
        ("registrar.events", 0, 0, "UnknownFraming", None),
    ]


def put_dead_letters(kafka: str, dlq: str, letters: list[tuple[str, int, int, int, bytes]]) -> None:
    """(original topic, partition, offset, timestamp, value) as kiroku's dead letters on ``dlq``."""
    producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
    for topic, partition, offset, timestamp, value in letters:
        headers = [
            ("kiroku.original.topic", topic.encode()),
            ("kiroku.original.partition", str(partition).encode()),
            ("kiroku.original.offset", str(offset).encode()),
            ("kiroku.original.timestamp", str(timestamp).encode()),
            ("kiroku.error.class", b"UnknownFraming"),
        ]
        producer.send(dlq, value=value, headers=headers)
    producer.send(dlq, value=b"from elsewhere", headers=[("x", b"y")])
    producer.flush()
    producer.close()


def test_the_dead_letters_past_a_position_are_found_on_the_topic_by_message(kafka: str) -> None:
    topic = f"registrar{uuid4().hex[:8]}.events"  # a topic of this test's own, on any broker
    create_topics(kafka, [topic])
    assert sent_past(kafka, topic, {0: None, 1: 5}) == {}, "an empty topic"
    put_dead_letters(
        kafka,
        dead_letter_topic(topic),
        [
            (topic, 0, 3, 1000, b"three"),
            (topic, 1, 5, 1001, b"five"),  # at the recorded position: not past it
            (topic, 1, 6, 1002, b"six"),
            (topic, 2, 9, 1003, b"nine"),  # a partition not asked about
            ("acme.events", 0, 4, 1004, b"acme"),  # another topic's message
        ],
    )
    found = sent_past(kafka, topic, {0: None, 1: 5})
    assert found == {0: {3: identity(1000, b"three")}, 1: {6: identity(1002, b"six")}}
    assert identity(1000, b"three") != identity(1000, b"thre3") != identity(1001, b"three")
    # Only the last records are read: the window of 2 holds the acme letter and the foreign record.
    assert sent_past(kafka, topic, {0: None, 1: 5}, window=2) == {}
    assert sent_past(kafka, topic, {1: None}, window=4) == {1: {6: identity(1002, b"six")}}


def test_a_dead_letter_is_not_sent_again_only_when_it_is_the_same_message(pg_ledger: Ledger) -> None:
    ingest = Ingest(pg_ledger, settings_for("127.0.0.1:1"))
    ingest._sent_before[TopicPartition("registrar.events", 0)] = {3: identity(1000, b"three")}

    def letter(partition: int, offset: int, timestamp: int, value: bytes) -> DeadLetter:
        record = SimpleNamespace(
            topic="registrar.events", partition=partition, offset=offset, timestamp=timestamp, value=value
        )
        return DeadLetter(record, UndecodableMessage("x"))

    assert ingest._sent_already(letter(0, 3, 1000, b"three"))
    assert not ingest._sent_already(letter(0, 3, 1000, b"other")), "the topic made again: another message"
    assert not ingest._sent_already(letter(0, 3, 999, b"three"))
    assert not ingest._sent_already(letter(0, 4, 1000, b"three"))
    assert not ingest._sent_already(letter(1, 3, 1000, b"three"))
    ingest._forget_sent_through(TopicPartition("registrar.events", 0), 3)
    assert not ingest._sent_already(letter(0, 3, 1000, b"three")), "forgotten once recorded"


def test_a_topic_with_no_dead_letter_topic_has_sent_none_and_gets_none_made(kafka: str) -> None:
    topic = f"nodlq{uuid4().hex[:8]}.events"
    assert sent_past(kafka, topic, {0: None}) == {}
    # Tansu makes no topic on a metadata request; a Kafka broker that does (auto.create.topics.enable,
    # through KAFKA_BOOTSTRAP_SERVERS) would have made one had the look asked it to.
    admin = KafkaAdminClient(bootstrap_servers=kafka)
    try:
        assert dead_letter_topic(topic) not in admin.list_topics()
    finally:
        admin.close()
