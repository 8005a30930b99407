"""``python -m bench ingest --events N``: kiroku's ingest against a plain decode-only consumer."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer

from bench.common import Ceiling, fresh_ledger, ingest_settings, peak_rss_mb, result_line, say
from consumers.contract import Contract
from consumers.ingest import Ingest
from consumers.lag import end_offsets, recorded_messages
from consumers.synthetic import Traffic
from consumers.topics import UPSTREAM_TOPICS, create_topics
from kiroku.broker import TansuBroker
from kiroku.runtime import tune_gc_for_batches


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


def _peak_rss_mb(pid: int) -> float:
    """A live process's peak resident set (VmHWM), in MB; 0 where /proc does not tell."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


#: How often the processes' progress is read while they run. Each read takes CPU from
#: them (two cores in all): one statement every 50 ms, not one per partition every
#: 10 ms (that took 2.1 s of the benchmark's CPU and more of PostgreSQL's in a 15 s run).
_POLL_S = 0.05


def in_processes(bootstrap: str, processes: int) -> tuple[float, float]:
    """Messages per second of ``processes`` `kiroku consume` processes in one group, and their peak RSS (MB).

    Timed from the first batch recorded (the group's joins are left out) until
    every message is recorded, read from the tracking records in the store; the
    messages of that first batch are not counted. Where the first look already
    finds every message recorded (a few hundred messages), nothing is left to
    time that way, and the rate is taken from the processes' start instead
    (start-up and joins included, so lower).
    """
    env: dict[str, str] = {}
    with fresh_ledger(env) as ledger:
        ends = end_offsets(bootstrap)
        total = sum(ends.values())
        group = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KIROKU_GROUP_ID": f"bench-{uuid.uuid4().hex[:8]}"}
        command = [sys.executable, "-m", "kiroku.cli", "consume", "--session-timeout-ms", "6000"]
        spawned = time.monotonic()
        children = [
            subprocess.Popen(  # noqa: S603 - a fixed command of this repository
                command,
                env={**os.environ, **env, **group},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(processes)
        ]
        try:
            deadline = time.monotonic() + 600
            first = 0
            while first == 0 and time.monotonic() < deadline:
                time.sleep(_POLL_S)
                first = recorded_messages(ledger, ends)
            started = time.monotonic()
            while recorded_messages(ledger, ends) < total and time.monotonic() < deadline:
                time.sleep(_POLL_S)
            elapsed = time.monotonic() - started
            if recorded_messages(ledger, ends) < total:
                raise RuntimeError("the consumer processes did not record every message within 600 s")
            if first >= total:
                say("  every message was recorded in the first batches: timed from the processes' start")
                first, elapsed = 0, time.monotonic() - spawned
            rss = max(_peak_rss_mb(child.pid) for child in children)
        finally:
            for child in children:
                child.send_signal(signal.SIGTERM)
            for child in children:
                child.wait(timeout=60)
    return (total - first) / elapsed, rss


def run(events: int, processes: int = 2) -> dict[str, Any]:
    # The collector as `kiroku consume` sets it, for the ceiling as for kiroku.
    tune_gc_for_batches()
    contract = Contract.load()
    with TansuBroker() as broker:
        create_topics(broker.bootstrap_servers)
        say(f"publishing {events} synthetic messages (not timed)")
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all", linger_ms=20)
        for message in Traffic(contract, seed=7).messages(events):
            producer.send(message.topic, key=message.key, value=message.value)
        producer.flush()
        producer.close()
        # A plain consumer reading and decoding every message: before kiroku, between its
        # two phases and after them (one pass takes about a second at 20,000 messages).
        top = Ceiling(3, lambda: ceiling(broker.bootstrap_servers, events, contract), "messages")
        top.time()
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
        top.time()
        say(f"kiroku in {processes} processes (kiroku consume, one consumer group), into a fresh store")
        group_rate, group_rss = in_processes(broker.bootstrap_servers, processes)
        say(f"  {group_rate:,.0f} messages/s")
        top.time()
    return {
        "bench": "ingest",
        "events": events,
        **top.figures(),
        "kiroku_per_s": round(kiroku_rate, 1),
        "ratio": round(kiroku_rate / top.rate, 3),
        "peak_rss_mb": peak_rss_mb(),
        "processes": processes,
        "processes_per_s": round(group_rate, 1),
        "processes_ratio": round(group_rate / top.rate, 3),
        "processes_peak_rss_mb_each": group_rss,
    }


def main(events: int, processes: int = 2) -> None:
    result_line(run(events, processes))
