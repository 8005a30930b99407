"""§8, §10: every response that shows personal data is recorded before it is sent, in group commits.

Each request waits until its access record is committed. Requests that
arrive while a commit is under way do not each commit on their own: the next
one to get the turn commits all that have gathered, in one transaction. Under
load that is one durable commit for many readers instead of one each.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol
from uuid import UUID

from domain.cause import Cause
from domain.commands import CommandResult
from domain.errors import DomainError


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


class AccessLog:
    """Records accesses to personal data; concurrent callers share commits."""

    def __init__(self, ledger: RecordsAccesses) -> None:
        self.ledger = ledger
        self._gathering: list[_Access] = []
        self._gathering_lock = threading.Lock()
        self._turn = threading.Lock()  # one commit at a time

    def record(self, subject_ids: list[UUID], endpoint: str, cause: Cause) -> CommandResult:
        """Returns once the access is committed; raises what refused or failed it."""
        access = _Access(list(subject_ids), endpoint, cause)
        with self._gathering_lock:
            self._gathering.append(access)
        with self._turn:
            if not access.done.is_set():
                self._commit_gathered()
        if isinstance(access.outcome, BaseException):
            raise access.outcome
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
            for access in group:
                access.outcome = failure
                access.done.set()
            return
        for access, outcome in zip(group, outcomes, strict=True):
            access.outcome = outcome
            access.done.set()
