"""Recorded positions against a real broker's logs: ``kiroku consume status``, and a log not recorded from."""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from kafka import KafkaProducer, TopicPartition

from consumers.contract import Contract
from consumers.lag import end_offsets, ingest_lag, recorded_messages
from consumers.synthetic import Traffic
from domain.application import Ledger
from kiroku.broker import free_port
from kiroku.cli import main
from tests.integration.kafka_support import publish, running, settings_for, wait_for
from tests.integration.proxy import Proxy

CONTRACT = Contract.load()


def test_status_counts_the_messages_not_yet_recorded(kafka: str, pg_ledger: Ledger) -> None:
    publish(kafka, Traffic(CONTRACT, seed=31).messages(120))
    ends = end_offsets(kafka)
    with running(pg_ledger, settings_for(kafka)):
        wait_for(lambda: recorded_messages(pg_ledger, ends) >= sum(ends.values()), what="ingest to catch up")
    caught_up = ingest_lag(pg_ledger, kafka)
    assert caught_up.behind == 0 and caught_up.troubled == () and caught_up.missing_topics == ()
    assert {p.stream: p.recorded for p in caught_up.partitions} == {
        stream: (end - 1 if end else None) for stream, end in ends.items()
    }

    more = list(Traffic(CONTRACT, seed=32).messages(45))
    publish(kafka, more)
    later = end_offsets(kafka)
    lag = ingest_lag(pg_ledger, kafka)
    assert lag.behind == len(more) == sum(later.values()) - sum(ends.values())
    assert {p.stream: p.behind for p in lag.partitions} == {s: later[s] - ends[s] for s in later}
    assert {p.stream: p.end for p in lag.partitions} == later


def test_ingest_stops_a_partition_recorded_past_the_brokers_end_and_skips_none_of_its_messages(
    kafka: str, pg_ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    """As after the topic was made again: reading on would skip its messages up to the recorded position."""
    caplog.set_level(logging.ERROR, logger="kiroku.ingest")
    publish(kafka, Traffic(CONTRACT, seed=35).messages(60))
    ahead, tp = "acme.events:1", TopicPartition("acme.events", 1)
    recorded_ahead = end_offsets(kafka)[ahead] + 5
    pg_ledger.recorder.insert_events([], tracking=Tracking(ahead, recorded_ahead))
    ends = end_offsets(kafka)
    others = {stream: end for stream, end in ends.items() if stream != ahead}

    with running(pg_ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: tp in ingest.stopped, what="the partition to stop")
        wait_for(
            lambda: recorded_messages(pg_ledger, others) >= sum(others.values()), what="the other partitions"
        )
        # The partition's log now grows past the recorded position: still none of it is recorded.
        producer = KafkaProducer(bootstrap_servers=kafka, acks="all")
        extra = [m for m in Traffic(CONTRACT, seed=36).messages(200) if m.topic == "acme.events"][:20]
        for message in extra:
            producer.send("acme.events", key=message.key, value=message.value, partition=1)
        producer.flush()
        producer.close()
        assert end_offsets(kafka)[ahead] > recorded_ahead + 1
        time.sleep(2)  # more polls
        assert tp in ingest.stopped
        assert ingest.counters.stopped_partitions == 1
    assert pg_ledger.tracked_position(ahead) == recorded_ahead
    assert ingest.counters.consumed == sum(others.values())
    said = [r.getMessage() for r in caplog.records if r.getMessage().startswith(ahead)]
    assert len(said) == 1, said
    assert "AHEAD" in said[0] and f"before the recorded position {recorded_ahead}" in said[0]


def test_a_new_epoch_starts_over_on_what_the_broker_holds_and_changes_nothing_recorded(
    kafka: str, pg_ledger: Ledger
) -> None:
    publish(kafka, Traffic(CONTRACT, seed=37).messages(80))
    ends = end_offsets(kafka)
    with running(pg_ledger, settings_for(kafka)) as first:
        wait_for(lambda: recorded_messages(pg_ledger, ends) >= sum(ends.values()), what="the first reading")
    events = pg_ledger.recorder.max_notification_id() or 0

    epoch = "2027-01:"
    again = dataclasses.replace(settings_for(kafka), stream_prefix=epoch)
    with running(pg_ledger, again) as second:
        streams = {epoch + stream: end for stream, end in ends.items()}
        wait_for(
            lambda: recorded_messages(pg_ledger, streams) >= sum(ends.values()), what="the second reading"
        )
    assert second.counters.consumed == first.counters.consumed == sum(ends.values())
    assert second.counters.recorded == 0
    assert second.counters.duplicates == first.counters.recorded
    assert second.counters.dead_letters == first.counters.dead_letters
    # Nothing recorded again; the only new events say which topics the new epoch reads (their ids).
    stored = pg_ledger.recorder.select_notifications(events + 1, 10)
    new: list[Any] = [pg_ledger.mapper.to_domain_event(n) for n in stored]
    assert sorted((type(e).__qualname__, e.stream_prefix, e.topic) for e in new) == [
        ("UpstreamTopic.Bound", epoch, topic) for topic in sorted(again.topics)
    ]
    assert ingest_lag(pg_ledger, kafka, stream_prefix=epoch).behind == 0


def test_a_topic_the_broker_lacks_is_named(kafka: str, pg_ledger: Ledger) -> None:
    lag = ingest_lag(pg_ledger, kafka, ["acme.events", "no-such-upstream"])
    assert lag.missing_topics == ("no-such-upstream",)
    assert {p.topic for p in lag.partitions} == {"acme.events"}


def test_the_command_flags_a_partition_recorded_past_the_brokers_end(
    kafka: str, cli_store: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    publish(kafka, Traffic(CONTRACT, seed=33).messages(30))
    ends = end_offsets(kafka)
    stream = max(ends, key=lambda s: ends[s])
    # As after the topic was deleted and made again: positions from a longer log.
    cli_store.recorder.insert_events([], tracking=Tracking(stream, ends[stream] + 40))

    assert main(["consume", "status", "--bootstrap-servers", kafka, "--json"]) == 1
    shown = json.loads(capsys.readouterr().out)
    rows = {f"{r['topic']}:{r['partition']}": r for r in shown["partitions"]}
    assert set(rows) == set(ends)
    assert rows[stream]["ahead"] is True and rows[stream]["behind"] == 0
    assert rows[stream]["recorded"] == ends[stream] + 40
    assert shown["behind"] == sum(end - rows[s]["log_start"] for s, end in ends.items() if s != stream)

    assert main(["consume", "--bootstrap-servers", kafka, "status"]) == 1
    table = capsys.readouterr().out
    flagged = [line for line in table.splitlines() if line.startswith(stream + " ")]
    assert len(flagged) == 1 and "AHEAD of the broker's end" in flagged[0]
    assert f"behind: {shown['behind']:,} messages in {len(ends)} partitions" in table


def test_the_command_exits_1_only_past_max_behind(
    kafka: str, cli_store: Ledger, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    publish(kafka, Traffic(CONTRACT, seed=34).messages(20))
    ends = end_offsets(kafka)
    behind = sum(ends.values())  # nothing is recorded in this store
    assert main(["consume", "status", "--bootstrap-servers", kafka, "--max-behind", str(behind)]) == 0
    capsys.readouterr()
    # Positions recorded under an epoch count only under it.
    cli_store.recorder.insert_events([], tracking=Tracking("e2:acme.events:0", ends["acme.events:0"] - 1))
    monkeypatch.setenv("KIROKU_INGEST_EPOCH", "e2")
    assert main(["consume", "status", "--bootstrap-servers", kafka, "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["epoch"] == "e2" and shown["behind"] == behind - ends["acme.events:0"]
    assert main(["consume", "status", "--bootstrap-servers", kafka]) == 0
    assert "; positions of epoch e2" in capsys.readouterr().out
    monkeypatch.delenv("KIROKU_INGEST_EPOCH")
    assert main(["consume", "status", "--bootstrap-servers", kafka, "--max-behind", str(behind - 1)]) == 1
    err = capsys.readouterr().err
    assert f"{behind:,} messages behind, more than --max-behind {behind - 1:,}" in err
    assert main(["consume", "status", "--bootstrap-servers", kafka, "--max-behind", "-1"]) == 2
    assert main(["consume", "status", "--bootstrap-servers", kafka, "--timeout", "0"]) == 2
    assert "--timeout: must be more than 0" in capsys.readouterr().err


def test_an_unreachable_broker_is_reported_plainly(
    cli_store: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    servers = f"127.0.0.1:{free_port()}"
    assert main(["consume", "status", "--bootstrap-servers", servers, "--timeout", "2"]) == 3
    err = capsys.readouterr().err
    assert f"cannot read the partitions' offsets from {servers}" in err


# The Kafka API keys of the requests the status makes after connecting.
METADATA, LIST_OFFSETS = 3, 2


@pytest.mark.parametrize("api_key", [METADATA, LIST_OFFSETS], ids=["metadata", "list-offsets"])
def test_a_broker_that_never_answers_a_request_is_reported_within_the_timeout(
    broker_behind_proxy: tuple[str, Proxy],
    cli_store: Ledger,
    capsys: pytest.CaptureFixture[str],
    api_key: int,
) -> None:
    servers, proxy = broker_behind_proxy
    assert main(["consume", "status", "--bootstrap-servers", servers, "--timeout", "2"]) == 0
    capsys.readouterr()
    proxy.hold(api_key)  # the broker accepts the connection and the request, and never answers it
    started = time.monotonic()
    assert main(["consume", "status", "--bootstrap-servers", servers, "--timeout", "2"]) == 3
    # kafka-python's own request timeout is 30 s; the status keeps to its --timeout.
    assert time.monotonic() - started < 8
    assert f"cannot read the partitions' offsets from {servers}" in capsys.readouterr().err
