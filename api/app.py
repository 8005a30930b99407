"""The FastAPI application."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from fastapi import FastAPI

from api import routes_ledger, routes_ops, routes_records, routes_requests, routes_subjects
from api.auth import TokenRegistry
from api.context import Context
from api.problems import install
from consumers.ingest import IngestCounters
from domain.application import Ledger
from projections.service import Projections


def create_app(
    ledger: Ledger,
    projections: Projections,
    tokens: TokenRegistry,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ingest_counters: IngestCounters | None = None,
) -> FastAPI:
    app = FastAPI(
        title="kiroku",
        version="0.1.0",
        description="The compliance team's interface to the certificate-information ledger.",
    )
    app.state.context = Context(ledger, projections, tokens, clock, ingest_counters)
    install(app)
    for module in (routes_ops, routes_subjects, routes_records, routes_ledger, routes_requests):
        app.include_router(module.router)
    return app
