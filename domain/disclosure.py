"""§7: a data subject's request to see all of their information."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.codes import Clause, DisclosureFormat, DisclosureRefusalGround
from domain.creation import create
from domain.errors import InvalidCommand, InvalidTransition
from domain.quickinit import quicken_events

RECEIVED = "received"
VERIFICATION_REQUESTED = "verification-requested"
VERIFIED = "verified"
VERIFICATION_FAILED = "verification-failed"
FULFILLED = "fulfilled"
REFUSED = "refused"
OPEN_STATES = frozenset({RECEIVED, VERIFICATION_REQUESTED, VERIFIED, VERIFICATION_FAILED})


@quicken_events
class DisclosureRequest(Aggregate):
    """received → verification requested → verified | failed → fulfilled | refused."""

    class Received(Aggregate.Created):
        subject_id: UUID
        due_at: datetime
        requested_format: str
        cause: Cause

    class VerificationRequested(Aggregate.Event):
        method: str
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.state = VERIFICATION_REQUESTED
            aggregate.verification_method = self.method

    class IdentityVerified(Aggregate.Event):
        evidence_ref: str
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.state = VERIFIED

    class IdentityVerificationFailed(Aggregate.Event):
        reason: str
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.state = VERIFICATION_FAILED

    class Fulfilled(Aggregate.Event):
        package_digest: str
        item_count: int
        provision_count: int
        delivered_format: str
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.state = FULFILLED
            aggregate.closed_at = self.cause.occurred_at
            aggregate.package_digest = self.package_digest

    class Refused(Aggregate.Event):
        ground: str
        explanation: str
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.state = REFUSED
            aggregate.closed_at = self.cause.occurred_at
            aggregate.refusal_ground = self.ground

    def __init__(self, subject_id: UUID, due_at: datetime, requested_format: str) -> None:
        self.subject_id = subject_id
        self.due_at = due_at
        self.requested_format = requested_format
        self.state = RECEIVED
        self.verification_method: str | None = None
        self.closed_at: datetime | None = None
        self.package_digest: str | None = None
        self.refusal_ground: str | None = None

    @classmethod
    def receive(
        cls,
        *,
        request_id: UUID,
        subject_id: UUID,
        due_at: datetime,
        requested_format: DisclosureFormat | str,
        cause: Cause,
    ) -> DisclosureRequest:
        try:
            fmt = DisclosureFormat(requested_format)
        except ValueError:
            allowed = ", ".join(f.value for f in DisclosureFormat)
            raise InvalidCommand(
                f"unknown disclosure format; expected one of {allowed}", Clause.DISCLOSURE
            ) from None
        if not isinstance(due_at, datetime) or due_at.tzinfo is None:
            raise InvalidCommand("a disclosure request needs a due date with a time zone", Clause.DISCLOSURE)
        if due_at <= cause.occurred_at:
            raise InvalidCommand("the due date must be after the request was received", Clause.DISCLOSURE)
        return create(
            cls,
            cls.Received,
            request_id,
            subject_id=subject_id,
            due_at=due_at,
            requested_format=fmt.value,
            cause=cause,
        )

    @property
    def is_open(self) -> bool:
        return self.state in OPEN_STATES

    def is_overdue(self, at: datetime) -> bool:
        return self.is_open and at > self.due_at

    def _require(self, states: set[str], action: str) -> None:
        if self.state not in states:
            raise InvalidTransition(
                f"cannot {action}: the disclosure request is {self.state}", Clause.DISCLOSURE
            )

    def request_verification(self, *, method: str, cause: Cause) -> None:
        """§7: the CA may ask for documents confirming the requester is the data subject."""
        self._require({RECEIVED, VERIFICATION_FAILED}, "request identity verification")
        if not isinstance(method, str) or not method.strip():
            raise InvalidCommand("identity verification needs a method", Clause.DISCLOSURE)
        self.trigger_event(self.VerificationRequested, method=method.strip(), cause=cause)

    def record_verified(self, *, evidence_ref: str, cause: Cause) -> None:
        self._require({VERIFICATION_REQUESTED}, "record a verified identity")
        if not isinstance(evidence_ref, str) or not evidence_ref.strip():
            raise InvalidCommand("a verified identity needs a reference to its evidence", Clause.DISCLOSURE)
        self.trigger_event(self.IdentityVerified, evidence_ref=evidence_ref.strip(), cause=cause)

    def record_verification_failed(self, *, reason: str, cause: Cause) -> None:
        self._require({VERIFICATION_REQUESTED}, "record a failed verification")
        if not isinstance(reason, str) or not reason.strip():
            raise InvalidCommand("a failed verification needs a reason", Clause.DISCLOSURE)
        self.trigger_event(self.IdentityVerificationFailed, reason=reason.strip(), cause=cause)

    def fulfil(self, *, package_digest: str, item_count: int, provision_count: int, cause: Cause) -> None:
        self._require({VERIFIED}, "fulfil (the requester's identity must be verified first)")
        self.trigger_event(
            self.Fulfilled,
            package_digest=package_digest,
            item_count=item_count,
            provision_count=provision_count,
            delivered_format=self.requested_format,
            cause=cause,
        )

    def refuse(self, *, ground: DisclosureRefusalGround | str, explanation: str, cause: Cause) -> None:
        self._require(set(OPEN_STATES), "refuse")
        try:
            checked = DisclosureRefusalGround(ground)
        except ValueError:
            allowed = ", ".join(g.value for g in DisclosureRefusalGround)
            raise InvalidCommand(
                f"unknown refusal ground; expected one of {allowed}", Clause.DISCLOSURE
            ) from None
        if checked is DisclosureRefusalGround.IDENTITY_NOT_VERIFIED and self.state == VERIFIED:
            raise InvalidTransition("the requester's identity was verified", Clause.DISCLOSURE)
        if not isinstance(explanation, str) or not explanation.strip():
            raise InvalidCommand("a refusal needs an explanation", Clause.DISCLOSURE)
        self.trigger_event(self.Refused, ground=checked.value, explanation=explanation.strip(), cause=cause)
