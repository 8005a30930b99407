"""Commands on third-party provision (§4) and its stop (§11)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from domain.account import AcmeAccount
from domain.cause import Cause
from domain.certificate import CertificateRecord
from domain.codes import Clause, LegalGround, ProvisionCategory
from domain.commands import CommandResult, ProvidedItemInput
from domain.errors import InvalidCommand
from domain.identity import SubjectKey, deterministic_id
from domain.provision import CtSubmission, ProvidedItem, Provision, Recipient
from domain.service.base import LedgerBase
from domain.subject import DataSubject


class ProvisionCommands(LedgerBase):
    """Recording provisions, and stop requests and their decisions."""

    @staticmethod
    def provision_id_for(source_system: str, upstream_event_id: str) -> UUID:
        """The id of the provision an upstream event records."""
        return deterministic_id("provision", source_system, upstream_event_id)

    def provision(self, provision_id: UUID) -> Provision:
        return self._get(Provision, provision_id, "provision")

    # Third-party provision (§4) -------------------------------------------

    def record_provision(
        self,
        *,
        category: ProvisionCategory | str,
        recipient: Recipient,
        items: Sequence[ProvidedItemInput],
        certificate_record_id: UUID | None = None,
        legal_ground: LegalGround | str | None = None,
        ct_submission: CtSubmission | None = None,
        cause: Cause,
    ) -> CommandResult:
        """§4: records a provision with its basis; §11: refused under 4.1 after an accepted stop."""
        args = [str(category), recipient, list(items), certificate_record_id, legal_ground, ct_submission]

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            record = None
            if certificate_record_id is not None:
                record = self._get(CertificateRecord, certificate_record_id, "certificate record")
            provision, changed = self._provide(
                category=category,
                recipient=recipient,
                items=items,
                record=record,
                legal_ground=legal_ground,
                ct_submission=ct_submission,
                cause=cause,
            )
            return changed, provision.id, {}

        return self._execute(cause, "record_provision", args, work)

    def _provide(
        self,
        *,
        category: ProvisionCategory | str,
        recipient: Recipient,
        items: Sequence[ProvidedItemInput],
        record: CertificateRecord | None,
        legal_ground: LegalGround | str | None,
        ct_submission: CtSubmission | None,
        cause: Cause,
    ) -> tuple[Provision, list[Aggregate]]:
        """A provision and every aggregate it changed; ``record`` is the one it concerns, if any."""
        provision_id = (
            self.provision_id_for(cause.source_system, cause.upstream_event_id)
            if cause.upstream_event_id
            else uuid4()
        )
        resolved: list[ProvidedItem] = []
        subjects: dict[UUID, DataSubject] = {}
        for item in items:
            if item.subject is None:
                resolved.append(ProvidedItem(item.item))
                continue
            subject = self._existing_subject(item.subject)
            subjects[subject.id] = subject
            resolved.append(ProvidedItem(item.item, subject.id))
        if record is not None:
            held = set(record.items)
            if record.account_id is not None:
                held |= set(self._get(AcmeAccount, record.account_id, "ACME account").items)
            for provided in resolved:
                if provided.subject_id is not None and (provided.subject_id, provided.item) not in held:
                    raise InvalidCommand(
                        f"item {provided.item} of subject {provided.subject_id} is not on the record",
                        Clause.PROVISION,
                    )
        provision = Provision.record(
            provision_id=provision_id,
            category=category,
            recipient=recipient,
            items=resolved,
            certificate_record_id=record.id if record is not None else None,
            legal_ground=legal_ground,
            ct_submission=ct_submission,
            cause=cause,
        )
        checked_category = ProvisionCategory(provision.category)
        for subject in subjects.values():
            subject.note_provision(
                provision_id=provision_id,
                category=checked_category,
                retention_until=provision.retention_until,
                cause=cause,
            )
        changed: list[Aggregate] = [provision, *subjects.values()]
        if record is not None:
            record.note_provision(
                provision_id=provision_id,
                category=checked_category,
                recipient_id=recipient.recipient_id,
                cause=cause,
            )
            changed.append(record)
        return provision, changed

    # Stop of third-party provision (§11) ---------------------------------

    def request_stop(
        self, subject: SubjectKey | UUID, *, request_id: str | None = None, cause: Cause
    ) -> CommandResult:
        rid = request_id or cause.upstream_event_id or uuid4().hex

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            data_subject = self._existing_subject(subject)
            data_subject.request_stop(request_id=rid, cause=cause)
            return [data_subject], data_subject.id, {}

        return self._execute(cause, "request_stop", [str(self._resolve_subject(subject)), rid], work)

    def decide_stop(
        self, subject: SubjectKey | UUID, *, request_id: str, accepted: bool, reason: str, cause: Cause
    ) -> CommandResult:
        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            data_subject = self._existing_subject(subject)
            data_subject.decide_stop(
                request_id=request_id,
                accepted=accepted,
                reason=reason,
                provisions=self.subject_provisions(data_subject.id, version=data_subject.version),
                cause=cause,
            )
            return [data_subject], data_subject.id, {}

        args = [str(self._resolve_subject(subject)), request_id, accepted, reason]
        return self._execute(cause, "decide_stop", args, work)
