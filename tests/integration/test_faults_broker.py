"""Ingest when the broker fails: unreachable at start, and gone for a while mid-run."""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time

import pytest

from consumers.contract import Contract
from consumers.ingest import Ingest
from consumers.synthetic import Traffic
from domain.application import Ledger
from kiroku.broker import TansuBroker
from tests.integration.kafka_support import handled, publish, receipts, settings_for, wait_for
from tests.integration.proxy import Proxy


@pytest.mark.slow
def test_the_broker_unreachable_at_start_then_gone_mid_run(
    broker_behind_proxy: tuple[str, Proxy], pg_ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    bootstrap, proxy = broker_behind_proxy
    messages = list(Traffic(Contract.load(), seed=41).messages(2000))
    publish(bootstrap, messages)
    caplog.set_level(logging.WARNING)
    proxy.cut()  # unreachable when the consumer starts
    ingest = Ingest(pg_ledger, settings_for(bootstrap))
    worker = threading.Thread(target=ingest.run, daemon=True)
    worker.start()
    try:
        time.sleep(8)  # longer than the session timeout (6 s)
        assert handled(ingest.counters) == 0
        told = [r.getMessage() for r in caplog.records if r.name == "kiroku.ingest"]
        assert any(m.startswith(f"waiting for the broker at {bootstrap}") for m in told), told
        assert ingest.counters.broker_silent == 1
        proxy.restore()
        wait_for(lambda: handled(ingest.counters) >= 300, what="ingest after the broker came back")
        assert any("answers again" in r.getMessage() for r in caplog.records if r.name == "kiroku.ingest")
        assert ingest.counters.broker_silent == 0
        proxy.outage(6)  # gone for a while mid-run
        wait_for(lambda: handled(ingest.counters) >= len(messages), timeout=300, what="the rest")
    finally:
        ingest.stop()
        worker.join(60)
    assert not worker.is_alive()
    recorded = receipts(pg_ledger)
    assert len(recorded) == len(set(recorded)) == len(messages)


def test_the_embedded_broker_ignores_ctrl_c_and_stops_when_told() -> None:
    """A terminal's Ctrl-C reaches the broker too: it must leave the stopping to ``kiroku run``."""
    broker = TansuBroker().start()
    try:
        assert broker.process is not None
        broker.process.send_signal(signal.SIGINT)
        time.sleep(1.0)
        assert broker.process.poll() is None, "the broker stopped on SIGINT"
        socket.create_connection(("127.0.0.1", broker.port), timeout=2).close()
        # The signal mask of the thread that started it is as it was.
        assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
        process = broker.process
    finally:
        broker.stop()
    assert process.poll() is not None
