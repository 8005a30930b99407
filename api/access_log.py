"""§8, §10: every response that shows personal data is recorded before it is sent, in group commits.

Each request waits until its access record is committed. Requests that
arrive while a commit is under way do not each commit on their own: the next
commit takes all that have gathered, in one transaction. Under load that is
one durable commit for many readers instead of one each.

Two ways, one rule. An API worker's handlers run on its event loop: there
(once :meth:`AccessLog.open` has run on that loop, at the server's start-up,
on PostgreSQL) a request waits for its commit with ``await`` on an asyncio
connection, and the loop serves other requests meanwhile. Elsewhere (SQLite,
a test client that runs no start-up, a thread) a caller commits itself,
blocking, and callers that arrive meanwhile share the next commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from uuid import UUID

import psycopg
from eventsourcing.persistence import StoredEvent

from domain.cause import Cause
from domain.commands import CommandResult
from domain.errors import DomainError

log = logging.getLogger("kiroku.api")

#: At most this many access records in one commit (one statement of literals).
MOST_IN_ONE_COMMIT = 100


class AccessNotRecorded(Exception):
    """The access could not be recorded (the store failed): the personal data must not be shown."""


@dataclass
class AccessCounts:
    """What this process's access log has done, for ``/metrics``."""

    recorded: int = 0  # access records committed
    not_recorded: int = 0  # readers answered 503 because their record could not be committed
    loop_commits: int = 0  # commits on the event loop's asyncio connection
    caller_commits: int = 0  # commits made by a reader itself (SQLite, no start-up, a thread)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, *, recorded: int = 0, not_recorded: int = 0, loop: int = 0, caller: int = 0) -> None:
        with self._lock:
            self.recorded += recorded
            self.not_recorded += not_recorded
            self.loop_commits += loop
            self.caller_commits += caller


@dataclass
class _Access:
    subject_ids: list[UUID]
    endpoint: str
    cause: Cause
    done: threading.Event = field(default_factory=threading.Event)
    outcome: CommandResult | BaseException | None = None


class RecordsAccesses(Protocol):
    """The ledger, as far as access records go."""

    def record_accesses(
        self, accesses: Sequence[tuple[Sequence[UUID], str, Cause]]
    ) -> list[CommandResult | DomainError]: ...

    def access_records(
        self, accesses: Sequence[tuple[Sequence[UUID], str, Cause]]
    ) -> tuple[list[CommandResult | DomainError], list[StoredEvent]]: ...


class InsertsAsync(Protocol):
    """Where an event loop's access records go: a store of events with an asyncio connection."""

    async def insert(self, stored_events: Sequence[StoredEvent]) -> int | None:
        """Stores the events in one transaction; the highest notification id, or None if not known."""

    async def close(self) -> None: ...


class AccessLog:
    """Records accesses to personal data; concurrent callers share commits."""

    def __init__(self, ledger: RecordsAccesses) -> None:
        self.ledger = ledger
        self._gathering: list[_Access] = []
        self._gathering_lock = threading.Lock()
        self._turn = threading.Lock()  # one commit at a time
        self._on_loop: _LoopCommits | None = None
        self.counts = AccessCounts()

    # On an event loop ---------------------------------------------------------------

    def open(self, store: InsertsAsync) -> None:
        """Commits the running loop's access records through ``store`` from now on."""
        self._on_loop = _LoopCommits(store, asyncio.get_running_loop(), self.counts)

    async def close(self) -> None:
        """Back to committing in the caller; waits for the commits under way, then closes the store."""
        on_loop, self._on_loop = self._on_loop, None
        if on_loop is not None:
            await on_loop.close()

    async def record_async(self, subject_ids: list[UUID], endpoint: str, cause: Cause) -> CommandResult:
        """As :meth:`record`, for a handler on an event loop: its loop serves others while the commit waits.

        On a loop :meth:`open` did not run on, commits here, blocking the loop.
        """
        on_loop = self._on_loop
        if on_loop is None or on_loop.loop is not asyncio.get_running_loop():
            return self.record(subject_ids, endpoint, cause)
        (outcome,), stored = self.ledger.access_records([(list(subject_ids), endpoint, cause)])
        if isinstance(outcome, DomainError):
            raise outcome
        return await on_loop.commit(outcome, stored)

    # In the caller ------------------------------------------------------------------

    def record(self, subject_ids: list[UUID], endpoint: str, cause: Cause) -> CommandResult:
        """Returns once the access is committed; raises what refused it, or AccessNotRecorded."""
        access = _Access(list(subject_ids), endpoint, cause)
        with self._gathering_lock:
            self._gathering.append(access)
        with self._turn:
            if not access.done.is_set():
                self._commit_gathered()
        if isinstance(access.outcome, DomainError):
            raise access.outcome
        if isinstance(access.outcome, BaseException):
            raise _not_recorded(access.outcome) from access.outcome
        assert isinstance(access.outcome, CommandResult)
        return access.outcome

    def _commit_gathered(self) -> None:
        with self._gathering_lock:
            group, self._gathering = self._gathering, []
        try:
            outcomes: list[CommandResult | DomainError] = list(
                self.ledger.record_accesses([(a.subject_ids, a.endpoint, a.cause) for a in group])
            )
        except Exception as failure:  # noqa: BLE001 - every waiting reader gets the failure, none proceeds
            self.counts.add(not_recorded=len(group))
            for access in group:
                access.outcome = failure
                access.done.set()
            return
        recorded = sum(isinstance(o, CommandResult) for o in outcomes)
        self.counts.add(recorded=recorded, caller=1 if recorded else 0)
        for access, outcome in zip(group, outcomes, strict=True):
            access.outcome = outcome
            access.done.set()


def _not_recorded(failure: BaseException) -> AccessNotRecorded:
    # The class only: a driver's message may quote the statement, and the statement holds the record.
    return AccessNotRecorded(f"the access could not be recorded ({type(failure).__name__})")


class _LoopCommits:
    """One event loop's access records, committed a group at a time while the loop serves on.

    One commit at a time: a second connection, to send the next group while
    one commits, measured no better (the events table's lock orders them anyway).
    """

    def __init__(self, store: InsertsAsync, loop: asyncio.AbstractEventLoop, counts: AccessCounts) -> None:
        self.store, self.loop, self.counts = store, loop, counts
        self._waiting: list[tuple[CommandResult, list[StoredEvent], asyncio.Future[CommandResult]]] = []
        self._committing: asyncio.Task[None] | None = None

    async def commit(self, result: CommandResult, stored: list[StoredEvent]) -> CommandResult:
        future: asyncio.Future[CommandResult] = self.loop.create_future()
        self._waiting.append((result, stored, future))
        if self._committing is None or self._committing.done():
            self._committing = self.loop.create_task(self._commit_waiting())
        return await future

    async def _commit_waiting(self) -> None:
        # The first access commits at once; those that arrive meanwhile go together in the next.
        while self._waiting:
            group = self._waiting[:MOST_IN_ONE_COMMIT]
            del self._waiting[:MOST_IN_ONE_COMMIT]
            try:
                position = await self.store.insert([e for _, stored, _ in group for e in stored])
            except Exception as failure:  # noqa: BLE001 - each waiting reader gets the failure, none proceeds
                log.warning("access records not committed (%s)", type(failure).__name__)
                self.counts.add(not_recorded=len(group))
                for _, _, future in group:
                    if not future.done():
                        future.set_exception(_not_recorded(failure))
                continue
            self.counts.add(recorded=len(group), loop=1)
            for result, _, future in group:
                if not future.done():  # a reader that went away has its record all the same
                    future.set_result(CommandResult(result.id, position))

    async def close(self) -> None:
        if self._committing is not None:
            await asyncio.gather(self._committing, return_exceptions=True)
        await self.store.close()


class PostgresAccessStore:
    """:class:`InsertsAsync` on the event store's PostgreSQL: one asyncio connection, made again if lost.

    A commit whose connection is lost is sent again on a new connection,
    ``attempts`` times at most, ``wait`` seconds apart. Its events have
    fixed ids and versions: if the lost commit had in fact gone through, the
    store refuses the second as a duplicate, which tells it was recorded.
    """

    def __init__(self, recorder: Any, *, attempts: int = 10, wait: float = 0.2) -> None:
        self.recorder, self.attempts, self.wait = recorder, attempts, wait
        self._connection: psycopg.AsyncConnection[Any] | None = None

    async def insert(self, stored_events: Sequence[StoredEvent]) -> int | None:
        lost = False
        for attempt in range(self.attempts):
            try:
                if self._connection is None or self._connection.closed:
                    self._connection = await self.recorder.connect_async()
                ids: list[int] = await self.recorder.insert_async(self._connection, stored_events)
                return max(ids, default=None)
            except psycopg.IntegrityError:
                if lost:  # the commit whose answer was lost went through
                    return None
                raise
            except (psycopg.OperationalError, psycopg.InterfaceError):
                lost = True
                await self._drop()
                if attempt + 1 == self.attempts:
                    raise
                log.warning("access records: the database connection was lost; trying again")
                await asyncio.sleep(self.wait)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _drop(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                await connection.close()

    async def close(self) -> None:
        await self._drop()
