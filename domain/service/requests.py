"""Requests of data subjects: disclosure (§7) and erasure; and reading what is held."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate, DomainEventProtocol
from eventsourcing.persistence import StoredEvent
from eventsourcing.utils import get_topic

from domain.access import AccessRecord
from domain.account import AcmeAccount
from domain.cause import Cause
from domain.certificate import CertificateRecord
from domain.codes import DisclosureFormat, DisclosureRefusalGround
from domain.commands import CommandResult
from domain.disclosure import DisclosureRequest
from domain.errors import DomainError, InvalidCommand, NotFound
from domain.identity import SubjectKey, deterministic_id
from domain.package import build_package, package_digest
from domain.provision import Provision, add_years
from domain.service.base import HasEventsOf, LedgerBase
from domain.subject import DataSubject, LegalHold

#: CA issuance records are kept until two years after the certificate expires.
ISSUANCE_RECORD_RETENTION_YEARS = 2
#: Default time to answer a disclosure request ("without delay"; the CA's own target).
DISCLOSURE_DUE_DAYS = 14


class RequestCommands(LedgerBase):
    """Disclosure and erasure requests, legal holds, and the disclosure package."""

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
        holds = subject.provision_holds(moment, self.subject_provisions(subject_id, version=subject.version))
        for record_id, not_after in self._issuance_ends_of(subject):
            until = add_years(not_after, ISSUANCE_RECORD_RETENTION_YEARS)
            if until > moment:
                holds.append(
                    LegalHold("CA issuance record retention", until, f"certificate-record:{record_id}")
                )
        return sorted(holds, key=lambda h: (h.until, h.reference))

    #: Records read at once for legal holds: a person can be on millions, and only
    #: each one's end of validity is kept, not the record.
    holds_read_at_once = 1_000

    def _issuance_ends_of(self, subject: DataSubject) -> list[tuple[UUID, datetime]]:
        """Each issued certificate whose issuance record holds the subject's items, with its ``not_after``.

        A record holds them itself, or through the ACME account it was ordered under.
        """
        holder_ids = self.subject_records(subject.id, version=subject.version)
        events_of = self._events_of
        if events_of is None or self._batch is not None:
            note = self._issuance_from_aggregates  # a batch's unsaved events count too
        else:
            # Only what tells a record from an account, and each record's issuance: a
            # record's whole history is not needed (a fourth of the time to read it).
            note = partial(self._issuance_from_events, events_of)
        ends: dict[UUID, datetime] = {}
        for chunk in _chunks(holder_ids, self.holds_read_at_once):
            accounts = note(chunk, ends, accounts=True)
            linked = [c for account_id in accounts for c in self.account_certificates(account_id)]
            for linked_chunk in _chunks(linked, self.holds_read_at_once):
                note(linked_chunk, ends, accounts=False)
        return list(ends.items())

    def _issuance_from_events(
        self, events_of: HasEventsOf, ids: Sequence[UUID], ends: dict[UUID, datetime], *, accounts: bool
    ) -> list[UUID]:
        """Notes each issued record's ``not_after`` in ``ends``; returns the ACME accounts among ``ids``."""
        topics = [_COLLECTED, _ISSUED, *([_ACCOUNT_REGISTERED] if accounts else [])]
        kinds: dict[UUID, str] = {}
        for stored in events_of.events_of(ids, topics=topics):
            aggregate_id = cast(UUID, stored.originator_id)  # kiroku's recorders give UUIDs
            if stored.topic == _ISSUED:
                issued: Any = self.mapper.to_domain_event(stored)
                ends[aggregate_id] = issued.not_after
            else:
                kinds[aggregate_id] = "account" if stored.topic == _ACCOUNT_REGISTERED else "record"
        for aggregate_id in ids:
            if aggregate_id not in kinds:
                raise NotFound(f"certificate record {aggregate_id} not found")
        return [i for i in ids if kinds[i] == "account"]

    def _issuance_from_aggregates(
        self, ids: Sequence[UUID], ends: dict[UUID, datetime], *, accounts: bool
    ) -> list[UUID]:
        """As :meth:`_issuance_from_events`, from the aggregates (as a batch has them)."""
        found: list[UUID] = []
        for aggregate_id, aggregate in self._load_many(ids).items():
            if accounts and isinstance(aggregate, AcmeAccount):
                found.append(aggregate_id)
            elif not isinstance(aggregate, CertificateRecord):
                raise NotFound(f"certificate record {aggregate_id} not found")
            elif aggregate.not_after is not None:
                ends[aggregate_id] = aggregate.not_after
        return found

    def carry_out_erasure(self, subject: SubjectKey | UUID, *, cause: Cause) -> CommandResult:
        """Destroys the subject's key once no legal hold applies; refused while one does."""

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            data_subject = self._existing_subject(subject)
            holds = self.legal_holds(data_subject.id, self.clock())
            generation = data_subject.erase(holds=holds, cause=cause)
            # The key is destroyed in the same transaction as the Erased event.
            return [data_subject], data_subject.id, {"shred": [(data_subject.id, generation)]}

        return self._execute(cause, "carry_out_erasure", [str(self._resolve_subject(subject))], work)

    # Access to personal data (§8, §10) -----------------------------------

    def record_access(self, subject_ids: Sequence[UUID], *, endpoint: str, cause: Cause) -> CommandResult:
        """Records that a response showed these subjects' personal data to ``cause.actor``."""

        def work() -> tuple[Sequence[Aggregate], UUID | None, dict[str, Any]]:
            record = AccessRecord.record(
                access_id=uuid4(), subject_ids=subject_ids, endpoint=endpoint, cause=cause
            )
            return [record], record.id, {}

        return self._execute(cause, "record_access", [sorted(map(str, subject_ids)), endpoint], work)

    def record_accesses(
        self, accesses: Sequence[tuple[Sequence[UUID], str, Cause]]
    ) -> list[CommandResult | DomainError]:
        """Records several accesses (subject ids, endpoint, cause) in one transaction.

        For a group commit of concurrent readers: each gets its own result, or
        the error that refused its record (the others are recorded regardless).
        """
        outcomes, stored = self.access_records(accesses)
        if stored:
            ids = self.recorder.insert_events(stored)
            position = max(ids) if ids else None
            outcomes = [
                CommandResult(o.id, position) if isinstance(o, CommandResult) else o for o in outcomes
            ]
        return outcomes

    def access_records(
        self, accesses: Sequence[tuple[Sequence[UUID], str, Cause]]
    ) -> tuple[list[CommandResult | DomainError], list[StoredEvent]]:
        """The access records of :meth:`record_accesses`, made, not saved: the outcomes and the events.

        An outcome is a result without a position (the record's id) or the
        error that refused it. The caller stores the events in one transaction
        (an asyncio server does, without blocking its loop).
        """
        outcomes: list[CommandResult | DomainError] = []
        events: list[DomainEventProtocol[UUID]] = []
        for subject_ids, endpoint, cause in accesses:
            try:
                if not isinstance(cause, Cause):
                    raise InvalidCommand("every command needs its cause")
                record = AccessRecord.record(
                    access_id=uuid4(), subject_ids=subject_ids, endpoint=endpoint, cause=cause
                )
            except DomainError as refused:
                outcomes.append(refused)
                continue
            events.extend(record.collect_events())
            outcomes.append(CommandResult(record.id, None))
        return outcomes, [self.mapper.to_stored_event(e) for e in events]

    # Reading ---------------------------------------------------------------

    def data_subject(self, subject: SubjectKey | UUID) -> DataSubject:
        return self._existing_subject(subject)

    def certificate_record(self, record_id: UUID) -> CertificateRecord:
        return self._get(CertificateRecord, record_id, "certificate record")

    def acme_account(self, account_id: UUID) -> AcmeAccount:
        return self._get(AcmeAccount, account_id, "ACME account")

    def disclosure_package(self, subject_id: UUID, as_of: datetime | None = None) -> dict[str, Any]:
        """All the subject's information: items (current and superseded), records, provisions.

        With ``as_of``, as the ledger knew it then: rebuilt from the events recorded up to that moment.
        """
        load = self._load if as_of is None else (lambda aggregate_id: self._as_of(aggregate_id, as_of))
        subject = load(subject_id)
        if not isinstance(subject, DataSubject):
            raise NotFound(f"data subject {subject_id} not found" + (" at that moment" if as_of else ""))
        # As of the subject read, when others may be writing meanwhile.
        holder_ids = self.subject_records(subject_id, as_of, version=subject.version)
        noted = self.subject_provisions(subject_id, as_of, version=subject.version)
        provision_ids = [p.provision_id for p in noted]
        wanted = [*holder_ids, *provision_ids]
        if as_of is None and self._batch is None:
            found: dict[UUID, Any] = self._read_many(wanted)  # one query for all of them
        else:
            found = {aggregate_id: load(aggregate_id) for aggregate_id in wanted}
        holders: list[CertificateRecord | AcmeAccount] = []
        for holder_id in holder_ids:
            holder = found[holder_id]
            if not isinstance(holder, CertificateRecord | AcmeAccount):
                raise NotFound(f"record {holder_id} of subject {subject_id} not found")
            holders.append(holder)
        provisions = []
        for provision_id in provision_ids:
            provision = found[provision_id]
            if not isinstance(provision, Provision):
                raise NotFound(f"provision {provision_id} not found")
            provisions.append(provision)
        certificates = {
            h.id: self.account_certificates(h.id, as_of) for h in holders if isinstance(h, AcmeAccount)
        }
        moment = as_of or self.clock()
        return build_package(
            subject, holders, provisions, self.cipher, moment, account_certificates=certificates
        )

    def certificate_record_as_of(self, record_id: UUID, as_of: datetime) -> CertificateRecord:
        """The record as the ledger knew it at ``as_of`` (rebuilt from the events recorded up to then)."""
        record = self._as_of(record_id, as_of)
        if not isinstance(record, CertificateRecord):
            raise NotFound(f"certificate record {record_id} not found at that moment")
        return record

    def _as_of(self, aggregate_id: UUID, moment: datetime) -> object | None:
        """An aggregate at the last version recorded at or before ``moment``."""
        if moment.tzinfo is None:
            raise InvalidCommand("a moment needs a time zone")
        # The events read once are applied directly, rather than read again by the repository.
        aggregate: Any = None
        for event in self.events.get(aggregate_id):
            if getattr(event, "timestamp", moment) > moment:
                break
            aggregate = event.mutate(aggregate)  # type: ignore[attr-defined]
        found: object | None = aggregate
        return found


_COLLECTED = get_topic(CertificateRecord.Collected)
_ISSUED = get_topic(CertificateRecord.Issued)
_ACCOUNT_REGISTERED = get_topic(AcmeAccount.Registered)


def _chunks(ids: Sequence[UUID], size: int) -> Iterator[Sequence[UUID]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
