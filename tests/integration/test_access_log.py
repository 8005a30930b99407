"""§8, §10: access records in group commits, each reader's record committed before it returns."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import StoredEvent
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.access_log import AccessLog, PostgresAccessStore
from domain.application import Ledger
from domain.cause import Cause
from domain.commands import CommandResult
from domain.errors import DomainError, InvalidCommand
from kiroku.persistence.recorders import ASYNC_APPLICATION_NAME
from tests.helpers import cause
from tests.integration.api_support import TARO, Api

RECORDED = "domain.access:AccessRecord.Recorded"


class Counting:
    """The ledger, counting how many transactions the access log asks of it."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger, self.calls = ledger, 0

    def record_accesses(
        self, accesses: Sequence[tuple[Sequence[UUID], str, Cause]]
    ) -> list[CommandResult | DomainError]:
        self.calls += 1
        return self.ledger.record_accesses(accesses)

    def access_records(
        self, accesses: Sequence[tuple[Sequence[UUID], str, Cause]]
    ) -> tuple[list[CommandResult | DomainError], list[StoredEvent]]:
        return self.ledger.access_records(accesses)


def stored_accesses(ledger: Ledger) -> dict[UUID, list[UUID]]:
    found = {}
    for notification in ledger.recorder.select_notifications(start=1, limit=10_000, topics=[RECORDED]):
        event = ledger.mapper.to_domain_event(notification)
        found[event.originator_id] = event.subject_ids  # type: ignore[attr-defined]
    return found


def test_concurrent_readers_each_get_their_own_committed_record(ledger: Ledger) -> None:
    log = AccessLog(ledger)
    subjects = [uuid4() for _ in range(16)]
    results: dict[UUID, CommandResult] = {}

    def read(subject: UUID) -> None:
        results[subject] = log.record([subject], "GET /subjects/{subject_id}", cause())

    threads = [threading.Thread(target=read, args=(s,)) for s in subjects]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    stored = stored_accesses(ledger)
    assert len({r.id for r in results.values()}) == 16
    assert {subject: stored[result.id] for subject, result in results.items() if result.id} == {
        s: [s] for s in subjects
    }
    assert all(r.position is not None for r in results.values())


def test_readers_that_gather_during_a_commit_share_the_next_one(ledger: Ledger) -> None:
    counting = Counting(ledger)
    log = AccessLog(counting)
    log._turn.acquire()  # a commit under way
    threads = [
        threading.Thread(target=log.record, args=([uuid4()], "GET /subjects", cause())) for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while len(log._gathering) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    log._turn.release()
    for thread in threads:
        thread.join(30)
    assert counting.calls == 1, "five readers, one commit"
    assert len(stored_accesses(ledger)) == 5


def test_a_refused_record_fails_its_reader_only(ledger: Ledger) -> None:
    outcomes = ledger.record_accesses(
        [([uuid4()], "GET /a", cause()), ([], "GET /b", cause()), ([uuid4()], "GET /c", cause())]
    )
    assert isinstance(outcomes[1], InvalidCommand)
    assert all(isinstance(o, CommandResult) for o in (outcomes[0], outcomes[2]))
    assert len(stored_accesses(ledger)) == 2
    with pytest.raises(InvalidCommand):
        AccessLog(ledger).record([], "GET /b", cause())


# On an event loop, over an asyncio connection ---------------------------------------


class AnswerLost:
    """The recorder, except that its first commit's answer is lost: it commits, then the connection breaks."""

    def __init__(self, recorder: Any) -> None:
        self.recorder, self.lost = recorder, 0

    async def connect_async(self) -> psycopg.AsyncConnection[Any]:
        connection: psycopg.AsyncConnection[Any] = await self.recorder.connect_async()
        return connection

    async def insert_async(
        self, connection: psycopg.AsyncConnection[Any], events: list[StoredEvent]
    ) -> list[int]:
        ids: list[int] = await self.recorder.insert_async(connection, events)
        if not self.lost:
            self.lost += 1
            await connection.close()
            raise psycopg.OperationalError("the server's answer was lost")
        return ids


def test_a_commit_whose_answer_was_lost_is_recorded_once(pg_ledger: Ledger) -> None:
    _, stored = pg_ledger.access_records([([uuid4()], "GET /subjects", cause())])

    async def insert() -> int | None:
        store = PostgresAccessStore(AnswerLost(pg_ledger.recorder), wait=0)
        try:
            return await store.insert(stored)
        finally:
            await store.close()

    assert asyncio.run(insert()) is None, "recorded, though the position is not known"
    assert len(stored_accesses(pg_ledger)) == 1


def test_a_conflict_without_a_lost_answer_is_not_taken_for_a_success(pg_ledger: Ledger) -> None:
    _, stored = pg_ledger.access_records([([uuid4()], "GET /subjects", cause())])

    async def insert_twice() -> None:
        store = PostgresAccessStore(pg_ledger.recorder, wait=0)
        try:
            assert await store.insert(stored) is not None
            await store.insert(stored)
        finally:
            await store.close()

    with pytest.raises(psycopg.IntegrityError):
        asyncio.run(insert_twice())
    assert len(stored_accesses(pg_ledger)) == 1


def terminate_access_connections(ledger: Ledger) -> int:
    with ledger.recorder.datastore.get_connection() as connection:  # type: ignore[attr-defined]
        row = connection.execute(
            "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
            "WHERE application_name = %s AND datname = current_database()",
            (ASYNC_APPLICATION_NAME,),
        ).fetchone()
    return int(row["n"])


def test_on_the_servers_loop_each_read_is_committed_once_and_a_lost_connection_is_made_again(
    api: Api,
) -> None:
    app = api.client.app
    assert isinstance(app, FastAPI)
    officer = {"Authorization": f"Bearer {api.tokens['officer']}"}
    taro = str(api.ledger.subject_id(TARO))
    before = len(api.access_records())
    with TestClient(app) as client:  # runs the start-up: the access records go through the loop's connection
        log: AccessLog = app.state.context.access_log

        def read(number: int) -> int:
            if number % 2:
                response = client.get(f"/subjects/{taro}", headers=officer)
            else:
                response = client.get("/subjects", params={"email": "taro@example.jp"}, headers=officer)
            return int(response.status_code)

        with ThreadPoolExecutor(max_workers=8) as pool:
            statuses = list(pool.map(read, range(40)))
        assert statuses == [200] * 40
        assert 1 <= log.counts.loop_commits <= 40, "committed on the loop's connection"
        assert (log.counts.recorded, log.counts.caller_commits) == (40, 0)
        assert len(api.access_records()) == before + 40

        assert terminate_access_connections(api.ledger) == 1
        assert read(1) == 200, "a new connection, the access recorded"
        assert len(api.access_records()) == before + 41
    # After the shutdown, reads commit in the handler again.
    assert read(1) == 200
    assert len(api.access_records()) == before + 42
    assert log.counts.caller_commits == 1
    metrics = api.client.get("/metrics").text
    assert 'kiroku_access_records_total{outcome="recorded"} 42' in metrics
    assert 'kiroku_access_commits_total{path="caller"} 1' in metrics
    assert [r.subject_ids for r in api.access_records()[before:]] == [[UUID(taro)]] * 42


class Failing:
    """The ledger, except that the database fails every access record."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def record_accesses(
        self,
        accesses: Sequence[tuple[Sequence[UUID], str, Cause]],  # noqa: ARG002 - the port's signature
    ) -> list[CommandResult | DomainError]:
        raise psycopg.OperationalError("connection to taro@example.jp's server lost")

    def access_records(
        self, accesses: Sequence[tuple[Sequence[UUID], str, Cause]]
    ) -> tuple[list[CommandResult | DomainError], list[StoredEvent]]:
        return self.ledger.access_records(accesses)


def test_a_read_whose_access_cannot_be_recorded_shows_nothing(api: Api) -> None:
    app = api.client.app
    assert isinstance(app, FastAPI)
    app.state.context.access_log = AccessLog(Failing(api.ledger))
    taro = str(api.ledger.subject_id(TARO))
    for response in (api.get(f"/subjects/{taro}"), api.get("/subjects", email="taro@example.jp")):
        assert response.status_code == 503
        assert "could not be recorded (OperationalError)" in response.json()["detail"]
        assert "taro" not in response.text and "山田" not in response.text
    assert 'kiroku_access_records_total{outcome="not_recorded"} 2' in api.client.get("/metrics").text
