"""The API under concurrent load while ingest runs: no server error, and every personal read audited."""

from __future__ import annotations

import random
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from fastapi.testclient import TestClient

from consumers.contract import Contract
from consumers.synthetic import Traffic
from domain.access import AccessRecord
from domain.application import Ledger
from projections.service import Projections
from tests.integration.api_support import TARO, Api
from tests.integration.kafka_support import handled, publish, running, settings_for, wait_for


def access_count(ledger: Ledger) -> int:
    return len(
        ledger.recorder.select_notifications(
            start=1, limit=1_000_000, topics=["domain.access:AccessRecord.Recorded"]
        )
    )


@pytest.mark.slow
def test_the_api_under_load_while_ingest_runs(kafka: str, api: Api) -> None:
    ledger: Ledger = api.ledger
    projections: Projections = api.projections
    messages = list(Traffic(Contract.load(), seed=61).messages(1500))
    views = threading.Thread(target=projections.run, daemon=True)
    views.start()
    statuses: list[int] = []
    personal_reads = 0
    lock = threading.Lock()
    client: TestClient = api.client
    officer = {"Authorization": f"Bearer {api.tokens['officer']}"}
    before = access_count(ledger)
    taro = str(ledger.subject_id(TARO))

    def load(number: int) -> None:
        nonlocal personal_reads
        chance = random.Random(number)
        for _ in range(40):
            kind = chance.choice(["subject", "lookup", "audit", "ledger", "requests"])
            if kind == "subject":
                response = client.get(f"/subjects/{taro}", headers=officer)
            elif kind == "lookup":
                response = client.get("/subjects", params={"email": "taro@example.jp"}, headers=officer)
            elif kind == "audit":
                response = client.get("/audit", params={"limit": 50}, headers=officer)
            elif kind == "ledger":
                response = client.get("/provisions", headers=officer)
            else:
                response = client.get("/disclosures", headers=officer)
            with lock:
                statuses.append(response.status_code)
                if kind in {"subject", "lookup"} and response.status_code == 200:
                    personal_reads += 1

    try:
        with running(ledger, settings_for(kafka)) as ingest:
            publish(kafka, messages)
            with ThreadPoolExecutor(max_workers=6) as pool:
                list(pool.map(load, range(6)))
            wait_for(lambda: handled(ingest.counters) >= len(messages), timeout=300, what="ingest")
    finally:
        projections.stop()
        views.join(30)
    assert statuses and all(status < 500 for status in statuses), sorted(set(statuses))
    assert personal_reads > 0
    assert access_count(ledger) - before == personal_reads, "every read of personal data was recorded"
    recorded = [
        e
        for e in (
            ledger.mapper.to_domain_event(n)
            for n in ledger.recorder.select_notifications(
                start=1, limit=1_000_000, topics=["domain.access:AccessRecord.Recorded"]
            )
        )
        if isinstance(e, AccessRecord.Recorded)
    ]
    assert all(r.cause.actor == "api:officer-1" for r in recorded)
