"""``kiroku run --demo`` from nothing: the embedded store and broker, demo traffic, the API answers."""

from __future__ import annotations

import base64
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from api.auth import TokenRegistry
from kiroku.bootstrap import build_ledger
from kiroku.broker import free_port
from kiroku.settings import Settings
from projections.service import Projections
from tests.helpers import ROOT, publish_policy
from tests.integration.kafka_support import wait_for


def embedded_env(tmp_path: Path, port: int) -> dict[str, str]:
    """This environment without a database or broker set (the embedded default), data under tmp_path."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"DATABASE_URL", "KIROKU_DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS"}
    }
    env.update({"KIROKU_DATA_DIR": str(tmp_path / "data"), "KIROKU_HTTP_PORT": str(port)})
    return env


def test_the_service_comes_up_with_demo_traffic_and_the_api_answers(tmp_path: Path) -> None:
    port = free_port()
    env = embedded_env(tmp_path, port)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kiroku.cli", "run", "--demo"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        token = None
        while time.monotonic() < deadline:
            found = re.search(r"demo token \(role officer\), shown once: (\S+)", log.read_text())
            if found:
                token = found.group(1)
                try:
                    if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
            time.sleep(0.3)
        assert token is not None, log.read_text()[-3000:]
        headers = {"Authorization": f"Bearer {token}"}

        def ingested() -> float:
            text = httpx.get(f"{base}/metrics", timeout=5).text
            match = re.search(r'kiroku_ingest_messages_total\{outcome="recorded"\} (\d+)', text)
            return float(match.group(1)) if match else 0.0

        while time.monotonic() < deadline + 60 and ingested() < 20:
            time.sleep(0.5)
        assert ingested() >= 20, "demo traffic flows in"
        metrics = httpx.get(f"{base}/metrics", timeout=5).text
        assert "\nkiroku_ingest_partitions_stopped 0\n" in metrics
        assert "\nkiroku_ingest_broker_silent 0\n" in metrics, log.read_text()[-3000:]
        assert httpx.get(f"{base}/ready", timeout=5).status_code == 200
        collected: list[object] = []
        while time.monotonic() < deadline + 90 and not collected:
            audit = httpx.get(
                f"{base}/audit",
                params={"event_type": "CertificateRecord.Collected"},
                headers=headers,
                timeout=5,
            )
            assert audit.status_code == 200
            collected = audit.json()["items"]
            time.sleep(0.3)
        assert collected, "the views follow the ingested traffic"
        assert httpx.get(f"{base}/audit", timeout=5).status_code == 401
        ledger = httpx.get(f"{base}/provisions", headers=headers, timeout=5)
        assert ledger.status_code == 200
        lookup = httpx.get(
            f"{base}/subjects", params={"email": "secret.person@example.jp"}, headers=headers, timeout=5
        )
        assert lookup.status_code == 200
        time.sleep(0.5)
        logged = log.read_text()
        assert "GET /subjects 200" in logged, "requests are logged"
        assert "secret.person" not in logged, "a looked-up e-mail address never reaches the log"
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=90)
    assert code == 0, log.read_text()[-3000:]


def test_the_api_alone_serves_from_several_workers_and_stops_on_sigterm(
    tmp_path: Path, postgres_url: str, postgres_schema: str
) -> None:
    """``kiroku api --workers 2``: the views another process keeps, read through two worker processes."""
    keys = {
        "KIROKU_MASTER_KEY": base64.b64encode(os.urandom(32)).decode(),
        "KIROKU_PSEUDONYM_KEY": base64.b64encode(os.urandom(32)).decode(),
    }
    settings = {
        **keys,
        "DATABASE_URL": f"{postgres_url}?schema={postgres_schema}",
        "KIROKU_TOKENS_FILE": str(tmp_path / "tokens.json"),
    }
    ledger = build_ledger(Settings.from_env(settings))
    publish_policy(ledger)
    Projections(ledger).catch_up()
    ledger.close()
    token = TokenRegistry.add(tmp_path / "tokens.json", "auditor-1", "auditor")
    port = free_port()
    env = {**os.environ, **settings, "KIROKU_HTTP_PORT": str(port)}
    log = tmp_path / "api.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "kiroku.cli", "api", "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert process.poll() is None, log.read_text()[-2000:]
            try:
                return httpx.get(f"{base}/health", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        wait_for(healthy, timeout=60, what="the API to answer /health")
        headers = {"Authorization": f"Bearer {token}"}
        pages = [
            httpx.get(f"{base}/audit", params={"limit": 5}, headers=headers, timeout=10) for _ in range(20)
        ]
        assert {p.status_code for p in pages} == {200}, log.read_text()[-2000:]
        assert pages[0].json()["items"][0]["event_type"] == "PolicyCatalogue.Published"
        assert httpx.get(f"{base}/audit", timeout=10).status_code == 401
        text = log.read_text()
        assert "2 worker processes" in text
        assert len(set(re.findall(r"Started server process \[(\d+)\]", text))) == 2, text[-2000:]
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    assert code == 0, log.read_text()[-2000:]


def test_ctrl_c_in_a_terminal_stops_the_demo_service_cleanly(tmp_path: Path) -> None:
    """``python3 dev.py run``, then Ctrl-C: SIGINT to every process of the foreground group at once.

    The embedded broker must outlive the consumer leaving its group, and dev.py
    must wait for kiroku rather than kill it: exit 0, no error, no traceback.
    """
    port = free_port()
    env = embedded_env(tmp_path, port)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        # A group of its own, as a terminal's foreground job has.
        process = subprocess.Popen(  # noqa: S603 - this checkout's dev.py
            [sys.executable, str(ROOT / "dev.py"), "run"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:

        def recorded() -> float:
            assert process.poll() is None, log.read_text()[-3000:]
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
            except httpx.TransportError:
                return 0.0
            match = re.search(r'kiroku_ingest_messages_total\{outcome="recorded"\} (\d+)', text)
            return float(match.group(1)) if match else 0.0

        wait_for(lambda: recorded() >= 5, timeout=90, what="demo traffic to be recorded")
    finally:
        os.killpg(process.pid, signal.SIGINT)
        code = process.wait(timeout=90)
    text = log.read_text()
    assert code == 0, text[-3000:]
    assert "SIGINT: stopping" in text
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    errors = [line for line in text.splitlines() if " ERROR " in line]
    assert errors == [], "\n".join(errors[:10])
