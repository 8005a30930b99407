"""``python -m bench query --events N``: API latency from concurrent clients, views caught up."""

from __future__ import annotations

import random
import statistics
import threading
import time
import uuid
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx
import uvicorn

from api.app import create_app
from api.auth import TokenRegistry
from bench.common import fresh_ledger, result_line, say, seed
from consumers.contract import Contract
from consumers.synthetic import Traffic
from domain.application import Ledger
from domain.cause import Cause
from domain.identity import SubjectKey
from kiroku.broker import free_port
from projections.service import Projections

KINDS = ["lookup", "subject", "certificate", "audit", "package"]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0.0


@dataclass
class Targets:
    """What the clients ask about: people, subjects, certificates, verified disclosures."""

    people: list[str]
    subject_ids: list[str]
    records: list[str]
    disclosures: list[str]


def targets(ledger: Ledger, projections: Projections, messages: int, packages: int) -> Targets:
    contract = Contract.load()
    people = [
        contract.decode(m.value).record["applicant"]["email"]
        for m in Traffic(contract, seed=1).messages(messages)
        if m.type_name.endswith("ApplicationSubmitted")
    ]
    # Only people the seeded part of the traffic reached.
    people = [e for e in people if projections.subjects_by("email", e)][:500]
    subject_ids = [str(ledger.subject_id(SubjectKey.email(e))) for e in people]
    collected = projections.audit_page(limit=500, event_type="CertificateRecord.Collected")
    disclosures = []
    for subject_id in subject_ids[:packages]:
        cause = Cause(actor="bench", source_system="bench", occurred_at=ledger.clock())
        request_id = ledger.open_disclosure(uuid.UUID(subject_id), requested_format="json", cause=cause).id
        assert request_id is not None
        ledger.request_identity_verification(request_id, method="documents", cause=cause)
        ledger.record_identity_verified(request_id, evidence_ref="bench", cause=cause)
        disclosures.append(str(request_id))
    return Targets(people, subject_ids, [r["certificate_record_id"] for r in collected], disclosures)


def ask(
    http: httpx.Client, kind: str, chance: random.Random, to: Targets, pending: list[str]
) -> httpx.Response | None:
    if kind == "lookup":
        return http.get("/subjects", params={"email": chance.choice(to.people)})
    if kind == "subject":
        return http.get(f"/subjects/{chance.choice(to.subject_ids)}")
    if kind == "certificate":
        return http.get(f"/certificates/{chance.choice(to.records)}")
    if kind == "audit":
        return http.get("/audit", params={"limit": 100})
    return http.post(f"/disclosures/{pending.pop()}/fulfilment") if pending else None


def summary(timings: dict[str, list[float]], errors: dict[str, int]) -> dict[str, Any]:
    everything = [t for values in timings.values() for t in values]
    per_endpoint = {
        kind: {
            "requests": len(v),
            "p50_ms": round(percentile(v, 0.5), 2),
            "p95_ms": round(percentile(v, 0.95), 2),
            "p99_ms": round(percentile(v, 0.99), 2),
            "errors": errors[kind],
        }
        for kind, v in sorted(timings.items())
    }
    for kind, figures in per_endpoint.items():
        say(f"  {kind:<12} {figures}")
    return {
        "p50_ms": round(percentile(everything, 0.5), 2),
        "p95_ms": round(percentile(everything, 0.95), 2),
        "p99_ms": round(percentile(everything, 0.99), 2),
        "mean_ms": round(statistics.fmean(everything), 2) if everything else 0.0,
        "errors": sum(errors.values()),
        "per_endpoint": per_endpoint,
    }


def load(base: str, token: str, to: Targets, clients: int, requests_per_client: int) -> dict[str, Any]:
    timings: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    lock = threading.Lock()

    def client(number: int) -> None:
        chance = random.Random(number)  # noqa: S311 - load, not secrets
        pending = [d for i, d in enumerate(to.disclosures) if i % clients == number]
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http:
            for _ in range(requests_per_client):
                kind = chance.choice(KINDS)
                started = time.perf_counter()
                response = ask(http, kind, chance, to, pending)
                if response is None:
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                with lock:
                    timings[kind].append(elapsed)
                    if response.status_code >= 400:
                        errors[kind] += 1

    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(client, range(clients)))
    return summary(timings, errors)


def run(events: int, clients: int = 8, requests_per_client: int = 100) -> dict[str, Any]:
    with fresh_ledger() as ledger, TemporaryDirectory() as tmp:
        say(f"seeding at least {events} events and building the views (not timed)")
        seed(ledger, events)
        projections = Projections(ledger, page_size=5000)
        projections.catch_up()
        token = TokenRegistry.add(Path(tmp) / "tokens.json", "bench", "officer")
        app = create_app(ledger, projections, TokenRegistry.load(Path(tmp) / "tokens.json"))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        to = targets(ledger, projections, events // 3, packages=clients * 5)
        say(f"{len(to.subject_ids)} subjects, {len(to.records)} certificates, {len(to.disclosures)} packages")
        figures = load(f"http://127.0.0.1:{port}", token, to, clients, requests_per_client)
        server.should_exit = True
        thread.join(timeout=10)
    return {"bench": "query", "events": events, "clients": clients, **figures}


def main(events: int) -> None:
    result_line(run(events))
