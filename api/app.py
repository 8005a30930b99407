"""The FastAPI application."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime

from fastapi import FastAPI
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api import routes_ledger, routes_ops, routes_records, routes_requests, routes_subjects
from api.access_log import PostgresAccessStore
from api.auth import TokenRegistry
from api.context import Context
from api.problems import install
from consumers.ingest import IngestCounters
from domain.application import Ledger
from projections.service import Projections

log = logging.getLogger("kiroku.api")


class RequestLog:
    """Logs each request's method, route template, status and time: never the query string or body.

    Query strings and bodies may hold personal data (an e-mail address looked
    up), so they never reach the log. A plain ASGI middleware: Starlette's
    ``BaseHTTPMiddleware`` costs a task and a stream per request.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("route")
            log.info(
                "%s %s %s %.1fms",
                scope["method"],
                getattr(route, "path", "(no route)"),
                status,
                (time.perf_counter() - started) * 1000,
            )


def create_app(
    ledger: Ledger,
    projections: Projections,
    tokens: TokenRegistry,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ingest_counters: IngestCounters | None = None,
) -> FastAPI:
    context = Context(ledger, projections, tokens, clock, ingest_counters)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # On PostgreSQL, the access records of this server's loop are committed on an
        # asyncio connection: a request waits for its commit without holding the loop.
        if hasattr(ledger.recorder, "insert_async"):
            context.access_log.open(PostgresAccessStore(ledger.recorder))
        try:
            yield
        finally:
            await context.access_log.close()

    app = FastAPI(
        title="kiroku",
        version="0.1.0",
        description="The compliance team's interface to the certificate-information ledger.",
        lifespan=lifespan,
    )
    app.state.context = context
    install(app)

    app.add_middleware(RequestLog)
    for module in (routes_ops, routes_subjects, routes_records, routes_ledger, routes_requests):
        app.include_router(module.router)
    return app
