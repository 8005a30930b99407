"""Access records on an event loop: one commit at a time, those that arrive meanwhile share the next."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent

from api.access_log import AccessLog, AccessNotRecorded
from domain.cause import Cause
from domain.commands import CommandResult
from domain.errors import DomainError, InvalidCommand
from tests.helpers import cause


class Records:
    """The ledger's side of access records: each access one stored event (refused without subjects)."""

    def record_accesses(
        self,
        accesses: Sequence[tuple[Sequence[UUID], str, Cause]],  # noqa: ARG002 - the port's signature
    ) -> list[CommandResult | DomainError]:
        raise AssertionError("on the loop, nothing commits in the caller")

    def access_records(
        self, accesses: Sequence[tuple[Sequence[UUID], str, Cause]]
    ) -> tuple[list[CommandResult | DomainError], list[StoredEvent]]:
        outcomes: list[CommandResult | DomainError] = []
        stored = []
        for subject_ids, endpoint, _ in accesses:
            if not subject_ids:
                outcomes.append(InvalidCommand("no subjects"))
                continue
            record_id = uuid4()
            outcomes.append(CommandResult(record_id, None))
            stored.append(StoredEvent(record_id, 1, "access", endpoint.encode()))
        return outcomes, stored


class Gate:
    """A store that holds each commit until let through, and counts what each commit held."""

    def __init__(self) -> None:
        self.groups: list[list[bytes]] = []
        self.through = asyncio.Event()
        self.failure: Exception | None = None
        self.closed = False

    async def insert(self, stored_events: Sequence[StoredEvent]) -> int | None:
        self.groups.append([e.state for e in stored_events])
        await self.through.wait()
        if self.failure is not None:
            raise self.failure
        return 100 * len(self.groups)

    async def close(self) -> None:
        self.closed = True


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def test_accesses_that_arrive_during_a_commit_share_the_next_one() -> None:
    async def scenario() -> tuple[Gate, list[CommandResult], int]:
        log, gate = AccessLog(Records()), Gate()
        log.open(gate)
        first = asyncio.ensure_future(log.record_async([uuid4()], "GET /a", cause()))
        await _settle()
        rest = [asyncio.ensure_future(log.record_async([uuid4()], f"GET /{n}", cause())) for n in range(4)]
        await _settle()
        assert not first.done(), "a reader waits for its commit"
        gate.through.set()
        results = [await first, *[await r for r in rest]]
        commits = log.counts.loop_commits
        await log.close()
        return gate, results, commits

    gate, results, commits = asyncio.run(scenario())
    assert gate.groups == [[b"GET /a"], [b"GET /0", b"GET /1", b"GET /2", b"GET /3"]]
    assert commits == 2
    assert [r.position for r in results] == [100, 200, 200, 200, 200]
    assert gate.closed


def test_a_failed_commit_fails_its_readers_without_quoting_the_database_and_the_next_one_commits() -> None:
    async def scenario() -> tuple[list[BaseException | CommandResult], CommandResult]:
        log, gate = AccessLog(Records()), Gate()
        log.open(gate)
        gate.failure = psycopg.OperationalError("INSERT ... 'taro@example.jp' failed")
        readers = [asyncio.ensure_future(log.record_async([uuid4()], "GET /a", cause())) for _ in range(3)]
        await _settle()
        gate.through.set()
        failed = await asyncio.gather(*readers, return_exceptions=True)
        gate.failure = None
        after = await log.record_async([uuid4()], "GET /b", cause())
        assert (log.counts.not_recorded, log.counts.recorded, log.counts.loop_commits) == (3, 1, 1)
        await log.close()
        return failed, after

    failed, after = asyncio.run(scenario())
    assert all(isinstance(f, AccessNotRecorded) for f in failed)
    assert all("taro" not in str(f) and "OperationalError" in str(f) for f in failed)
    assert after.position is not None


def test_a_refused_access_is_refused_before_it_waits_for_a_commit() -> None:
    async def scenario() -> None:
        log, gate = AccessLog(Records()), Gate()
        log.open(gate)
        with pytest.raises(InvalidCommand):
            await log.record_async([], "GET /a", cause())
        assert gate.groups == []
        await log.close()

    asyncio.run(scenario())


def test_on_another_loop_the_caller_commits() -> None:
    class InTheCaller(Records):
        def record_accesses(
            self, accesses: Sequence[tuple[Sequence[UUID], str, Cause]]
        ) -> list[CommandResult | DomainError]:
            return [CommandResult(uuid4(), 7) for _ in accesses]

    log, gate = AccessLog(InTheCaller()), Gate()

    async def open_on_one_loop() -> None:
        log.open(gate)

    async def read_on_another() -> CommandResult:
        return await log.record_async([uuid4()], "GET /a", cause())

    asyncio.run(open_on_one_loop())
    assert asyncio.run(read_on_another()).position == 7
    assert gate.groups == []
