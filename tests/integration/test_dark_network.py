"""PostgreSQL behind a network that goes dark: nothing is closed or refused, packets are simply lost.

Without keepalive probes and a bound on unacknowledged data, a statement sent
into the dark waits for ever (the kernel retransmits for about a quarter of
an hour, then longer) and an idle connection looks healthy: a consumer hangs
without a word. With them (``KIROKU_DATABASE_DEAD_AFTER``), a connection
fails within that many seconds and kiroku's usual handling of a lost database
follows.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

import pytest

from consumers.contract import Contract
from consumers.synthetic import Traffic
from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.persistence.recorders import KirokuPostgresRecorder
from kiroku.settings import Settings
from projections.service import Projections
from tests.conftest import postgres_environ
from tests.helpers import FakeClock, publish_policy
from tests.integration.conftest import DARK_DEAD_AFTER_S
from tests.integration.dark_network import DarkNetwork
from tests.integration.kafka_support import handled, publish, receipts, running, settings_for, wait_for
from tests.integration.test_faults_views import equal_to_a_rebuild, settled
from tests.integration.test_projections import play


def test_every_connection_kiroku_makes_gives_up_on_a_silent_server(
    postgres_url: str, postgres_schema: str
) -> None:
    environ = {**postgres_environ(postgres_url, postgres_schema), "KIROKU_DATABASE_DEAD_AFTER": "7"}
    ledger = build_ledger(Settings.from_env(environ))
    expected = {
        "keepalives": "1",
        "keepalives_idle": "2",
        "keepalives_interval": "1",
        "tcp_user_timeout": "7000",
    }
    try:
        recorder = ledger.recorder
        assert isinstance(recorder, KirokuPostgresRecorder)
        # The view runners' locks and notifications, and the tables' creation, connect with these.
        parameters = recorder.datastore.pool.kwargs
        assert isinstance(parameters, dict)
        assert {key: str(parameters[key]) for key in expected} == expected
        with recorder.datastore.get_connection() as conn:
            assert {key: conn.info.get_parameters().get(key) for key in expected} == expected

        async def of_async_connection() -> dict[str, str | None]:
            conn = await recorder.connect_async()
            async with conn:
                return {key: conn.info.get_parameters().get(key) for key in expected}

        assert asyncio.run(of_async_connection()) == expected
    finally:
        ledger.close()


#: Longer than the consumer's session (6 s in these tests), shorter than its requests' timeout (30 s).
DARK_BROKER_S = 20


def _outcome_within(seconds: float, read: Any) -> tuple[bool, BaseException | None, float]:
    """Runs ``read`` on a thread: whether it ended within ``seconds``, what it raised, how long it took."""
    outcome: list[BaseException | None] = []
    started = time.monotonic()

    def run() -> None:
        try:
            read()
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=seconds)
    return bool(outcome), (outcome[0] if outcome else None), time.monotonic() - started


@pytest.mark.slow
def test_a_statement_sent_into_the_dark_fails_within_bounds_and_the_store_serves_again(
    dark_environ: tuple[dict[str, str], DarkNetwork],
) -> None:
    environ, network = dark_environ
    ledger = build_ledger(Settings.from_env(environ))
    try:
        publish_policy(ledger)
        head = ledger.recorder.max_notification_id()
        network.dark()
        try:
            ended, raised, took = _outcome_within(120, ledger.recorder.max_notification_id)
        finally:
            network.light()
        assert ended, "the read still waited two minutes after the network went dark"
        assert raised is not None, "the read cannot have succeeded in the dark"
        assert took >= DARK_DEAD_AFTER_S
        ended, raised, _ = _outcome_within(60, ledger.recorder.max_notification_id)
        assert ended and raised is None, "the store serves again once the network is back"
        assert ledger.recorder.max_notification_id() == head
    finally:
        ledger.close()


@pytest.mark.slow
def test_ingest_in_the_dark_waits_says_so_and_catches_up_exactly_once(
    kafka: str, dark_environ: tuple[dict[str, str], DarkNetwork], caplog: pytest.LogCaptureFixture
) -> None:
    environ, network = dark_environ
    ledger = build_ledger(Settings.from_env(environ))
    messages = list(Traffic(Contract.load(), seed=33).messages(1500))
    caplog.set_level(logging.WARNING, logger="kiroku.ingest")
    try:
        publish_policy(ledger)
        with running(ledger, settings_for(kafka)) as ingest:
            publish(kafka, messages[:100])
            wait_for(lambda: handled(ingest.counters) >= 100, what="the first messages")
            network.dark()
            try:
                publish(kafka, messages[100:])

                def says_it_waits() -> bool:
                    return any("waiting for the event store" in r.getMessage() for r in caplog.records)

                wait_for(says_it_waits, timeout=90, what="the consumer to say it waits for the event store")
                in_the_dark = handled(ingest.counters)
                assert in_the_dark < len(messages), "the messages cannot all be recorded in the dark"
            finally:
                network.light()
            wait_for(lambda: handled(ingest.counters) >= len(messages), timeout=300, what="the catch-up")
        recorded = receipts(ledger)
        assert len(recorded) == len(set(recorded)) == len(messages)
        assert ingest.counters.dead_letters == 0
    finally:
        ledger.close()


@pytest.mark.slow
def test_ingest_from_a_broker_gone_dark_says_so_resumes_and_records_every_message_once(
    dark_broker: tuple[str, DarkNetwork], pg_ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, network = dark_broker
    messages = list(Traffic(Contract.load(), seed=34).messages(1500))
    caplog.set_level(logging.WARNING, logger="kiroku.ingest")
    publish(bootstrap, messages[:300])

    def told(words: str) -> bool:
        return any(words in r.getMessage() for r in caplog.records if r.name == "kiroku.ingest")

    def waits() -> int:
        return sum(
            "waiting for the broker" in r.getMessage() for r in caplog.records if r.name == "kiroku.ingest"
        )

    with running(pg_ledger, settings_for(bootstrap)) as ingest:
        ingest.broker_silence_report_s = 4.0
        wait_for(lambda: handled(ingest.counters) >= 300, what="the first messages")
        assert not waits() and ingest.counters.broker_silent == 0
        network.dark()
        try:
            wait_for(lambda: waits() > 0, timeout=DARK_BROKER_S, what="a word of it")
            assert told("no answer from its group coordinator in")
            assert ingest.counters.broker_silent == 1
            time.sleep(DARK_BROKER_S / 2)
            assert handled(ingest.counters) == 300, "nothing more was published"
            assert 2 <= waits() <= 4, "told again every 4 s while it lasts, not at every look"
        finally:
            network.light()
        wait_for(lambda: told("answers again"), timeout=120, what="the consumer to say the broker is back")
        assert ingest.counters.broker_silent == 0
        publish(bootstrap, messages[300:])
        wait_for(lambda: handled(ingest.counters) >= len(messages), timeout=300, what="the rest")
    recorded = receipts(pg_ledger)
    assert len(recorded) == len(set(recorded)) == len(messages)
    assert ingest.counters.dead_letters == 0


@pytest.mark.slow
def test_views_in_the_dark_wait_say_so_and_catch_up_equal_to_a_rebuild(
    dark_environ: tuple[dict[str, str], DarkNetwork],
    postgres_url: str,
    postgres_schema: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every connection the views hold (the pool's, each view's lock and its LISTEN) crosses the link."""
    environ, network = dark_environ
    straight = postgres_environ(postgres_url, postgres_schema)["DATABASE_URL"]  # not across the link
    direct = build_ledger(Settings.from_env({**environ, "DATABASE_URL": straight}), clock=clock)
    across = build_ledger(Settings.from_env(environ), clock=clock)
    caplog.set_level(logging.INFO, logger="kiroku.projections")
    projections = Projections(across, page_size=50, poll_interval=0.2, max_backoff_s=1.0)
    running = threading.Thread(target=projections.run, name="views")
    try:
        publish_policy(direct)
        play(direct, clock, seed=44, stories=2)
        running.start()
        caught_up = settled(direct, list(projections.views))
        wait_for(caught_up, 60, what="the first catch-up")
        network.dark()
        try:
            play(direct, clock, seed=45, stories=2)

            def all_wait() -> bool:
                told = [r.getMessage() for r in caplog.records]
                return all(any(f"waiting for the database to run view {n}" in m for m in told) for n in names)

            names = list(projections.views)
            wait_for(all_wait, 90, what="every view to say it waits for the database")
            assert not caught_up(), "nothing is applied in the dark"
        finally:
            network.light()
        wait_for(caught_up, 120, what="the catch-up")
        assert running.is_alive(), "the views are still being followed"
    finally:
        projections.stop()
        if running.is_alive():
            running.join(60)
        across.close()
    assert not running.is_alive()
    told = [r.getMessage() for r in caplog.records]
    for name in projections.views:
        assert any(f"view {name}: the database answers again" in m for m in told), name
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    try:
        equal_to_a_rebuild(projections, direct)
    finally:
        direct.close()
