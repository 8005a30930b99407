"""``kiroku consume`` as a process: killed at random points, stopped by signal."""

from __future__ import annotations

import base64
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from consumers.contract import Contract
from consumers.lag import end_offsets, recorded_messages
from consumers.synthetic import Traffic
from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from tests.helpers import publish_policy
from tests.integration.kafka_support import (
    caught_up,
    handled,
    publish,
    receipts,
    running,
    settings_for,
    stored_events,
    wait_for,
)


def kill_mid_ingest(
    ledger: Ledger, ends: dict[str, int], chance: random.Random, kill: Callable[[], None]
) -> bool:
    """Kills (calls ``kill``) once a random share of what is left is recorded; False if it caught up first.

    By progress, not by time: ingest is fast enough that a kill after a fixed
    pause would often come after the end.
    """
    total = sum(ends.values())
    start = recorded_messages(ledger, ends)
    target = start + max(1, int((total - start) * chance.uniform(0.1, 0.3)))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if caught_up(ledger, ends):
            return False
        if recorded_messages(ledger, ends) >= target:
            break
        time.sleep(0.02)
    kill()
    return True


class ConsumeProcess:
    """``kiroku consume`` in a child process, its log in a file."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "kiroku.cli",
                    "consume",
                    "--session-timeout-ms",
                    "6000",
                    "--batch",
                    "1000",
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait(timeout=30)

    def terminate(self, timeout: float = 60) -> int:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def consume_env(kafka: str, postgres_url: str, postgres_schema: str) -> dict[str, str]:
    keys = {
        "KIROKU_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KIROKU_PSEUDONYM_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    return {
        **os.environ,
        **keys,
        "DATABASE_URL": f"{postgres_url}?schema={postgres_schema}",
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "KIROKU_GROUP_ID": f"chaos-{os.urandom(4).hex()}",
    }


def ledger_for(env: dict[str, str]) -> Ledger:
    return build_ledger(Settings.from_env(env))


@pytest.mark.slow
def test_a_consumer_killed_at_random_points_records_every_message_once(
    kafka: str, consume_env: dict[str, str], tmp_path: Path, postgres_url: str
) -> None:
    ledger = ledger_for(consume_env)
    publish_policy(ledger)
    messages = list(Traffic(Contract.load(), seed=21).messages(20_000))
    publish(kafka, messages)
    ends = end_offsets(kafka)
    process = ConsumeProcess(consume_env, tmp_path / "consume.log")
    chance = random.Random(2026)
    kills = 0
    for _ in range(5):
        process.start()
        if not kill_mid_ingest(ledger, ends, chance, process.kill):
            break
        kills += 1
    if process.process is None or process.process.poll() is not None:
        process.start()
    wait_for(lambda: caught_up(ledger, ends), timeout=600, what="the restarted consumer to catch up")
    assert process.terminate() == 0
    assert kills >= 3, "the consumer should have been killed mid-ingest several times"

    recorded = receipts(ledger)
    assert len(recorded) == len(messages), "every message's effect recorded"
    assert len(set(recorded)) == len(recorded), "no message's effect recorded twice"

    # The same messages ingested once, cleanly, into a fresh store give the same events.
    clean_schema = f"{consume_env['KIROKU_GROUP_ID'].replace('-', '_')}_clean"
    # The same keys, so that the pseudonymous subject ids (and the aggregates they name) agree.
    keys = {name: consume_env[name] for name in ("KIROKU_MASTER_KEY", "KIROKU_PSEUDONYM_KEY")}
    clean = build_ledger(Settings.from_env({"DATABASE_URL": f"{postgres_url}?schema={clean_schema}", **keys}))
    try:
        publish_policy(clean)
        with running(clean, settings_for(kafka)) as ingest:
            wait_for(lambda: handled(ingest.counters) >= len(messages), timeout=600, what="the clean run")
        survived, once = stored_events(ledger), stored_events(clean)
        assert sum(survived.values()) == sum(once.values()), "as many events as a clean run"
        assert survived == once, "the same events (aggregate, version, type) as a clean run"
    finally:
        clean.close()
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(clean_schema)))
        ledger.close()


def test_sigterm_finishes_the_batch_leaves_the_group_and_exits_0(
    kafka: str, consume_env: dict[str, str], tmp_path: Path
) -> None:
    ledger = ledger_for(consume_env)
    publish_policy(ledger)
    messages = list(Traffic(Contract.load(), seed=22).messages(3000))
    publish(kafka, messages)
    process = ConsumeProcess(consume_env, tmp_path / "consume.log")
    process.start()
    wait_for(lambda: ledger.tracked_position("registrar.events:0") is not None, what="the first batch")
    assert process.terminate(timeout=30) == 0
    log = (tmp_path / "consume.log").read_text()
    assert "SIGTERM: finishing the current batch, then leaving the group" in log
    assert "stopped:" in log
    # It left the group: a new member gets every partition at once, without waiting
    # for the old member's session to time out, and finishes the rest exactly once.
    ends = end_offsets(kafka)
    started = time.monotonic()
    with running(ledger, settings_for(kafka, group=consume_env["KIROKU_GROUP_ID"])) as ingest:
        wait_for(lambda: len(ingest.next_offset) == 6, what="the assignment")
        assigned_after = time.monotonic() - started
        wait_for(lambda: caught_up(ledger, ends), what="the rest")
    assert assigned_after < 6.0, f"the group waited {assigned_after:.1f}s for the stopped member"
    recorded = receipts(ledger)
    assert len(recorded) == len(set(recorded)) == len(messages)
    ledger.close()
