"""Errors as ``application/problem+json`` (RFC 9457), naming the rule when a rule refused."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from api.access_log import AccessNotRecorded
from domain.errors import (
    DomainError,
    InvalidCommand,
    LegalHoldActive,
    NotFound,
    PolicyViolation,
    UpstreamEventConflict,
)
from kiroku.persistence.outage import UNREACHABLE
from projections.store import ViewNotReady

PROBLEM = "application/problem+json"

log = logging.getLogger("kiroku.api")


class ApiProblem(Exception):
    """Raised by handlers to answer with a problem document."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status, self.title, self.detail, self.headers = status, title, detail, headers
        super().__init__(detail)


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM)


def _domain(error: DomainError) -> JSONResponse:
    extra: dict[str, Any] = {"clause": str(error.clause)} if error.clause else {}
    if isinstance(error, NotFound):
        return problem(404, "Not found", error.message, **extra)
    if isinstance(error, LegalHoldActive):
        holds = [{"reference": ref, "until": until} for ref, until in error.holds]
        return problem(409, "Legal hold", error.message, holds=holds, **extra)
    if isinstance(error, PolicyViolation | UpstreamEventConflict):
        return problem(409, "Refused by the policy", error.message, **extra)
    if isinstance(error, InvalidCommand):
        return problem(422, "Invalid request", error.message, **extra)
    return problem(409, "Refused", error.message, **extra)


def install(app: FastAPI) -> None:
    @app.exception_handler(ApiProblem)
    async def _api_problem(_: Request, exc: ApiProblem) -> JSONResponse:
        response = problem(exc.status, exc.title, exc.detail)
        for key, value in (exc.headers or {}).items():
            response.headers[key] = value
        return response

    @app.exception_handler(DomainError)
    async def _domain_error(_: Request, exc: DomainError) -> JSONResponse:
        return _domain(exc)

    @app.exception_handler(AccessNotRecorded)
    async def _not_recorded(_: Request, exc: AccessNotRecorded) -> JSONResponse:
        return problem(503, "Unavailable", f"{exc}; nothing was shown")

    async def _unreachable(request: Request, exc: Exception) -> JSONResponse:
        # The route's template, never the path itself (it may hold an id), and the error's class only.
        route = getattr(request.scope.get("route"), "path", "?")
        reason = type(exc).__name__
        log.warning("%s %s: the database is unreachable (%s); answered 503", request.method, route, reason)
        response = problem(503, "Unavailable", f"the database is unreachable ({reason}); try again")
        response.headers["Retry-After"] = "1"
        return response

    for unreachable in UNREACHABLE:
        app.add_exception_handler(unreachable, _unreachable)

    @app.exception_handler(ViewNotReady)
    async def _not_ready(_: Request, exc: ViewNotReady) -> JSONResponse:
        return problem(503, "Not ready", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        # Only where and what kind, never the input: it may be personal data.
        errors = [{"loc": list(e.get("loc", ())), "type": e.get("type")} for e in exc.errors()]
        return problem(422, "Invalid request", "the request does not match the API", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem(exc.status_code, str(exc.detail), str(exc.detail))
