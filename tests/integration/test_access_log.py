"""§8, §10: access records in group commits, each reader's record committed before it returns."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from uuid import UUID, uuid4

import pytest

from api.access_log import AccessLog
from domain.application import Ledger
from domain.cause import Cause
from domain.commands import CommandResult
from domain.errors import DomainError, InvalidCommand
from tests.helpers import cause

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
