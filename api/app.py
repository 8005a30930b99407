"""The FastAPI application."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from fastapi import FastAPI, Request, Response

from api import routes_ledger, routes_ops, routes_records, routes_requests, routes_subjects
from api.auth import TokenRegistry
from api.context import Context
from api.problems import install
from consumers.ingest import IngestCounters
from domain.application import Ledger
from projections.service import Projections

log = logging.getLogger("kiroku.api")


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

    @app.middleware("http")
    async def access_log(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # Method, route template and status only: query strings and bodies may hold
        # personal data (an e-mail address looked up), so they are never logged.
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        template = getattr(route, "path", "(no route)")
        log.info(
            "%s %s %s %.1fms",
            request.method,
            template,
            response.status_code,
            (time.perf_counter() - started) * 1000,
        )
        return response

    for module in (routes_ops, routes_subjects, routes_records, routes_ledger, routes_requests):
        app.include_router(module.router)
    return app
