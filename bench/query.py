"""``python -m bench query --events N``: API latency from concurrent clients, views caught up."""

from __future__ import annotations

import asyncio
import gc
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import httpx

from api.auth import TokenRegistry
from bench.common import fresh_ledger, result_line, say, seed, settle
from bench.http_client import Connection, Reply
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


async def ask(
    http: Connection, kind: str, chance: random.Random, to: Targets, pending: list[str]
) -> Reply | None:
    if kind == "lookup":
        return await http.request("GET", "/subjects", {"email": chance.choice(to.people)})
    if kind == "subject":
        return await http.request("GET", f"/subjects/{chance.choice(to.subject_ids)}")
    if kind == "certificate":
        return await http.request("GET", f"/certificates/{chance.choice(to.records)}")
    if kind == "audit":
        return await http.request("GET", "/audit", {"limit": "100"})
    return await http.request("POST", f"/disclosures/{pending.pop()}/fulfilment") if pending else None


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


async def _client(
    http: Connection,
    number: int,
    *,
    clients: int,
    requests: int,
    to: Targets,
    timings: dict[str, list[float]],
    errors: dict[str, int],
) -> None:
    chance = random.Random(number)  # noqa: S311 - load, not secrets
    pending = [d for i, d in enumerate(to.disclosures) if i % clients == number]
    for _ in range(requests):
        kind = chance.choice(KINDS)
        started = time.perf_counter()
        response = await ask(http, kind, chance, to, pending)
        if response is None:
            continue
        timings[kind].append((time.perf_counter() - started) * 1000)
        if response.status >= 400:
            errors[kind] += 1


async def _load(port: int, token: str, to: Targets, clients: int, requests: int) -> dict[str, Any]:
    timings: dict[str, list[float]] = defaultdict(list)
    errors: dict[str, int] = defaultdict(int)
    headers = {"Authorization": f"Bearer {token}"}
    connections = [Connection("127.0.0.1", port, headers) for _ in range(clients)]
    # A short warm-up, not counted: the first requests open connections and prepare statements.
    warm: dict[str, list[float]] = defaultdict(list)
    await asyncio.gather(
        *(
            _client(c, 100 + n, clients=clients, requests=25, to=to, timings=warm, errors=defaultdict(int))
            for n, c in enumerate(connections)
        )
    )
    await asyncio.gather(
        *(
            _client(c, n, clients=clients, requests=requests, to=to, timings=timings, errors=errors)
            for n, c in enumerate(connections)
        )
    )
    for connection in connections:
        await connection.close()
    reconnects = sum(c.reconnects for c in connections)
    if reconnects:
        say(f"  the server closed a kept-alive connection {reconnects} time(s); those GETs were sent again")
    return {**summary(timings, errors), "reconnects": reconnects}


def _wait_until_up(base: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API process ended (exit {server.returncode}) before it served")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError("the API process did not come up within 60 s")


def run(events: int, clients: int = 8, requests_per_client: int = 100, workers: int = 2) -> dict[str, Any]:
    env: dict[str, str] = {}
    with fresh_ledger(env) as ledger, TemporaryDirectory() as tmp:
        say(f"seeding at least {events} events and building the views (not timed)")
        stored = seed(ledger, events)
        projections = Projections(ledger, page_size=5000)
        projections.rebuild_views()
        say("VACUUM ANALYZE (not timed)")
        settle(ledger)
        to = targets(ledger, projections, events // 3, packages=clients * 5)
        say(f"{len(to.subject_ids)} subjects, {len(to.records)} certificates, {len(to.disclosures)} packages")
        tokens = Path(tmp) / "tokens.json"
        token = TokenRegistry.add(tokens, "bench", "officer")
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # The API runs as `kiroku api` does in production, in processes of its own; the clients run here.
        server_log = Path(tmp) / "api.log"
        with server_log.open("wb") as out:
            server = subprocess.Popen(  # noqa: S603 - a fixed command of this repository
                [sys.executable, "-m", "kiroku.cli", "api", "--workers", str(workers)],
                env={**os.environ, **env, "KIROKU_TOKENS_FILE": str(tokens), "KIROKU_HTTP_PORT": str(port)},
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_until_up(base, server)
            # The clients share this process with what seeding left behind; frozen, the
            # collector does not walk it while latencies are measured.
            gc.collect()
            gc.freeze()
            say(f"{clients} clients, {requests_per_client} requests each, {workers} API worker processes")
            figures = asyncio.run(_load(port, token, to, clients, requests_per_client))
        except BaseException:
            say("the API's log ends:\n" + server_log.read_text(errors="replace")[-3000:])
            raise
        finally:
            server.send_signal(signal.SIGTERM)
            server.wait(timeout=30)
    return {
        "bench": "query",
        "events": events,
        "stored_events": stored,
        "clients": clients,
        "api_workers": workers,
        **figures,
    }


def main(events: int, clients: int = 8, requests: int = 100, workers: int = 2) -> None:
    result_line(run(events, clients, requests, workers))
