"""``kiroku run``: consumers, projection runners and the HTTP API in one process.

With no configuration it runs on the embedded default: SQLite in ``.kiroku``,
and an in-memory Tansu broker it starts itself. ``--demo`` also publishes
synthetic upstream traffic and prints a token to try the API with. With
``DATABASE_URL`` and ``KAFKA_BOOTSTRAP_SERVERS`` it runs against PostgreSQL
and Kafka. SIGTERM or Ctrl-C stops the API, lets ingest finish its batch and
leave the group, stops the views, and exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from types import FrameType

import uvicorn
from kafka import KafkaProducer

from api.app import create_app
from api.auth import TokenRegistry
from consumers.contract import Contract
from consumers.ingest import Ingest, IngestSettings
from consumers.synthetic import Traffic
from consumers.topics import create_topics
from kiroku.bootstrap import build_ledger
from kiroku.broker import TansuBroker
from kiroku.policy_text import publish_current_policy
from kiroku.settings import Settings
from projections.service import PRUNE_EVERY_S, Projections

log = logging.getLogger("kiroku")


class DemoTraffic:
    """Publishes synthetic stories at a gentle pace until stopped."""

    def __init__(self, bootstrap: str, rate_per_s: float = 20.0) -> None:
        self.bootstrap, self.rate = bootstrap, rate_per_s
        self.stop_event = threading.Event()
        self.published = 0

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all", enable_idempotence=True)
        traffic = Traffic(Contract.load(), seed=random.randrange(2**31), start=datetime.now(UTC))  # noqa: S311
        try:
            for message in traffic.messages(10**9):
                if self.stop_event.wait(1.0 / self.rate):
                    break
                producer.send(message.topic, key=message.key, value=message.value)
                self.published += 1
        finally:
            producer.close(timeout=10)


class _Server(uvicorn.Server):
    """Uvicorn, with kiroku handling the signals: stop serving, then shut the rest down, exit 0.

    (Uvicorn would re-raise the signal after its own shutdown, killing the process
    before ingest and the views are stopped.)
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("%s: stopping", signal.Signals(signum).name)
            self.should_exit = True

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def run_service(settings: Settings, *, demo: bool) -> int:
    broker: TansuBroker | None = None
    bootstrap = settings.kafka_bootstrap_servers
    prefix, group = settings.stream_prefix, settings.group_id
    if bootstrap is None:
        broker = TansuBroker().start()
        bootstrap = broker.bootstrap_servers
        # The embedded broker starts empty every time: positions of an earlier one do not apply.
        prefix = f"embedded-{uuid.uuid4().hex[:8]}:"
        group = f"{settings.group_id}-{prefix.rstrip(':')}"
        log.info("embedded broker (Tansu, in memory) on %s", bootstrap)
    create_topics(bootstrap)
    ledger = build_ledger(settings)
    if demo and not ledger.policy_versions():
        publish_current_policy(ledger, actor="kiroku-demo")
    if not ledger.policy_versions():
        log.warning(
            "no policy version is published: every collection will be refused (§12); see `kiroku policy init`"
        )
    tokens = TokenRegistry.load(settings.tokens_file)
    if demo:
        token = TokenRegistry.add(settings.tokens_file, f"demo-{uuid.uuid4().hex[:6]}", "officer")
        tokens = TokenRegistry.load(settings.tokens_file)
        print(f"demo token (role officer), shown once: {token}", flush=True)
    projections = Projections(ledger, poll_interval=0.5)
    ingest = Ingest(
        ledger,
        IngestSettings(
            bootstrap_servers=bootstrap, group_id=group, stream_prefix=prefix, session_timeout_ms=10_000
        ),
    )
    workers = [
        threading.Thread(target=projections.run, kwargs={"prune_every": PRUNE_EVERY_S}, name="views"),
        threading.Thread(target=ingest.run, name="ingest"),
    ]
    traffic = DemoTraffic(bootstrap) if demo else None
    if traffic is not None:
        workers.append(threading.Thread(target=traffic.run, name="demo-traffic"))
    for worker in workers:
        worker.start()
    app = create_app(ledger, projections, tokens, ingest_counters=ingest.counters)
    server = _Server(
        uvicorn.Config(
            app, host=settings.http_host, port=settings.http_port, log_level="info", access_log=False
        )
    )
    print(f"kiroku: API on http://{settings.http_host}:{settings.http_port} (OpenAPI at /docs)", flush=True)
    try:
        server.run()  # returns on SIGTERM or SIGINT
    finally:
        log.info("stopping: demo traffic, ingest (finishing its batch), views")
        if traffic is not None:
            traffic.stop_event.set()
        ingest.stop()
        projections.stop()
        for worker in workers:
            worker.join(timeout=60)
        ledger.close()
        if broker is not None:
            broker.stop()
    return 0
