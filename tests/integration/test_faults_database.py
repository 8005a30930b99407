"""Ingest when PostgreSQL fails: connections terminated mid-ingest, and the server unreachable for a while."""

from __future__ import annotations

import logging
import time

import psycopg
import pytest

from consumers.contract import Contract
from consumers.synthetic import Traffic
from domain.application import Ledger
from tests.integration.kafka_support import handled, publish, receipts, running, settings_for, wait_for
from tests.integration.proxy import Proxy


@pytest.mark.slow
def test_connections_terminated_mid_ingest_lose_and_double_nothing(
    kafka: str, proxied: tuple[Ledger, Proxy], postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    ledger, proxy = proxied
    messages = list(Traffic(Contract.load(), seed=31).messages(3000))
    publish(kafka, messages)
    caplog.set_level(logging.WARNING, logger="kiroku.ingest")
    with running(ledger, settings_for(kafka)) as ingest:
        terminated = 0
        for threshold in (300, 1200, 2100):

            def reached(goal: int = threshold) -> bool:
                return handled(ingest.counters) >= goal

            wait_for(reached, what=f"{threshold} messages")
            with psycopg.connect(postgres_url, autocommit=True) as admin:
                for port in proxy.upstream_ports():
                    row = admin.execute(
                        "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
                        "WHERE client_port = %s AND pid <> pg_backend_pid()",
                        (port,),
                    ).fetchone()
                    terminated += row[0] if row else 0
        wait_for(lambda: handled(ingest.counters) >= len(messages), timeout=300, what="every message")
    assert terminated >= 3, "connections were terminated mid-ingest"
    recorded = receipts(ledger)
    assert len(recorded) == len(set(recorded)) == len(messages)
    assert ingest.counters.dead_letters == 0


@pytest.mark.slow
def test_postgres_unreachable_for_a_while_the_consumer_waits_says_so_and_catches_up(
    kafka: str, proxied: tuple[Ledger, Proxy], caplog: pytest.LogCaptureFixture
) -> None:
    ledger, proxy = proxied
    messages = list(Traffic(Contract.load(), seed=32).messages(2000))
    caplog.set_level(logging.WARNING, logger="kiroku.ingest")
    with running(ledger, settings_for(kafka)) as ingest:
        publish(kafka, messages[:100])
        wait_for(lambda: handled(ingest.counters) >= 100, what="the first messages")
        proxy.cut()
        publish(kafka, messages[100:])
        time.sleep(8)
        assert handled(ingest.counters) == 100, "nothing is recorded while the database is away"
        waiting = [r.getMessage() for r in caplog.records if "waiting for the event store" in r.getMessage()]
        assert waiting, "the consumer says what it is waiting for"
        proxy.restore()
        wait_for(lambda: handled(ingest.counters) >= len(messages), timeout=300, what="the catch-up")
    recorded = receipts(ledger)
    assert len(recorded) == len(set(recorded)) == len(messages)
