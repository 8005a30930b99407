"""``python -m bench ingest --events N``: kiroku's ingest against a plain decode-only consumer."""

from __future__ import annotations

import threading
import time
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from bench.common import fresh_ledger, ingest_settings, peak_rss_mb, result_line, say
from consumers.contract import Contract
from consumers.ingest import Ingest
from consumers.synthetic import Traffic
from consumers.topics import UPSTREAM_TOPICS, create_topics
from kiroku.broker import TansuBroker


def ceiling(bootstrap: str, count: int, contract: Contract) -> float:
    """Messages per second a kafka-python consumer reads and Avro-decodes, doing nothing else."""
    consumer = KafkaConsumer(
        *UPSTREAM_TOPICS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
        max_poll_records=2000,
    )
    seen = 0
    started = None
    while seen < count:
        for records in consumer.poll(timeout_ms=500).values():
            if started is None:
                started = time.monotonic()
            for record in records:
                contract.decode(record.value)
            seen += len(records)
    consumer.close()
    assert started is not None
    return count / (time.monotonic() - started)


def run(events: int) -> dict[str, Any]:
    contract = Contract.load()
    with TansuBroker() as broker:
        create_topics(broker.bootstrap_servers)
        say(f"publishing {events} synthetic messages (not timed)")
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=20)
        for message in Traffic(contract, seed=7).messages(events):
            producer.send(message.topic, key=message.key, value=message.value)
        producer.flush()
        producer.close()
        say("ceiling: a plain consumer reading and decoding every message")
        ceiling_rate = ceiling(broker.bootstrap_servers, events, contract)
        say(f"  {ceiling_rate:,.0f} messages/s")
        with fresh_ledger() as ledger:
            ingest = Ingest(ledger, ingest_settings(broker.bootstrap_servers), contract=contract)
            thread = threading.Thread(target=ingest.run)
            thread.start()
            # Timed from the first message handled, so the group join is not counted.
            while ingest.counters.consumed == 0:
                time.sleep(0.005)
            started = time.monotonic()
            handled = 0
            while handled < events:
                counters = ingest.counters
                handled = counters.recorded + counters.duplicates + counters.dead_letters
                time.sleep(0.01)
            elapsed = time.monotonic() - started
            ingest.stop()
            thread.join()
            kiroku_rate = events / elapsed
            stored, dead = ledger.recorder.max_notification_id(), ingest.counters.dead_letters
            say(f"kiroku: {kiroku_rate:,.0f} messages/s into PostgreSQL ({stored} events, {dead} dead)")
    return {
        "bench": "ingest",
        "events": events,
        "ceiling_per_s": round(ceiling_rate, 1),
        "kiroku_per_s": round(kiroku_rate, 1),
        "ratio": round(kiroku_rate / ceiling_rate, 3),
        "peak_rss_mb": peak_rss_mb(),
    }


def main(events: int) -> None:
    result_line(run(events))
