"""The certificate-information ledger: kiroku's application (service layer).

Commands take plain values and a :class:`~domain.cause.Cause`, check the
policy through the aggregates, seal personal values under the subject's key and
record every resulting event in one transaction, together with an
:class:`~domain.receipt.UpstreamReceipt` when the command came from an upstream
event, so that replaying it changes nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import json
import random
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from enum import Enum
from typing import Any, TypeVar
from uuid import UUID, uuid4

from eventsourcing.application import AggregateNotFoundError, Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import ApplicationRecorder, IntegrityError, JSONTranscoder

from domain.cause import Cause
from domain.certificate import CertificateIdentity, CertificateRecord
from domain.codes import (
    Channel,
    Clause,
    DisclosureFormat,
    DisclosureRefusalGround,
    LegalGround,
    ProvisionCategory,
)
from domain.commands import CommandResult, PersonalItemInput, ProvidedItemInput
from domain.disclosure import DisclosureRequest
from domain.errors import DomainError, InvalidCommand, NotFound, PolicyViolation, UpstreamEventConflict
from domain.identity import SubjectKey, deterministic_id, subject_id_for
from domain.package import build_package, package_digest
from domain.personal import KeyRing, PersonalDataCipher, Sealed
from domain.policy import CATALOGUE_ID, PolicyCatalogue, PolicyVersion
from domain.provision import CtSubmission, ProvidedItem, Provision, Recipient, add_years
from domain.receipt import UpstreamReceipt, receipt_id
from domain.subject import DataSubject, LegalHold
from domain.transcodings import register_kiroku_transcodings

#: CA issuance records are kept until two years after the certificate expires.
ISSUANCE_RECORD_RETENTION_YEARS = 2
#: Default time to answer a disclosure request ("without delay"; the CA's own target).
DISCLOSURE_DUE_DAYS = 14
_MAX_ATTEMPTS = 12

A = TypeVar("A", bound=Aggregate)


class ConcurrencyConflict(DomainError):
    """Raised when a command kept conflicting with concurrent writers and gave up."""


def _canonical(value: Any) -> Any:
    """A JSON-able form of a command's arguments, every field included.

    ``repr`` will not do: the input types redact personal values in their
    ``repr``, and a replay with another value must not pass for a duplicate.
    """
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"__type__": type(value).__name__, **_canonical(dataclasses.asdict(value))}
    if isinstance(value, Mapping):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_canonical(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, UUID | Enum):
        return str(value.value if isinstance(value, Enum) else value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"unsupported value of type {type(value).__name__}")


def _utcnow() -> datetime:
    return datetime.now(UTC)


class Ledger(Application[UUID]):
    """Records collection, correction, provision, stop, disclosure and erasure."""

    name = "kiroku"

    def __init__(
        self,
        env: Mapping[str, str] | None = None,
        *,
        keyring_factory: Callable[[ApplicationRecorder], KeyRing],
        subject_id_secret: bytes,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        super().__init__(env)
        self.keyring = keyring_factory(self.recorder)
        self.cipher = PersonalDataCipher(self.keyring)
        self._subject_secret = subject_id_secret
        self.clock = clock

    # Infrastructure -------------------------------------------------------

    def construct_recorder(self) -> ApplicationRecorder:
        # A process recorder, so that ingest can record Kafka positions as
        # tracking rows in the same transaction as the events they caused.
        recorder = self.factory.process_recorder()
        assert isinstance(recorder, ApplicationRecorder)
        return recorder

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_kiroku_transcodings(transcoder)

    # Shared mechanics -----------------------------------------------------

    def _get(self, cls: type[A], aggregate_id: UUID, what: str) -> A:
        try:
            aggregate: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise NotFound(f"{what} {aggregate_id} not found") from None
        if not isinstance(aggregate, cls):
            raise NotFound(f"{what} {aggregate_id} not found")
        return aggregate

    def _find(self, cls: type[A], aggregate_id: UUID) -> A | None:
        try:
            aggregate: object = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, cls) else None

    def _fingerprint(self, command: str, args: Any) -> str:
        # Keyed, so a fingerprint over personal values reveals nothing of them.
        try:
            canonical = json.dumps([command, _canonical(args)], sort_keys=True, ensure_ascii=False)
        except TypeError as exc:
            raise InvalidCommand(f"{command}: {exc}") from None
        return hmac.new(self._subject_secret, canonical.encode(), hashlib.sha256).hexdigest()

    def _execute(
        self,
        cause: Cause,
        command: str,
        args: Any,
        work: Callable[[], tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]],
    ) -> CommandResult:
        """Runs ``work`` and saves what it changed, once per upstream event id.

        ``work`` returns the aggregates to save, the result id and extra keyword
        arguments for the recorder (such as keys to shred). It is re-run from
        fresh state when a concurrent writer got there first.
        """
        if not isinstance(cause, Cause):
            raise InvalidCommand("every command needs its cause")
        fingerprint = self._fingerprint(command, args) if cause.upstream_event_id else ""
        for attempt in range(_MAX_ATTEMPTS):
            duplicate = self._check_receipt(cause, command, fingerprint)
            if duplicate is not None:
                return duplicate
            try:
                aggregates, result_id, save_kwargs = work()
            except DomainError:
                # A concurrent delivery of this same upstream event may have been
                # recorded since the check above; then this one is a duplicate.
                duplicate = self._check_receipt(cause, command, fingerprint)
                if duplicate is not None:
                    return duplicate
                raise
            to_save: list[Aggregate] = list(aggregates)
            if cause.upstream_event_id:
                to_save.append(
                    UpstreamReceipt.applied(
                        source_system=cause.source_system,
                        upstream_event_id=cause.upstream_event_id,
                        command=command,
                        fingerprint=fingerprint,
                        result_id=result_id,
                        cause=cause,
                    )
                )
            try:
                recordings = self.save(*to_save, **save_kwargs)
            except IntegrityError:
                # Someone else wrote one of these aggregates (or this very
                # upstream event) first: decide again from the new state.
                if attempt == _MAX_ATTEMPTS - 1:
                    raise ConcurrencyConflict(
                        f"{command} kept conflicting with concurrent writes; try again"
                    ) from None
                # Jittered backoff, so racing writers do not collide again in step.
                time.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311 - not for secrets
                continue
            position = max((r.notification.id for r in recordings), default=None)
            return CommandResult(result_id, position)
        raise AssertionError("unreachable")  # pragma: no cover

    def _check_receipt(self, cause: Cause, command: str, fingerprint: str) -> CommandResult | None:
        if not cause.upstream_event_id:
            return None
        receipt = self._find(UpstreamReceipt, receipt_id(cause.source_system, cause.upstream_event_id))
        if receipt is None:
            return None
        if receipt.command != command or receipt.fingerprint != fingerprint:
            raise UpstreamEventConflict(
                f"upstream event {cause.upstream_event_id} from {cause.source_system} was already "
                f"applied as a different {receipt.command} command"
            )
        return CommandResult(receipt.result_id, self.recorder.max_notification_id(), duplicate=True)

    def subject_id(self, key: SubjectKey) -> UUID:
        """The pseudonymous id of the subject with this natural key."""
        return subject_id_for(key, self._subject_secret)

    def _resolve_subject(self, subject: SubjectKey | UUID) -> UUID:
        if isinstance(subject, UUID):
            return subject
        if isinstance(subject, SubjectKey):
            return self.subject_id(subject)
        raise InvalidCommand("a data subject is named by its key or its id")

    def _existing_subject(self, subject: SubjectKey | UUID) -> DataSubject:
        return self._get(DataSubject, self._resolve_subject(subject), "data subject")

    # Policy (§3, §12) -----------------------------------------------------

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

    # Collection (§2, §5) ---------------------------------------------------

    @staticmethod
    def certificate_record_id(source_system: str, record_ref: str) -> UUID:
        return deterministic_id("certificate-record", source_system, record_ref)

    def _subjects_for(self, keys: Iterable[SubjectKey], cause: Cause) -> dict[SubjectKey, DataSubject]:
        subjects: dict[SubjectKey, DataSubject] = {}
        for key in keys:
            if key in subjects:
                continue
            if not isinstance(key, SubjectKey):
                raise InvalidCommand("a personal item needs its data subject's key")
            subject_id = self.subject_id(key)
            existing = self._find(DataSubject, subject_id)
            subjects[key] = existing or DataSubject.register(
                subject_id=subject_id, key_kind=key.kind, cause=cause
            )
        return subjects

    def _seal(self, subject: DataSubject, item: PersonalItemInput) -> Sealed:
        return self.cipher.seal(subject.id, subject.key_generation, str(item.kind), item.value)

    def collect(
        self,
        *,
        record_ref: str,
        channel: Channel | str,
        purposes: Sequence[str],
        certificate: CertificateIdentity,
        organisation: Mapping[str, str] | None = None,
        personal_items: Sequence[PersonalItemInput] = (),
        cause: Cause,
    ) -> CommandResult:
        """§5: records a certificate's information, bound to the policy version in force."""
        args = [record_ref, str(channel), sorted(purposes), certificate, organisation, list(personal_items)]

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            if not isinstance(record_ref, str) or not record_ref.strip():
                raise InvalidCommand("a collection needs the upstream record reference")
            record_id = self.certificate_record_id(cause.source_system, record_ref)
            if self._find(CertificateRecord, record_id) is not None:
                raise PolicyViolation(
                    f"certificate record {record_id} was already collected; changes to it are corrections",
                    Clause.CORRECTION,
                )
            policy = self.policy_version_at(cause.occurred_at)
            if policy is None:
                raise PolicyViolation(
                    f"no policy version was in force at {cause.occurred_at.isoformat()}", Clause.REVISION
                )
            subjects = self._subjects_for((i.subject for i in personal_items), cause)
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
                cause=cause,
            )
            for subject in subjects.values():
                subject.appear_on(record_id, cause)
            return [record, *subjects.values()], record_id, {}

        return self._execute(cause, "collect", args, work)

    # Certificate lifecycle ------------------------------------------------

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

    # Correction (§6) -------------------------------------------------------

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
                if current is not None and self.cipher.open(current) == item.value:
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
            provision_id = (
                deterministic_id("provision", cause.source_system, cause.upstream_event_id)
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
            record = None
            if certificate_record_id is not None:
                record = self._get(CertificateRecord, certificate_record_id, "certificate record")
                for provided in resolved:
                    if (
                        provided.subject_id is not None
                        and (provided.subject_id, provided.item) not in record.items
                    ):
                        raise InvalidCommand(
                            f"item {provided.item} of subject {provided.subject_id} is not on the record",
                            Clause.PROVISION,
                        )
            provision = Provision.record(
                provision_id=provision_id,
                category=category,
                recipient=recipient,
                items=resolved,
                certificate_record_id=certificate_record_id,
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
            return changed, provision_id, {}

        return self._execute(cause, "record_provision", args, work)

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
            data_subject.decide_stop(request_id=request_id, accepted=accepted, reason=reason, cause=cause)
            return [data_subject], data_subject.id, {}

        args = [str(self._resolve_subject(subject)), request_id, accepted, reason]
        return self._execute(cause, "decide_stop", args, work)

    # Disclosure (§7) -------------------------------------------------------

    def open_disclosure(
        self,
        subject: SubjectKey | UUID,
        *,
        requested_format: DisclosureFormat | str,
        due_at: datetime | None = None,
        cause: Cause,
    ) -> CommandResult:
        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            data_subject = self._existing_subject(subject)
            request_id = (
                deterministic_id("disclosure", cause.source_system, cause.upstream_event_id)
                if cause.upstream_event_id
                else uuid4()
            )
            request = DisclosureRequest.receive(
                request_id=request_id,
                subject_id=data_subject.id,
                due_at=due_at or cause.occurred_at + timedelta(days=DISCLOSURE_DUE_DAYS),
                requested_format=requested_format,
                cause=cause,
            )
            return [request], request_id, {}

        args = [str(self._resolve_subject(subject)), str(requested_format), due_at]
        return self._execute(cause, "open_disclosure", args, work)

    def _on_disclosure(
        self,
        request_id: UUID,
        command: str,
        args: Any,
        cause: Cause,
        act: Callable[[DisclosureRequest], None],
    ) -> CommandResult:
        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            request = self._get(DisclosureRequest, request_id, "disclosure request")
            act(request)
            return [request], request_id, {}

        return self._execute(cause, command, [request_id, args], work)

    def request_identity_verification(self, request_id: UUID, *, method: str, cause: Cause) -> CommandResult:
        return self._on_disclosure(
            request_id,
            "request_identity_verification",
            method,
            cause,
            lambda r: r.request_verification(method=method, cause=cause),
        )

    def record_identity_verified(self, request_id: UUID, *, evidence_ref: str, cause: Cause) -> CommandResult:
        return self._on_disclosure(
            request_id,
            "record_identity_verified",
            evidence_ref,
            cause,
            lambda r: r.record_verified(evidence_ref=evidence_ref, cause=cause),
        )

    def record_identity_verification_failed(
        self, request_id: UUID, *, reason: str, cause: Cause
    ) -> CommandResult:
        return self._on_disclosure(
            request_id,
            "record_identity_verification_failed",
            reason,
            cause,
            lambda r: r.record_verification_failed(reason=reason, cause=cause),
        )

    def refuse_disclosure(
        self, request_id: UUID, *, ground: DisclosureRefusalGround | str, explanation: str, cause: Cause
    ) -> CommandResult:
        return self._on_disclosure(
            request_id,
            "refuse_disclosure",
            [str(ground), explanation],
            cause,
            lambda r: r.refuse(ground=ground, explanation=explanation, cause=cause),
        )

    def fulfil_disclosure(self, request_id: UUID, *, cause: Cause) -> tuple[CommandResult, dict[str, Any]]:
        """§7: answers with a package of all the subject's information, provision records included."""
        packages: list[dict[str, Any]] = []

        def act(request: DisclosureRequest) -> None:
            package = self.disclosure_package(request.subject_id)
            packages.append(package)
            request.fulfil(
                package_digest=package_digest(package),
                item_count=sum(len(r["items"]) for r in package["records"]),
                provision_count=len(package["provisions"]),
                cause=cause,
            )

        result = self._on_disclosure(request_id, "fulfil_disclosure", None, cause, act)
        if not packages:  # a replay: the package is built again from the record
            request = self._get(DisclosureRequest, request_id, "disclosure request")
            packages.append(self.disclosure_package(request.subject_id))
        return result, packages[-1]

    def disclosure_request(self, request_id: UUID) -> DisclosureRequest:
        return self._get(DisclosureRequest, request_id, "disclosure request")

    # Erasure (crypto-shredding) -------------------------------------------

    def request_erasure(self, subject: SubjectKey | UUID, *, cause: Cause) -> CommandResult:
        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            data_subject = self._existing_subject(subject)
            data_subject.request_erasure(cause)
            return [data_subject], data_subject.id, {}

        return self._execute(cause, "request_erasure", [str(self._resolve_subject(subject))], work)

    def legal_holds(self, subject_id: UUID, at: datetime | None = None) -> list[LegalHold]:
        """Retention obligations on the subject's data that are still running at ``at``."""
        moment = at or self.clock()
        subject = self._get(DataSubject, subject_id, "data subject")
        holds = subject.provision_holds(moment)
        for record_id in subject.certificate_record_ids:
            record = self._get(CertificateRecord, record_id, "certificate record")
            if record.not_after is None:
                continue
            until = add_years(record.not_after, ISSUANCE_RECORD_RETENTION_YEARS)
            if until > moment:
                holds.append(
                    LegalHold("CA issuance record retention", until, f"certificate-record:{record_id}")
                )
        return sorted(holds, key=lambda h: (h.until, h.reference))

    def carry_out_erasure(self, subject: SubjectKey | UUID, *, cause: Cause) -> CommandResult:
        """Destroys the subject's key once no legal hold applies; refused while one does."""

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            data_subject = self._existing_subject(subject)
            holds = self.legal_holds(data_subject.id, self.clock())
            generation = data_subject.erase(holds=holds, cause=cause)
            # The key is destroyed in the same transaction as the Erased event.
            return [data_subject], data_subject.id, {"shred": [(data_subject.id, generation)]}

        return self._execute(cause, "carry_out_erasure", [str(self._resolve_subject(subject))], work)

    # Reading ---------------------------------------------------------------

    def data_subject(self, subject: SubjectKey | UUID) -> DataSubject:
        return self._existing_subject(subject)

    def certificate_record(self, record_id: UUID) -> CertificateRecord:
        return self._get(CertificateRecord, record_id, "certificate record")

    def provision(self, provision_id: UUID) -> Provision:
        return self._get(Provision, provision_id, "provision")

    def disclosure_package(self, subject_id: UUID) -> dict[str, Any]:
        """All the subject's information: items (current and superseded), records, provisions."""
        subject = self._get(DataSubject, subject_id, "data subject")
        records = [
            self._get(CertificateRecord, rid, "certificate record") for rid in subject.certificate_record_ids
        ]
        provisions = [self._get(Provision, pid, "provision") for pid, _, _ in subject.provisions]
        return build_package(subject, records, provisions, self.cipher, self.clock())
