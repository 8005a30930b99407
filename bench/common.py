"""What the benchmarks share: a fresh PostgreSQL schema, a broker, seeding, memory, the JSON line."""

from __future__ import annotations

import base64
import json
import os
import resource
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg import sql

from consumers.contract import Contract
from consumers.ingest import Ingest, IngestSettings
from consumers.synthetic import Traffic
from consumers.translate import Position, apply, prefetch
from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.persistence.recorders import KirokuPostgresRecorder
from kiroku.policy_text import publish_current_policy
from kiroku.settings import Settings

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def result_line(figures: dict[str, Any]) -> None:
    """The benchmark's last line on standard output: one JSON object."""
    print(json.dumps(figures), flush=True)


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


class Ceiling:
    """A benchmark's ceiling, timed in several passes spread over the run; the fastest is the ceiling.

    The machine's speed drifts within a run (ingest passes minutes apart differed
    by up to half), and a single slow pass would flatter kiroku's ratio; the
    fastest pass is the conservative ceiling.
    """

    def __init__(self, passes: int, measure: Callable[[], float], unit: str) -> None:
        self.passes = passes
        self.measure = measure
        self.unit = unit
        self.rates: list[float] = []

    def time(self) -> None:
        """One more pass (``measure`` returns its rate)."""
        say(f"ceiling, pass {len(self.rates) + 1} of {self.passes}")
        self.rates.append(self.measure())
        say(f"  {self.rates[-1]:,.0f} {self.unit}/s")

    @property
    def rate(self) -> float:
        assert len(self.rates) == self.passes, "every pass timed"
        return max(self.rates)

    def figures(self) -> dict[str, Any]:
        return {
            "ceiling_per_s": round(self.rate, 1),
            "ceiling_passes_per_s": [round(rate, 1) for rate in self.rates],
        }


@contextmanager
def fresh_ledger(env: dict[str, str] | None = None) -> Iterator[Ledger]:
    """A ledger on PostgreSQL (DATABASE_URL or the local test database) in a schema of its own.

    ``env``, if given, is filled with the settings, so another process can open the same store.
    """
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    schema = f"kiroku_bench_{uuid.uuid4().hex[:10]}"
    settings = {
        "DATABASE_URL": f"{url}{'&' if '?' in url else '?'}schema={schema}",
        "KIROKU_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KIROKU_PSEUDONYM_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    if env is not None:
        env.update(settings)
    ledger = build_ledger(Settings.from_env(settings))
    try:
        publish_current_policy(ledger, actor="bench")
        yield ledger
    finally:
        ledger.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def seed(ledger: Ledger, events: int, seed_value: int = 1, batch: int = 1000) -> int:
    """Applies synthetic upstream messages in batches (no broker) until the store holds ``events`` events."""
    contract = Contract.load()
    traffic = Traffic(contract, seed=seed_value)
    messages = traffic.messages(10**9)
    offset = 0
    started = time.monotonic()
    while (ledger.recorder.max_notification_id() or 0) < events:
        chunk = [next(messages) for _ in range(batch)]
        decoded = [contract.decode(message.value) for message in chunk]
        with ledger.batch() as pending:
            prefetch(ledger, decoded)
            for message, content in zip(chunk, decoded, strict=True):
                apply(ledger, content, Position(message.topic, 0, offset), message.topic.split(".", 1)[0])
                offset += 1
            pending.commit()
        say(f"  seeded {ledger.recorder.max_notification_id()} events ({time.monotonic() - started:.0f} s)")
    return ledger.recorder.max_notification_id() or 0


def settle(ledger: Ledger) -> None:
    """VACUUM and ANALYZE the store's tables, as a database in steady state has them (not timed).

    Right after a bulk load, autovacuum would otherwise start in the middle of
    a measurement, and the planner would have no statistics yet.
    """
    recorder = ledger.recorder
    if not isinstance(recorder, KirokuPostgresRecorder):
        return
    schema = recorder.datastore.schema
    url = os.environ.get("DATABASE_URL") or DEFAULT_URL
    with psycopg.connect(url, autocommit=True) as conn:
        tables = conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s", (schema,)).fetchall()
        for (table,) in tables:
            conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, table)))


def ingest_settings(bootstrap: str) -> IngestSettings:
    return IngestSettings(
        bootstrap_servers=bootstrap,
        group_id=f"bench-{uuid.uuid4().hex[:8]}",
        session_timeout_ms=6000,
        heartbeat_interval_ms=600,
    )


__all__ = ["Ingest", "fresh_ledger", "ingest_settings", "peak_rss_mb", "result_line", "say", "seed", "settle"]
