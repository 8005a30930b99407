"""``kiroku run`` (ingest, views and API in one process) killed under load and restarted."""

from __future__ import annotations

import base64
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.auth import TokenRegistry
from consumers.contract import Contract
from consumers.lag import end_offsets
from consumers.synthetic import Traffic
from kiroku.bootstrap import build_ledger
from kiroku.broker import free_port
from kiroku.settings import Settings
from projections.service import Projections
from projections.sql import Writer
from tests.helpers import publish_policy
from tests.integration.kafka_support import caught_up, publish, receipts
from tests.integration.test_ingest_faults import kill_mid_ingest


def rows(projections: Projections, name: str, generation_number: int) -> dict[str, list[dict[str, Any]]]:
    view = projections.views[name]
    with projections.store.reading() as cursor:
        writer = Writer(
            cursor, projections.store.dialect, projections.store.table_names(view, generation_number)
        )
        return {t.name: writer.select(t.name, {}, order_by=", ".join(t.primary_key)) for t in view.tables}


@pytest.mark.slow
def test_the_service_killed_under_load_serves_again_and_its_views_equal_a_rebuild(
    kafka: str, postgres_url: str, postgres_schema: str, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"{postgres_url}?schema={postgres_schema}",
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "KIROKU_GROUP_ID": f"svc-{os.urandom(3).hex()}",
        "KIROKU_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KIROKU_PSEUDONYM_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KIROKU_HTTP_PORT": str(port),
        "KIROKU_DATA_DIR": str(tmp_path),
    }
    ledger = build_ledger(Settings.from_env(env))
    publish_policy(ledger)
    token = TokenRegistry.add(tmp_path / "tokens.json", "load", "officer")
    messages = list(Traffic(Contract.load(), seed=71).messages(6000))
    publish(kafka, messages)
    ends = end_offsets(kafka)
    base, headers = f"http://127.0.0.1:{port}", {"Authorization": f"Bearer {token}"}
    stop_load = threading.Event()
    served: list[int] = []

    def load() -> None:
        while not stop_load.is_set():
            with contextlib.suppress(httpx.TransportError):  # down between a kill and the restart
                served.append(
                    httpx.get(f"{base}/audit", params={"limit": 20}, headers=headers, timeout=2).status_code
                )
            time.sleep(0.05)

    log = (tmp_path / "run.log").open("ab")
    command = [sys.executable, "-m", "kiroku.cli", "run"]
    loader = threading.Thread(target=load, daemon=True)
    loader.start()
    chance = random.Random(9)
    kills = 0
    try:
        for _ in range(2):
            process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
            # Killed part-way through ingest (by progress: a fixed pause could come after the end).
            if kill_mid_ingest(ledger, ends, chance, process.kill):
                kills += 1
                process.wait(30)
            else:
                process.send_signal(signal.SIGTERM)
                process.wait(60)
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        projections = Projections(ledger)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not (
            caught_up(ledger, ends) and all(s.state == "active" and s.lag == 0 for s in projections.status())
        ):
            time.sleep(0.5)
        assert httpx.get(f"{base}/ready", timeout=5).status_code == 200, "the API serves again"
        process.send_signal(signal.SIGTERM)
        assert process.wait(60) == 0
    finally:
        stop_load.set()
        loader.join(10)
    assert kills == 2, "killed twice mid-ingest"
    # 503 (the view not built yet) is right only before the audit trail was first built; a kill
    # after that leaves its generation active, so a restarted process serves it at once.
    assert 200 in served, "the API served the audit trail"
    first = served.index(200)
    assert set(served[:first]) <= {503}, f"before the first build: {sorted(set(served[:first]))}"
    assert all(code < 500 for code in served[first:]), "no server error once the view was built"
    recorded = receipts(ledger)
    assert len(recorded) == len(set(recorded)) == len(messages), "every message once, across two kills"
    for name in projections.views:
        active = projections.store.active(name)
        assert active is not None
        survived = rows(projections, name, active.generation)
        rebuilt = projections.rebuild(name)
        assert rows(projections, name, rebuilt.generation) == survived, (
            f"view {name} differs from its rebuild"
        )
    ledger.close()
