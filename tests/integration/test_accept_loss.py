"""A LOST partition's gap accepted by a person: recorded in the ledger, and ingest goes on after it.

Tansu keeps every message (no retention, no DeleteRecords), so a broker log
that starts after the recorded position cannot be made here. The gap's
recording is tested with the partition's log bounds given (``PartitionLag``,
kiroku's own type) against a real PostgreSQL store; the consumer's going on
against a real broker, with its partition stopped as LOST from its own thread.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import datetime
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from kafka import TopicPartition

from consumers.contract import Contract
from consumers.ingest import Ingest, place
from consumers.lag import PartitionLag, accept_loss, end_offsets, recorded_messages
from consumers.synthetic import Traffic
from domain.application import Ledger
from domain.errors import InvalidCommand
from domain.gap import UpstreamGap
from kiroku.broker import free_port
from kiroku.cli import main
from projections.service import Projections
from tests.helpers import cause
from tests.integration.kafka_support import handled, publish, receipts, running, settings_for, wait_for

CONTRACT = Contract.load()
REASON = "retention removed them while ingest was down; the upstream team cannot publish them again"


def test_an_accepted_gap_is_recorded_and_the_position_moves_past_it(pg_ledger: Ledger) -> None:
    stream = "acme.events:2"
    pg_ledger.recorder.insert_events([], tracking=Tracking(stream, 9))
    lost = PartitionLag("acme.events", 2, recorded=9, start=25, end=40)
    assert lost.lost == 15

    result = accept_loss(pg_ledger, lost, reason=f"  {REASON} ", cause=cause(actor="cli:operator"))

    assert pg_ledger.tracked_position(stream) == 24
    assert result.id is not None
    gap: UpstreamGap = pg_ledger.repository.get(result.id)
    assert type(gap) is UpstreamGap
    assert (gap.stream, gap.first_missing, gap.last_missing, gap.missing) == (stream, 10, 24, 15)
    assert gap.reason == REASON
    assert result.position == pg_ledger.recorder.max_notification_id()
    # As `kiroku consume status` and the consumer now see the partition: nothing lost, reading from 25.
    after = dataclasses.replace(lost, recorded=24)
    assert (after.lost, after.behind) == (0, 15)
    assert place(stream, 24, 25).offset == 25 and not place(stream, 24, 25).stopped
    # The audit trail says what was accepted, when and by whom.
    projections = Projections(pg_ledger)
    projections.catch_up()
    rows = projections.audit_page(event_type="UpstreamGap.Accepted")
    assert [(r["aggregate_id"], r["actor"], r["source_system"]) for r in rows] == [
        (str(result.id), "cli:operator", "registrar")
    ]

    # Accepted once: the same gap again finds the position moved, and writes nothing.
    with pytest.raises(InvalidCommand, match="nothing is lost"):
        accept_loss(pg_ledger, after, reason=REASON, cause=cause())
    with pytest.raises(InvalidCommand, match="recorded last is 24, so a gap would start at 25, not 10"):
        accept_loss(pg_ledger, lost, reason=REASON, cause=cause())
    assert pg_ledger.recorder.max_notification_id() == result.position


def test_a_gap_is_refused_unless_messages_are_lost_and_nothing_is_written(pg_ledger: Ledger) -> None:
    stream = "registrar.events:0"
    pg_ledger.recorder.insert_events([], tracking=Tracking(stream, 9))
    before = pg_ledger.recorder.max_notification_id()
    refused = {
        "nothing is lost (the log starts at offset 10; recorded up to 9)": PartitionLag(
            "registrar.events", 0, 9, 10, 30
        ),
        "nothing is lost (the log starts at offset 5; recorded nothing)": PartitionLag(
            "registrar.events", 1, None, 5, 30
        ),
        "AHEAD of the broker's log": PartitionLag("registrar.events", 0, 9, 3, 6),
    }
    for said, partition in refused.items():
        with pytest.raises(InvalidCommand, match=said.replace("(", r"\(").replace(")", r"\)")):
            accept_loss(pg_ledger, partition, reason=REASON, cause=cause())
    lost = PartitionLag("registrar.events", 0, 9, 20, 30)
    for reason in ("", "   ", "x" * 2001):
        with pytest.raises(InvalidCommand, match="needs a reason of 1 to 2000 characters"):
            accept_loss(pg_ledger, lost, reason=reason, cause=cause())
    # A reason is kept for good and shown to every reader: one that looks like a person's data is
    # refused, and the refusal names the kind of data, never the data.
    for data, kind in (
        ("taro.yamada@example.jp", "an e-mail address"),
        ("192.0.2.44", "an IPv4 address"),
        ("090-1234-5678", "a telephone number"),
    ):
        with pytest.raises(InvalidCommand, match=f"seems to hold {kind}") as refusal:
            accept_loss(pg_ledger, lost, reason=f"INC-7: as {data} reported", cause=cause())
        assert data not in str(refusal.value)
    for first, following in ((10, 10), (0, 5), (10, 9)):
        with pytest.raises(InvalidCommand, match="a gap runs from"):
            pg_ledger.accept_upstream_gap(
                stream=stream, first_missing=first, next_available=following, reason=REASON, cause=cause()
            )
    # The error says nothing of the reason (it may name people), only positions.
    with pytest.raises(InvalidCommand) as refusal:
        pg_ledger.accept_upstream_gap(
            stream=stream, first_missing=12, next_available=20, reason=REASON, cause=cause()
        )
    assert REASON not in str(refusal.value)
    assert pg_ledger.tracked_position(stream) == 9
    assert pg_ledger.recorder.max_notification_id() == before


def test_the_gap_is_recorded_under_the_ingest_epoch(pg_ledger: Ledger) -> None:
    prefix = "2026-12:"
    pg_ledger.recorder.insert_events([], tracking=Tracking(prefix + "acme.events:0", 3))
    lost = PartitionLag("acme.events", 0, 3, 8, 9)
    accept_loss(pg_ledger, lost, reason=REASON, cause=cause(), stream_prefix=prefix)
    assert pg_ledger.tracked_position(prefix + "acme.events:0") == 7
    assert pg_ledger.tracked_position("acme.events:0") is None


class StoppingIngest(Ingest):
    """Stops one partition as LOST from the ingest's own thread when asked (Tansu cannot trim a log)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.to_stop: TopicPartition | None = None

    def poll_once(self, timeout_ms: int = 500) -> None:
        consumer, tp = self._consumer, self.to_stop
        if consumer is not None and tp is not None and tp in consumer.assignment():
            self.to_stop = None
            self._stop_partition(consumer, tp, f"{self._stream(tp)}: stopped by the test as LOST", lost=True)
        super().poll_once(timeout_ms)


def test_the_consumer_reads_on_after_the_gap_once_it_is_accepted(
    kafka: str, pg_ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="kiroku.ingest")
    first = list(Traffic(CONTRACT, seed=51).messages(150))
    publish(kafka, first)
    stream, tp = "acme.events:1", TopicPartition("acme.events", 1)
    with running(pg_ledger, settings_for(kafka), kind=StoppingIngest) as ingest:
        assert isinstance(ingest, StoppingIngest)
        ingest.recheck_lost_s = 0.5
        wait_for(lambda: len(receipts(pg_ledger)) >= len(first), what="the first messages")
        recorded = pg_ledger.tracked_position(stream)
        assert recorded is not None
        ingest.to_stop = tp
        wait_for(lambda: tp in ingest.stopped, what="the partition to stop")
        assert ingest.counters.stopped_partitions == 1

        more = list(Traffic(CONTRACT, seed=52).messages(300))
        publish(kafka, more)
        ends = end_offsets(kafka)
        others = {s: end for s, end in ends.items() if s != stream}
        wait_for(lambda: recorded_messages(pg_ledger, others) >= sum(others.values()), what="the others")
        assert pg_ledger.tracked_position(stream) == recorded  # stopped: nothing more recorded
        assert ends[stream] - (recorded + 1) > 3

        # Three of its new messages are taken as lost: the rest are recorded, from the fourth on.
        gap = PartitionLag(tp.topic, tp.partition, recorded, recorded + 4, ends[stream])
        accept_loss(pg_ledger, gap, reason=REASON, cause=cause())
        wait_for(lambda: pg_ledger.tracked_position(stream) == ends[stream] - 1, what="the rest")
        assert tp not in ingest.stopped
        assert ingest.counters.stopped_partitions == 0
    # Every message but the three was handled once: recorded, or dead-lettered (one that needs what a
    # lost message would have recorded is refused, as when upstream never sent it).
    assert handled(ingest.counters) == len(first) + len(more) - 3
    assert len(receipts(pg_ledger)) == ingest.counters.recorded
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(stream)]
    assert said == [
        f"{stream}: stopped by the test as LOST",
        f"{stream}: a person accepted the messages lost before offset {recorded + 4} (recorded in the "
        "ledger); reading from there",
    ]


def test_the_command_refuses_where_nothing_is_lost(
    kafka: str, cli_store: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(kafka, Traffic(CONTRACT, seed=53).messages(40))
    ends = end_offsets(kafka)
    stream = max(ends, key=lambda s: ends[s])
    topic, partition = stream.split(":")
    cli_store.recorder.insert_events([], tracking=Tracking(stream, 1))
    before = cli_store.recorder.max_notification_id()
    accept = ["consume", "accept-loss", "--bootstrap-servers", kafka, "--reason", REASON]

    assert main([*accept, "--topic", topic, "--partition", partition]) == 1
    said = capsys.readouterr().err
    assert (
        f"refused: {topic}/{partition}: nothing is lost (the log starts at offset 0; recorded up to 1)"
        in said
    )
    # AHEAD is another log, not lost messages: a new epoch is the way on.
    cli_store.recorder.insert_events([], tracking=Tracking(stream, ends[stream] + 10))
    assert main([*accept, "--topic", topic, "--partition", partition]) == 1
    assert "AHEAD" in capsys.readouterr().err
    assert main([*accept, "--topic", topic, "--partition", "99"]) == 1
    assert f"the broker has no partition 99 of {topic}" in capsys.readouterr().err
    assert main([*accept, "--topic", "nope", "--partition", "0"]) == 2
    assert "--topic: one of" in capsys.readouterr().err
    unreachable = f"127.0.0.1:{free_port()}"
    command = ["consume", "accept-loss", "--bootstrap-servers", unreachable, "--reason", REASON]
    assert main([*command, "--topic", topic, "--partition", partition, "--timeout", "2"]) == 3
    assert cli_store.recorder.max_notification_id() == before


def test_the_accepted_gaps_are_listed_with_what_why_who_and_when(
    cli_store: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["consume", "gaps"]) == 0
    assert capsys.readouterr().out == "no upstream gaps accepted\n"
    assert main(["consume", "gaps", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []

    cli_store.recorder.insert_events([], tracking=Tracking("acme.events:2", 9))
    cli_store.recorder.insert_events([], tracking=Tracking("2026-12:registrar.events:0", 0))
    first = accept_loss(
        cli_store, PartitionLag("acme.events", 2, 9, 25, 40), reason=REASON, cause=cause(actor="cli:ana")
    )
    # Some other events between the two: the listing reads the gaps' kind only.
    cli_store.recorder.insert_events([], tracking=Tracking("acme.events:0", 5))
    odd = "lost in the outage of 2026-12-01\nticket OPS-7\x1b[2J"
    second = accept_loss(
        cli_store,
        PartitionLag("registrar.events", 0, 0, 3, 3),
        reason=odd,
        cause=cause(actor="cli:ben"),
        stream_prefix="2026-12:",
    )

    assert main(["consume", "gaps", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    fields = ("gap_id", "stream", "first_missing", "last_missing", "missing", "reason", "actor")
    assert [tuple(g[f] for f in fields) for g in listed] == [
        (str(first.id), "acme.events:2", 10, 24, 15, REASON, "cli:ana"),
        (str(second.id), "2026-12:registrar.events:0", 1, 2, 2, odd, "cli:ben"),
    ]
    assert [g["notification_id"] for g in listed] == [first.position, second.position]
    assert all(datetime.fromisoformat(g["accepted_at"]).tzinfo is not None for g in listed)

    assert main(["consume", "gaps"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert "  acme.events:2  offsets 10-24 (15 messages)  by cli:ana  gap " + str(first.id) in table[0]
    assert table[1] == f"    {REASON}"
    assert "  2026-12:registrar.events:0  offsets 1-2 (2 messages)  by cli:ben" in table[2]
    # The reason's lines stay under their gap, and a terminal's control characters are shown, not obeyed.
    assert table[3:5] == ["    lost in the outage of 2026-12-01", "    ticket OPS-7\\x1b[2J"]
    assert table[5] == "2 gaps accepted, 17 messages never recorded in all"
