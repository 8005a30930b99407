"""What every handler shares: the application context, authentication, access recording.

Where handlers run. A handler that is a plain function runs in the thread
pool; one that is a coroutine runs on the worker's event loop, and its
database calls block the loop while they wait. The hot paths are coroutines:
a subject, a look-up, a certificate, an audit page (a few indexed reads) and
a disclosure package (one subject's records, read in one query: about 5 ms).
The thread hop cost as much as the work, and a pool thread that waits on the
database many times waits for the GIL each time the loop is busy: under load
a package took 46 ms at p50 in the pool and 18 ms on the loop. Answers
``as_of`` a past moment replay events and stay in the pool, as do exports
and the other commands.

The access record's commit is the one wait that does not block the loop: a
handler awaits it on an asyncio connection (``api.access_log``) while the
loop runs other handlers; those that arrive during a commit share the next
one. So a worker runs one handler at a time, with others waiting for their
commits: run several worker processes (``kiroku api --workers``). A subject
with very many records makes a package that holds its worker's loop for
longer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPBearer

from api.access_log import AccessLog
from api.auth import Permission, Principal, TokenRegistry
from api.problems import ApiProblem
from consumers.ingest import IngestCounters
from domain.application import Ledger
from domain.cause import Cause
from projections.service import Projections

MAX_PAGE = 500
# A free-text filter that reaches a query: PostgreSQL's text cannot hold a NUL
# character, so one is refused as a 422 (named in the OpenAPI document) rather
# than failing in the database.
NO_NUL = r"^[^\x00]*$"


class Context:
    """What the handlers need: the ledger, the views, the tokens and a clock."""

    def __init__(
        self,
        ledger: Ledger,
        projections: Projections,
        tokens: TokenRegistry,
        clock: Callable[[], datetime],
        ingest_counters: IngestCounters | None = None,
    ) -> None:
        self.ledger, self.projections, self.tokens, self.clock = ledger, projections, tokens, clock
        self.ingest_counters = ingest_counters
        self.access_log = AccessLog(ledger)


# The dependencies are coroutines though they do no I/O: FastAPI runs a plain
# function dependency in its thread pool, a thread hop per dependency per request.


async def get_context(request: Request) -> Context:
    context: Context = request.app.state.context
    return context


class _Caller(HTTPBearer):
    """The caller, who must hold a valid token whose role grants ``permission``.

    One dependency that does all of it: as an ``HTTPBearer`` it still declares
    the bearer scheme in the OpenAPI document, but it reads the header itself
    instead of depending on a second dependency that does (each dependency
    costs FastAPI some work on every request).
    """

    def __init__(self, permission: Permission) -> None:
        super().__init__(auto_error=False, scheme_name="HTTPBearer")
        self.permission = permission

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        scheme, _, token = (request.headers.get("Authorization") or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            raise ApiProblem(
                401, "Unauthorized", "a bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
        context: Context = request.app.state.context
        principal = context.tokens.principal(token)
        if principal is None:
            raise ApiProblem(401, "Unauthorized", "the token is not valid", {"WWW-Authenticate": "Bearer"})
        if not principal.may(self.permission):
            raise ApiProblem(
                403, "Forbidden", f"role {principal.role} does not grant {self.permission.value}"
            )
        return principal


def requires(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold a valid token whose role grants ``permission``."""
    return _Caller(permission)


async def record_access(
    context: Context, principal: Principal, subject_ids: list[UUID], endpoint: str
) -> None:
    """§8, §10: a response that shows personal data is recorded before it is sent."""
    if subject_ids:
        await context.access_log.record_async(
            subject_ids,
            endpoint,
            Cause(actor=f"api:{principal.name}", source_system="kiroku-api", occurred_at=context.clock()),
        )


def parse_cursor(value: str | None) -> int:
    if value is None:
        return 0
    try:
        decoded = base64.urlsafe_b64decode(value.encode()).decode()
        kind, _, number = decoded.partition(":")
        if kind != "n" or not number.isdigit():
            raise ValueError
        return int(number)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiProblem(422, "Invalid request", "the cursor is not one this API gave out") from None


def next_cursor(notification_id: int) -> str:
    return base64.urlsafe_b64encode(f"n:{notification_id}".encode()).decode()


AppContext = Annotated[Context, Depends(get_context)]
