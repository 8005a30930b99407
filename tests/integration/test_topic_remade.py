"""A topic deleted and made again: its new log's offsets say nothing about what was recorded.

Each test deletes ``acme.events`` and makes it again on the broker of the
``kafka`` fixture: a fresh Tansu per test, or the cluster that
KAFKA_BOOTSTRAP_SERVERS names.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
from eventsourcing.persistence import Tracking
from kafka.admin import KafkaAdminClient, NewTopic

from consumers.contract import Contract
from consumers.lag import accept_loss, end_offsets, ingest_lag, recorded_messages
from consumers.synthetic import Traffic
from domain.application import Ledger
from domain.errors import InvalidCommand
from domain.source import UpstreamTopic, upstream_topic_id
from kiroku.cli import main
from tests.helpers import cause
from tests.integration.kafka_support import handled, publish, running, settings_for, wait_for

CONTRACT = Contract.load()


def remake(bootstrap: str, topic: str) -> None:
    """Deletes ``topic`` and makes it again with as many partitions."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="test-admin")
    try:
        partitions = len(admin.describe_topics([topic])[0]["partitions"])
        admin.delete_topics([topic])
        wait_for(lambda: topic not in admin.list_topics(), timeout=30, what="the topic to go")
        admin.create_topics([NewTopic(topic, partitions, 1)])
        wait_for(lambda: topic in admin.list_topics(), timeout=30, what="the topic to come back")
    finally:
        admin.close()


def binding(ledger: Ledger, topic: str, prefix: str = "") -> Any:
    found: Any = ledger.repository.get(upstream_topic_id(prefix, topic))
    assert type(found) is UpstreamTopic
    return found


def test_a_topic_made_again_is_not_read_on_from_the_old_positions(
    kafka: str, cli_store: Ledger, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    pg_ledger = cli_store
    caplog.set_level(logging.ERROR, logger="kiroku.ingest")
    publish(kafka, Traffic(CONTRACT, seed=61).messages(120))
    ends = end_offsets(kafka)
    with running(pg_ledger, settings_for(kafka)):
        wait_for(lambda: recorded_messages(pg_ledger, ends) >= sum(ends.values()), what="the first reading")
    acme = sorted(s for s in ends if s.startswith("acme.events:"))
    before = pg_ledger.tracked_positions(acme)
    first_id = binding(pg_ledger, "acme.events").topic_id

    remake(kafka, "acme.events")
    publish(kafka, Traffic(CONTRACT, seed=62).messages(900))
    now = end_offsets(kafka)
    # The new log has grown past every recorded position: its offsets alone cannot tell.
    assert all(now[s] > (before[s] or 0) + 1 for s in acme)
    others = {s: end for s, end in now.items() if s not in acme}
    with running(pg_ledger, settings_for(kafka)) as second:
        wait_for(lambda: recorded_messages(pg_ledger, others) >= sum(others.values()), what="the others")
        wait_for(lambda: len(second.stopped) == len(acme), what="the remade topic's partitions to stop")
        time.sleep(1)  # more polls
        assert second.counters.stopped_partitions == len(acme)
    assert pg_ledger.tracked_positions(acme) == before
    assert handled(second.counters) == sum(others.values()) - sum(ends[s] for s in others)
    assert binding(pg_ledger, "acme.events").topic_id == first_id  # still the topic recorded from
    # `kiroku consume status` says the same, and so does accept-loss's refusal.
    lag = ingest_lag(pg_ledger, kafka)
    assert sorted(p.stream for p in lag.troubled) == acme
    assert all(p.remade and not p.ahead and not p.lost for p in lag.troubled)
    assert main(["consume", "status", "--bootstrap-servers", kafka, "--json"]) == 1
    shown = json.loads(capsys.readouterr().out)["partitions"]
    assert sorted(f"{p['topic']}:{p['partition']}" for p in shown if p["remade"]) == acme
    assert main(["consume", "status", "--bootstrap-servers", kafka]) == 1
    table = capsys.readouterr().out
    assert table.count("REMADE: the topic was made again since it was recorded from") == len(acme)
    assert f"{acme[0]}: to start over on what the broker holds, set a new KIROKU_INGEST_EPOCH" in table
    with pytest.raises(InvalidCommand, match="made again since it was recorded from"):
        accept_loss(pg_ledger, lag.troubled[0], reason="no", cause=cause())
    said = [
        r.getMessage()
        for r in caplog.records
        if r.name == "kiroku.ingest" and "acme.events" in r.getMessage()
    ]
    assert sorted(m.split(":")[0] + ":" + m.split(":")[1] for m in said) == acme  # one ERROR each
    assert all(f"not {first_id}, which its positions were recorded from" in m for m in said)
    assert all("REMADE" in m for m in said)


def test_a_topic_made_again_before_anything_was_recorded_from_it_is_read(
    kafka: str, pg_ledger: Ledger
) -> None:
    settings = settings_for(kafka)
    with running(pg_ledger, settings):
        wait_for(lambda: _bound(pg_ledger), what="the bindings")
    first_id = binding(pg_ledger, "acme.events").topic_id

    remake(kafka, "acme.events")
    publish(kafka, Traffic(CONTRACT, seed=63).messages(80))
    ends = end_offsets(kafka)
    with running(pg_ledger, settings) as second:
        wait_for(lambda: recorded_messages(pg_ledger, ends) >= sum(ends.values()), what="every message")
    assert not second.stopped
    rebound = binding(pg_ledger, "acme.events")
    assert rebound.topic_id != first_id
    events: list[Any] = list(pg_ledger.repository.event_store.get(rebound.id))
    [last] = events[1:]
    assert (type(last).__qualname__, last.previous_topic_id, last.topic_id) == (
        "UpstreamTopic.Rebound",
        first_id,
        rebound.topic_id,
    )


def _bound(ledger: Ledger) -> bool:
    try:
        binding(ledger, "acme.events")
        binding(ledger, "registrar.events")
    except Exception:  # noqa: BLE001 - not yet
        return False
    return True


def test_positions_recorded_before_topic_ids_were_kept_are_bound_to_the_topic_found(
    kafka: str,
    pg_ledger: Ledger,
) -> None:
    publish(kafka, Traffic(CONTRACT, seed=64).messages(60))
    ends = end_offsets(kafka)
    # As an upgraded store holds them: positions, and no topic bound.
    recorded = {stream: end // 2 - 1 for stream, end in ends.items() if end >= 2}
    for stream, position in recorded.items():
        pg_ledger.recorder.insert_events([], tracking=Tracking(stream, position))
    with running(pg_ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: recorded_messages(pg_ledger, ends) >= sum(ends.values()), what="the rest")
    assert not ingest.stopped
    assert handled(ingest.counters) == sum(ends.values()) - sum(p + 1 for p in recorded.values())
    assert _bound(pg_ledger)


def test_a_topic_made_again_under_a_running_consumer_is_caught_before_its_records_are_used(
    kafka: str, pg_ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    # No rebalance follows, and the fetches go on at the old offsets in the new log: without a
    # look at the topic's id after each fetch, its first messages were skipped (found so).
    caplog.set_level(logging.WARNING, logger="kiroku.ingest")
    publish(kafka, Traffic(CONTRACT, seed=65).messages(120))
    ends = end_offsets(kafka)
    acme = sorted(s for s in ends if s.startswith("acme.events:"))
    with running(pg_ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: recorded_messages(pg_ledger, ends) >= sum(ends.values()), what="the first")
        before = pg_ledger.tracked_positions(acme)
        remake(kafka, "acme.events")
        publish(kafka, Traffic(CONTRACT, seed=66).messages(900))
        now = end_offsets(kafka)
        assert all(now[s] > (before[s] or 0) + 1 for s in acme)
        others = {s: end for s, end in now.items() if s not in acme}
        wait_for(lambda: recorded_messages(pg_ledger, others) >= sum(others.values()), what="the others")
        wait_for(lambda: len(ingest.stopped) == len(acme), what="the remade topic's partitions to stop")
        time.sleep(1)  # more polls
    assert pg_ledger.tracked_positions(acme) == before
    # Every message counted as consumed was handled once; none of the new topic's was.
    first_run = sum(ends.values())
    assert (
        handled(ingest.counters)
        == ingest.counters.consumed
        == sum(others.values()) + first_run - sum(ends[s] for s in others)
    )
    said = [
        r.getMessage()
        for r in caplog.records
        if r.name == "kiroku.ingest" and "acme.events" in r.getMessage()
    ]
    assert len([m for m in said if "has a new id" in m]) == 1
    # One ERROR a partition: REMADE, or AHEAD where a fetch saw the new log while it was still shorter.
    stops = [
        r.getMessage() for r in caplog.records if r.levelno == logging.ERROR and r.name == "kiroku.ingest"
    ]
    assert sorted(m.split(": ")[0] for m in stops) == acme
    assert all("REMADE" in m or "AHEAD" in m for m in stops)
    assert not [m for m in said if m.startswith("dead letter: acme.events")]
