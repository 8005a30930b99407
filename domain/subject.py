"""A data subject: the provisions they are in, stop requests (§11) and erasure."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.codes import Clause, ProvisionCategory
from domain.creation import create
from domain.errors import InvalidCommand, InvalidTransition, LegalHoldActive, PolicyViolation
from domain.quickinit import quick_init, quicken_events

CT_IRREVOCABLE = (
    "information already submitted to CT logs (4.4) is public in those logs and cannot be recalled; "
    "the CA takes no responsibility for that publication"
)


@quick_init
@dataclass(frozen=True)
class LegalHold:
    """A retention obligation that blocks erasure until ``until``."""

    reason: str
    until: datetime
    reference: str


@quick_init
@dataclass(frozen=True)
class NotedProvision:
    """A provision the subject's data was in, as noted on the subject (``ProvisionNoted``)."""

    provision_id: UUID
    category: str
    retention_until: datetime | None


@dataclass
class StopRequest:
    request_id: str
    requested_at: datetime
    state: str = "requested"
    reason: str | None = None
    decided_at: datetime | None = None
    irrevocable: list[UUID] | None = None


@quicken_events
class DataSubject(Aggregate):
    """A person, known only by a keyed-hash id; their values live sealed in records.

    The state only counts the records the subject is on and the provisions
    they were in: a contact address on a hosting provider's ACME account is on
    millions of certificates, and a state that listed them would make every
    read and snapshot of the person carry them. Which ones, the ledger reads
    from the events when a command or a package needs them
    (``subject_records``, ``subject_provisions``).
    """

    state_grows_with_history = False

    class Registered(Aggregate.Created):
        key_kind: str
        cause: Cause

    class AppearedOn(Aggregate.Event):
        record_id: UUID
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.records += 1

    class ProvisionNoted(Aggregate.Event):
        provision_id: UUID
        category: str
        retention_until: datetime | None
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.provisions += 1

    class StopRequested(Aggregate.Event):
        request_id: str
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.stop_requests[self.request_id] = StopRequest(self.request_id, self.cause.occurred_at)

    class StopDecided(Aggregate.Event):
        request_id: str
        accepted: bool
        reason: str
        irrevocable_provisions: list[UUID]
        statement: str | None
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            request = aggregate.stop_requests[self.request_id]
            request.state = "accepted" if self.accepted else "refused"
            request.reason = self.reason
            request.decided_at = self.cause.occurred_at
            request.irrevocable = list(self.irrevocable_provisions)
            if self.accepted:
                aggregate.provision_stopped = True

    class ErasureRequested(Aggregate.Event):
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.erasure_state = "requested"
            aggregate.erasure_requested_at = self.cause.occurred_at

    class Erased(Aggregate.Event):
        generation: int
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.erased_generations.append(self.generation)
            aggregate.key_generation = self.generation + 1
            aggregate.erasure_state = "erased"
            aggregate.erased_at = self.cause.occurred_at

    def __init__(self, key_kind: str) -> None:
        self.key_kind = key_kind
        self.key_generation = 1
        self.erased_generations: list[int] = []
        # How many certificate records and ACME accounts hold this subject's items.
        self.records = 0
        # How many provisions the subject's data was in.
        self.provisions = 0
        self.stop_requests: dict[str, StopRequest] = {}
        self.provision_stopped = False
        self.erasure_state: str | None = None
        self.erasure_requested_at: datetime | None = None
        self.erased_at: datetime | None = None

    @classmethod
    def register(cls, *, subject_id: UUID, key_kind: str, cause: Cause) -> DataSubject:
        if key_kind not in {"email", "upstream"}:
            raise InvalidCommand("a subject key is an e-mail address or an upstream identifier")
        return create(cls, cls.Registered, subject_id, key_kind=key_kind, cause=cause)

    def appear_on(self, record_id: UUID, cause: Cause) -> None:
        """The subject's items are on this record or account, for the first time.

        The holder knows that, not the subject (whose state does not list its
        records): a record or account just made, or an account's contact that
        was never on it before.
        """
        self.trigger_event(self.AppearedOn, record_id=record_id, cause=cause)

    def _check_all(self, provisions: Sequence[NotedProvision]) -> None:
        if len(provisions) != self.provisions:
            # The caller's reading of the events is out of step with the state: a bug, not bad input.
            raise ValueError(f"{len(provisions)} provisions given, but the subject was in {self.provisions}")

    def note_provision(
        self,
        *,
        provision_id: UUID,
        category: ProvisionCategory,
        retention_until: datetime | None,
        cause: Cause,
    ) -> None:
        """§11: once a stop is accepted, provision to the managing operator (4.1) is refused."""
        if self.provision_stopped and category is ProvisionCategory.MANAGING_OPERATOR:
            raise PolicyViolation(
                f"third-party provision for subject {self.id} was stopped at the subject's request; "
                "provision under 4.1 is refused (4.3 remains possible where the law requires it)",
                Clause.STOP_PROVISION,
            )
        self.trigger_event(
            self.ProvisionNoted,
            provision_id=provision_id,
            category=category.value,
            retention_until=retention_until,
            cause=cause,
        )

    def request_stop(self, *, request_id: str, cause: Cause) -> None:
        """§11: a request to stop third-party provision, to be decided."""
        if not isinstance(request_id, str) or not request_id.strip():
            raise InvalidCommand("a stop request needs an id")
        if request_id in self.stop_requests:
            raise InvalidTransition(f"stop request {request_id} already exists", Clause.STOP_PROVISION)
        self.trigger_event(self.StopRequested, request_id=request_id, cause=cause)

    def decide_stop(
        self,
        *,
        request_id: str,
        accepted: bool,
        reason: str,
        provisions: Sequence[NotedProvision],
        cause: Cause,
    ) -> None:
        """Accepted or refused, with a reason; an acceptance says what cannot be recalled.

        ``provisions``: every provision the subject was in (the ledger reads them
        from the events); those to CT logs are the ones that cannot be recalled.
        """
        request = self.stop_requests.get(request_id)
        if request is None:
            raise InvalidTransition(f"no stop request {request_id} for this subject", Clause.STOP_PROVISION)
        if request.state != "requested":
            raise InvalidTransition(f"stop request {request_id} was already decided", Clause.STOP_PROVISION)
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidCommand("a stop decision needs a reason", Clause.STOP_PROVISION)
        self._check_all(provisions)
        irrevocable = [p.provision_id for p in provisions if p.category == ProvisionCategory.CT_LOG.value]
        self.trigger_event(
            self.StopDecided,
            request_id=request_id,
            accepted=bool(accepted),
            reason=reason.strip(),
            irrevocable_provisions=irrevocable if accepted else [],
            statement=CT_IRREVOCABLE if accepted and irrevocable else None,
            cause=cause,
        )

    def request_erasure(self, cause: Cause) -> None:
        if self.erasure_state == "requested":
            raise InvalidTransition("an erasure request for this subject is already open", Clause.ERASURE)
        self.trigger_event(self.ErasureRequested, cause=cause)

    def provision_holds(self, at: datetime, provisions: Sequence[NotedProvision]) -> list[LegalHold]:
        """APPI Art. 29 records of provisions still within their retention period.

        ``provisions``: every provision the subject was in, as for :meth:`decide_stop`.
        """
        self._check_all(provisions)
        return [
            LegalHold(
                "APPI Art. 29 provision record retention", p.retention_until, f"provision:{p.provision_id}"
            )
            for p in provisions
            if p.retention_until is not None and p.retention_until > at
        ]

    def erase(self, *, holds: list[LegalHold], cause: Cause) -> int:
        """Carries out a requested erasure once no hold applies; returns the destroyed key generation."""
        if self.erasure_state != "requested":
            raise InvalidTransition("erasure is carried out only on an open erasure request", Clause.ERASURE)
        if holds:
            latest = max(h.until for h in holds)
            raise LegalHoldActive(
                f"erasure refused: {len(holds)} legal hold(s) apply until {latest.date().isoformat()}",
                [(h.reference, h.until.isoformat()) for h in holds],
            )
        generation = self.key_generation
        self.trigger_event(self.Erased, generation=generation, cause=cause)
        return generation
