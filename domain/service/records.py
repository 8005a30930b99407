"""Commands on the policy (§3, §12), certificate records (§5, §6) and ACME accounts."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.account import AcmeAccount
from domain.cause import Cause
from domain.certificate import CertificateIdentity, CertificateRecord
from domain.codes import Channel, Clause, PersonalItemKind
from domain.commands import CommandResult, PersonalItemInput
from domain.errors import InvalidCommand, PolicyViolation
from domain.identity import SubjectKey, deterministic_id
from domain.personal import Sealed
from domain.policy import CATALOGUE_ID, PolicyCatalogue, PolicyVersion
from domain.service.base import LedgerBase
from domain.subject import DataSubject


class RecordCommands(LedgerBase):
    """Publishing the policy; collecting, issuing, correcting and revoking records; ACME accounts."""

    # Policy (§3, §12) -------------------------------------------------------

    def publish_policy(
        self,
        *,
        version: str,
        effective_from: datetime,
        announced_at: datetime,
        purposes: Mapping[str, str],
        channels: Sequence[str],
        justification: str | None = None,
        cause: Cause,
    ) -> CommandResult:
        """Publishes the first version of the policy, or announces a revision."""
        args = [version, effective_from, announced_at, dict(purposes), list(channels), justification]

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            catalogue = self._find(PolicyCatalogue, CATALOGUE_ID)
            if catalogue is None:
                catalogue = PolicyCatalogue.publish(
                    version=version,
                    effective_from=effective_from,
                    announced_at=announced_at,
                    purposes=purposes,
                    channels=channels,
                    cause=cause,
                )
            else:
                catalogue.revise(
                    version=version,
                    effective_from=effective_from,
                    announced_at=announced_at,
                    purposes=purposes,
                    channels=channels,
                    justification=justification,
                    cause=cause,
                )
            return [catalogue], CATALOGUE_ID, {}

        return self._execute(cause, "publish_policy", args, work)

    def policy_versions(self) -> list[PolicyVersion]:
        catalogue = self._find(PolicyCatalogue, CATALOGUE_ID)
        return list(catalogue.versions) if catalogue else []

    def policy_version_at(self, moment: datetime) -> PolicyVersion | None:
        catalogue = self._find(PolicyCatalogue, CATALOGUE_ID)
        return catalogue.version_at(moment) if catalogue else None

    def _policy_in_force(self, cause: Cause) -> PolicyVersion:
        policy = self.policy_version_at(cause.occurred_at)
        if policy is None:
            raise PolicyViolation(
                f"no policy version was in force at {cause.occurred_at.isoformat()}", Clause.REVISION
            )
        return policy

    # Collection (§2, §5) ----------------------------------------------------

    @staticmethod
    def certificate_record_id(source_system: str, record_ref: str) -> UUID:
        return deterministic_id("certificate-record", source_system, record_ref)

    @staticmethod
    def acme_account_id(source_system: str, account_ref: str) -> UUID:
        return deterministic_id("acme-account", source_system, account_ref)

    def collect(
        self,
        *,
        record_ref: str,
        channel: Channel | str,
        purposes: Sequence[str],
        certificate: CertificateIdentity,
        organisation: Mapping[str, str] | None = None,
        personal_items: Sequence[PersonalItemInput] = (),
        account_ref: str | None = None,
        validity: tuple[datetime, datetime] | None = None,
        cause: Cause,
    ) -> CommandResult:
        """§5: records a certificate's information, bound to the policy version in force.

        ``account_ref`` links the record to the ACME account it was ordered under;
        ``validity`` (not before, not after) records its issuance in the same step.
        """
        args = [
            record_ref,
            str(channel),
            sorted(purposes),
            certificate,
            organisation,
            list(personal_items),
            account_ref,
            list(validity) if validity else None,
        ]

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            record, changed = self._new_record(
                record_ref=record_ref,
                channel=channel,
                purposes=purposes,
                certificate=certificate,
                organisation=organisation,
                personal_items=personal_items,
                account_ref=account_ref,
                validity=validity,
                cause=cause,
            )
            return changed, record.id, {}

        return self._execute(cause, "collect", args, work)

    def _new_record(
        self,
        *,
        record_ref: str,
        channel: Channel | str,
        purposes: Sequence[str],
        certificate: CertificateIdentity,
        organisation: Mapping[str, str] | None,
        personal_items: Sequence[PersonalItemInput],
        account_ref: str | None,
        validity: tuple[datetime, datetime] | None,
        cause: Cause,
    ) -> tuple[CertificateRecord, list[Aggregate]]:
        """A newly collected record and every aggregate the collection changed."""
        if not isinstance(record_ref, str) or not record_ref.strip():
            raise InvalidCommand("a collection needs the upstream record reference")
        record_id = self.certificate_record_id(cause.source_system, record_ref)
        if self._find(CertificateRecord, record_id) is not None:
            raise PolicyViolation(
                f"certificate record {record_id} was already collected; changes to it are corrections",
                Clause.CORRECTION,
            )
        policy = self._policy_in_force(cause)
        account = None
        if account_ref is not None:
            account = self._get(
                AcmeAccount, self.acme_account_id(cause.source_system, account_ref), "ACME account"
            )
        subjects = self._subjects_for([i.subject for i in personal_items], cause)
        sealed = [self._seal(subjects[item.subject], item) for item in personal_items]
        record = CertificateRecord.collect(
            record_id=record_id,
            record_ref=record_ref.strip(),
            channel=channel,
            policy=policy,
            purposes=list(purposes),
            certificate=certificate,
            organisation=organisation,
            items=sealed,
            account_id=account.id if account else None,
            cause=cause,
        )
        if validity is not None:
            self._issue(record, certificate, validity, cause)
        for subject in subjects.values():
            subject.appear_on(record_id, cause)
        changed: list[Aggregate] = [record, *subjects.values()]
        if account is not None:
            account.link_certificate(record_id, cause)
            changed.append(account)
        return record, changed

    @staticmethod
    def _issue(
        record: CertificateRecord,
        certificate: CertificateIdentity,
        validity: tuple[datetime, datetime],
        cause: Cause,
    ) -> None:
        if not certificate.serial:
            raise InvalidCommand("an issued certificate needs its serial")
        record.record_issuance(
            serial=certificate.serial, not_before=validity[0], not_after=validity[1], cause=cause
        )

    # Certificate lifecycle --------------------------------------------------

    def record_issuance(
        self, record_id: UUID, *, serial: str, not_before: datetime, not_after: datetime, cause: Cause
    ) -> CommandResult:
        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            record = self._get(CertificateRecord, record_id, "certificate record")
            record.record_issuance(serial=serial, not_before=not_before, not_after=not_after, cause=cause)
            return [record], record_id, {}

        return self._execute(cause, "record_issuance", [record_id, serial, not_before, not_after], work)

    def record_revocation(
        self, record_id: UUID, *, reason: str, revoked_at: datetime, cause: Cause
    ) -> CommandResult:
        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            record = self._get(CertificateRecord, record_id, "certificate record")
            record.revoke(reason=reason, revoked_at=revoked_at, cause=cause)
            return [record], record_id, {}

        return self._execute(cause, "record_revocation", [record_id, reason, revoked_at], work)

    # Correction (§6) --------------------------------------------------------

    def correct(
        self,
        record_id: UUID,
        *,
        channel: Channel | str,
        certificate_changes: Mapping[str, Any] | None = None,
        personal_changes: Sequence[PersonalItemInput] = (),
        cause: Cause,
    ) -> CommandResult:
        """§6: a correction through a designated operator, or the ACME server for ACME records."""
        args = [record_id, str(channel), dict(certificate_changes or {}), list(personal_changes)]

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            record = self._get(CertificateRecord, record_id, "certificate record")
            # Check the channel before touching any key or value.
            record.check_correction_channel(channel)
            sealed: list[Sealed] = []
            for item in personal_changes:
                if not isinstance(item.subject, SubjectKey):
                    raise InvalidCommand("a personal item needs its data subject's key")
                subject = self._find(DataSubject, self.subject_id(item.subject))
                if subject is None or subject.id not in record.subject_ids:
                    raise InvalidCommand(
                        "a correction changes the items of subjects already on the record", Clause.CORRECTION
                    )
                current = record.items.get((subject.id, str(item.kind)))
                if current is not None and self._reveal(current) == item.value:
                    continue  # unchanged
                sealed.append(self._seal(subject, item))
            record.correct(
                channel=channel,
                certificate_changes=certificate_changes or {},
                personal_changes=sealed,
                cause=cause,
            )
            return [record], record_id, {}

        return self._execute(cause, "correct", args, work)

    # ACME accounts (§5 C2, §6) ---------------------------------------------

    def register_account(
        self, *, account_ref: str, contacts: Sequence[str], purposes: Sequence[str], cause: Cause
    ) -> CommandResult:
        """An ACME account's contact e-mail addresses, collected through the ACME server (C2)."""

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            if not isinstance(account_ref, str) or not account_ref.strip():
                raise InvalidCommand("an ACME account needs its reference")
            account_id = self.acme_account_id(cause.source_system, account_ref)
            if self._find(AcmeAccount, account_id) is not None:
                raise PolicyViolation(
                    f"ACME account {account_id} was already registered; contact changes are corrections",
                    Clause.CORRECTION,
                )
            policy = self._policy_in_force(cause)
            items = _contact_items(contacts)
            subjects = self._subjects_for([i.subject for i in items], cause)
            sealed = [self._seal(subjects[i.subject], i) for i in items]
            account = AcmeAccount.register(
                account_id=account_id,
                account_ref=account_ref,
                policy=policy,
                purposes=purposes,
                contacts=sealed,
                cause=cause,
            )
            for subject in subjects.values():
                subject.appear_on(account_id, cause)
            return [account, *subjects.values()], account_id, {}

        return self._execute(cause, "register_account", [account_ref, list(contacts), sorted(purposes)], work)

    def update_account_contacts(
        self, *, account_ref: str, contacts: Sequence[str], channel: Channel | str, cause: Cause
    ) -> CommandResult:
        """§6: the account's contact list replaced through the ACME server (or an operator)."""

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            account = self._get(
                AcmeAccount, self.acme_account_id(cause.source_system, account_ref), "ACME account"
            )
            items = _contact_items(contacts)
            wanted = {self.subject_id(i.subject): i for i in items}
            removed = [s for s in account.subject_ids if s not in wanted]
            new_items = [i for s, i in wanted.items() if (s, "email") not in account.items]
            subjects = self._subjects_for([i.subject for i in new_items], cause)
            added = [self._seal(subjects[i.subject], i) for i in new_items]
            # A contact removed earlier and added again appeared on the account then.
            were_on = {sealed.subject_id for _, sealed in account.superseded}
            account.update_contacts(channel=channel, added=added, removed=removed, cause=cause)
            for subject in subjects.values():
                if subject.id not in were_on:
                    subject.appear_on(account.id, cause)
            return [account, *subjects.values()], account.id, {}

        args = [account_ref, list(contacts), str(channel)]
        return self._execute(cause, "update_account_contacts", args, work)

    def deactivate_account(self, *, account_ref: str, cause: Cause) -> CommandResult:
        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            account = self._get(
                AcmeAccount, self.acme_account_id(cause.source_system, account_ref), "ACME account"
            )
            account.deactivate(cause)
            return [account], account.id, {}

        return self._execute(cause, "deactivate_account", [account_ref], work)


def _contact_items(contacts: Sequence[str]) -> list[PersonalItemInput]:
    if isinstance(contacts, str) or not isinstance(contacts, Sequence):
        raise InvalidCommand("an ACME account's contacts are a list of e-mail addresses")
    items: list[PersonalItemInput] = []
    for address in contacts:
        key = SubjectKey.email(address)
        items.append(PersonalItemInput(key, PersonalItemKind.EMAIL, key.value))
    return items
