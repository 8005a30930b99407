"""What every handler shares: the application context, authentication, access recording.

Where handlers run. A handler that is a plain function runs in the thread
pool; one that is a coroutine runs on the worker's event loop, and its
database calls block the loop while they wait. The hot paths are coroutines:
a subject, a look-up, a certificate, an audit page (a few indexed reads) and
a disclosure package (one subject's records, read in one query: about 5 ms).
The access record's commit is the exception: a handler awaits it on an
asyncio connection (``api.access_log``), and the loop serves other requests
meanwhile; those that arrive during a commit share the next one. The thread
hop cost as much as the work, and a pool thread that waits on the database
many times waits for the GIL each time the loop is busy: under load a
package took 46 ms at p50 in the pool and 18 ms on the loop. Answers ``as_of``
a past moment replay events and stay in the pool, as do exports and the other
commands. A worker serves one loop handler at a time: run several worker
processes (``kiroku api --workers``). A subject with very many records makes
a package that holds its worker's loop for longer.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Annotated
from uuid import UUID

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.access_log import AccessLog
from api.auth import Permission, Principal, TokenRegistry
from api.problems import ApiProblem
from consumers.ingest import IngestCounters
from domain.application import Ledger
from domain.cause import Cause
from projections.service import Projections

bearer = HTTPBearer(auto_error=False)
MAX_PAGE = 500


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


def requires(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, who must hold a valid token whose role grants ``permission``."""

    async def check(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> Principal:
        if credentials is None or credentials.scheme.lower() != "bearer":
            raise ApiProblem(
                401, "Unauthorized", "a bearer token is required", {"WWW-Authenticate": "Bearer"}
            )
        context: Context = request.app.state.context
        principal = context.tokens.principal(credentials.credentials)
        if principal is None:
            raise ApiProblem(401, "Unauthorized", "the token is not valid", {"WWW-Authenticate": "Bearer"})
        if not principal.may(permission):
            raise ApiProblem(403, "Forbidden", f"role {principal.role} does not grant {permission.value}")
        return principal

    return check


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
