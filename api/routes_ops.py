"""Health and readiness."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import PlainTextResponse

from api.context import AppContext
from api.problems import ApiProblem

router = APIRouter(tags=["operations"])


@router.get("/health")
def health() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


@router.get("/ready")
def ready(context: AppContext) -> dict[str, Any]:
    """The event store answers and every view has been built."""
    statuses = context.projections.status()
    unbuilt = [s.name for s in statuses if s.state in {"not built", "stopped"}]
    if unbuilt:
        raise ApiProblem(503, "Not ready", f"views not ready: {', '.join(unbuilt)}")
    return {"status": "ready", "lag": max((s.lag for s in statuses), default=0)}


def _metric(lines: list[str], name: str, kind: str, text: str, samples: list[tuple[str, float]]) -> None:
    lines.append(f"# HELP {name} {text}")
    lines.append(f"# TYPE {name} {kind}")
    lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)


@router.get("/metrics", response_class=PlainTextResponse)
def metrics(context: AppContext) -> PlainTextResponse:
    """Prometheus text format: events stored, messages ingested and dead-lettered, accesses, view lag.

    Counts only, never personal data, so it needs no token.
    """
    lines: list[str] = []
    head = context.ledger.recorder.max_notification_id() or 0
    _metric(lines, "kiroku_events_stored", "gauge", "Events in the event store.", [("", head)])
    counters = context.ingest_counters
    if counters is not None:
        _metric(
            lines,
            "kiroku_ingest_messages_total",
            "counter",
            "Upstream messages, by outcome.",
            [
                ('{outcome="recorded"}', counters.recorded),
                ('{outcome="duplicate"}', counters.duplicates),
                ('{outcome="dead_letter"}', counters.dead_letters),
            ],
        )
        _metric(
            lines,
            "kiroku_ingest_dead_letters_total",
            "counter",
            "Messages sent to a dead-letter topic.",
            [("", counters.dead_letters)],
        )
        _metric(
            lines,
            "kiroku_ingest_retries_total",
            "counter",
            "Batches retried after a transient failure.",
            [("", counters.retries)],
        )
        _metric(
            lines,
            "kiroku_ingest_partitions_stopped",
            "gauge",
            "Partitions ingest records nothing from until a person decides (see `kiroku consume status`).",
            [("", counters.stopped_partitions)],
        )
        _metric(
            lines,
            "kiroku_ingest_broker_silent",
            "gauge",
            "1 while the broker has not answered ingest's consumer for a session timeout (see its log).",
            [("", counters.broker_silent)],
        )
    access = context.access_log.counts
    _metric(
        lines,
        "kiroku_access_records_total",
        "counter",
        "Accesses to personal data: recorded, or refused an answer because the record failed (this process).",
        [('{outcome="recorded"}', access.recorded), ('{outcome="not_recorded"}', access.not_recorded)],
    )
    _metric(
        lines,
        "kiroku_access_commits_total",
        "counter",
        "Transactions that committed access records, on the event loop or in the reader (this process).",
        [('{path="loop"}', access.loop_commits), ('{path="caller"}', access.caller_commits)],
    )
    statuses = [s for s in context.projections.status() if s.generation is not None]
    _metric(
        lines,
        "kiroku_view_lag_events",
        "gauge",
        "Events the view has not applied yet.",
        [(f'{{view="{s.name}",generation="{s.generation}"}}', s.lag) for s in statuses],
    )
    _metric(
        lines,
        "kiroku_view_stopped",
        "gauge",
        "1 when the view stopped on an event it cannot apply.",
        [(f'{{view="{s.name}"}}', 1 if s.state == "stopped" else 0) for s in statuses],
    )
    return PlainTextResponse("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
