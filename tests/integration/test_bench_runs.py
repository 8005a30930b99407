"""The three benchmarks of issue 6 run as documented and end with their JSON line (small N: not figures)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from tests.helpers import ROOT


def bench_schemas(postgres_url: str) -> set[str]:
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        rows = connection.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'kiroku\\_bench\\_%'"
        ).fetchall()
    return {row[0] for row in rows}


def run_bench(postgres_url: str, *args: str) -> dict[str, Any]:
    """``python -m bench ARGS`` from the checkout; its last line on standard output, parsed."""
    before = bench_schemas(postgres_url)
    done = subprocess.run(  # noqa: S603 - this checkout's own benchmark, fixed arguments
        [sys.executable, "-m", "bench", *args],
        cwd=ROOT,
        env={**os.environ, "DATABASE_URL": postgres_url},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last = done.stdout.strip().splitlines()[-1]
    figures: dict[str, Any] = json.loads(last)
    assert bench_schemas(postgres_url) == before, "the benchmark's schema was left behind"
    return figures


def positive(figures: dict[str, Any], *keys: str) -> None:
    for key in keys:
        assert isinstance(figures[key], int | float) and figures[key] > 0, (key, figures[key])


def fastest_ceiling(figures: dict[str, Any], passes: int) -> None:
    """The ceiling is the fastest of its passes, each of them given."""
    rates = figures["ceiling_passes_per_s"]
    assert len(rates) == passes and all(isinstance(r, float) and r > 0 for r in rates), rates
    assert figures["ceiling_per_s"] == max(rates)


@pytest.mark.slow
def test_bench_ingest_prints_its_figures(postgres_url: str) -> None:
    figures = run_bench(postgres_url, "ingest", "--events", "400", "--processes", "2")
    assert figures["bench"] == "ingest"
    assert figures["events"] == 400
    assert figures["processes"] == 2
    positive(
        figures,
        "ceiling_per_s",
        "kiroku_per_s",
        "ratio",
        "peak_rss_mb",
        "processes_per_s",
        "processes_ratio",
        "processes_peak_rss_mb_each",
    )
    assert figures["ratio"] == round(figures["kiroku_per_s"] / figures["ceiling_per_s"], 3)
    fastest_ceiling(figures, passes=3)


@pytest.mark.slow
def test_bench_rebuild_prints_its_figures(postgres_url: str) -> None:
    figures = run_bench(postgres_url, "rebuild", "--events", "2000")
    assert figures["bench"] == "rebuild"
    assert figures["events"] >= 2000  # seeded a batch at a time, until the store holds at least N
    assert figures["processes"] == 2
    positive(figures, "events_per_s", "ceiling_per_s", "ratio", "processes_events_per_s", "processes_ratio")
    assert figures["ratio"] == round(figures["events_per_s"] / figures["ceiling_per_s"], 3)
    fastest_ceiling(figures, passes=2)
    assert set(figures["per_view_events_per_s"]) == {
        "audit_trail",
        "certificates",
        "policy_versions",
        "provision_ledger",
        "requests",
        "subjects",
    }


@pytest.mark.slow
def test_bench_query_prints_its_figures(postgres_url: str) -> None:
    figures = run_bench(
        postgres_url, "query", "--events", "2000", "--clients", "2", "--requests", "15", "--api-workers", "1"
    )
    assert figures["bench"] == "query"
    assert figures["events"] == 2000 and figures["stored_events"] >= 2000
    assert figures["errors"] == 0
    positive(figures, "p50_ms", "p95_ms", "p99_ms", "mean_ms")
    assert figures["p50_ms"] <= figures["p95_ms"] <= figures["p99_ms"]
    endpoints = figures["per_endpoint"]
    assert set(endpoints) <= {"lookup", "subject", "certificate", "audit", "package"}
    assert sum(e["requests"] for e in endpoints.values()) == 2 * 15
    assert all(e["errors"] == 0 for e in endpoints.values())
