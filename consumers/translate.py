"""One upstream message, one ledger command: no business rules here.

The translation reads the fields a message type carries and calls the ledger
method that records it. Whatever the ledger refuses comes back as a
:class:`~domain.errors.DomainError`; a message whose fields cannot even form a
command (a contact with neither a reference nor an e-mail address, say) is
refused the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from consumers.contract import Decoded
from domain.application import Ledger
from domain.cause import Cause
from domain.certificate import CertificateIdentity
from domain.codes import Channel, PersonalItemKind, ProvisionCategory
from domain.commands import CommandResult, PersonalItemInput, ProvidedItemInput
from domain.errors import InvalidCommand
from domain.identity import SubjectKey
from domain.policy import CATALOGUE_ID
from domain.provision import CtSubmission, Recipient
from domain.quickinit import quick_init
from domain.receipt import receipt_id

UPSTREAM = "jp.kiroku.upstream"


@quick_init
@dataclass(frozen=True)
class Position:
    """Where a message was read: topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    def __str__(self) -> str:
        return f"{self.topic}/{self.partition}/{self.offset}"


def cause_of(record: dict[str, Any], position: Position) -> Cause:
    envelope = record["envelope"]
    return Cause(
        actor=envelope["actor"],
        source_system=envelope["source_system"],
        occurred_at=envelope["occurred_at"],
        upstream_event_id=str(envelope["event_id"]),
        correlation_id=envelope.get("correlation_id"),
        kafka_position=str(position),
    )


def _certificate(fields: dict[str, Any]) -> CertificateIdentity:
    return CertificateIdentity(
        fields["common_name"], list(fields["sans"]), fields["validation"], fields["serial"]
    )


def _recipient(fields: dict[str, Any]) -> Recipient:
    return Recipient(fields["recipient_id"], fields["name"], fields["country"])


def _organisation(fields: dict[str, Any] | None) -> dict[str, str] | None:
    if fields is None:
        return None
    return {k: v for k, v in fields.items() if v is not None}


def _subject_key(source: str, subject_ref: str | None, email: str | None) -> SubjectKey:
    if subject_ref:
        return SubjectKey.upstream(source, subject_ref)
    if email:
        return SubjectKey.email(email)
    raise InvalidCommand("a contact needs a subject_ref or an e-mail address")


#: The kinds of personal item in the order a contact's items are taken (the enum's).
_ITEM_KINDS = tuple((kind, kind.value) for kind in PersonalItemKind)


def _contact_items(source: str, contact: dict[str, Any]) -> list[PersonalItemInput]:
    key = _subject_key(source, contact.get("subject_ref"), contact.get("email"))
    return [
        PersonalItemInput(key, kind, contact[name])
        for kind, name in _ITEM_KINDS
        if contact.get(name) is not None
    ]


def _people(source: str, contacts: list[dict[str, Any]]) -> list[PersonalItemInput]:
    return [item for contact in contacts for item in _contact_items(source, contact)]


# ACME ------------------------------------------------------------------------------


def _account_registered(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    return ledger.register_account(
        account_ref=m["account_id"], contacts=m["contacts"], purposes=m["purposes"], cause=cause
    )


def _account_contact_updated(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    return ledger.update_account_contacts(
        account_ref=m["account_id"], contacts=m["contacts"], channel=Channel.ACME, cause=cause
    )


def _certificate_issued(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    return ledger.record_acme_certificate(
        order_ref=m["order_id"],
        account_ref=m["account_id"],
        certificate=_certificate(m["certificate"]),
        validity=(m["not_before"], m["not_after"]),
        purposes=m["purposes"],
        cause=cause,
    )


def _precertificate_submitted(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    return ledger.record_ct_submission(
        order_ref=m["order_id"],
        account_ref=m["account_id"],
        certificate=_certificate(m["certificate"]),
        purposes=m["purposes"],
        log_operator=_recipient(m["log_operator"]),
        submission=CtSubmission(m["log_id"], m["logged_at"]),
        cause=cause,
    )


def _certificate_revoked(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    record_id = ledger.certificate_record_id(cause.source_system, m["order_id"])
    return ledger.record_revocation(record_id, reason=m["reason"], revoked_at=m["revoked_at"], cause=cause)


def _account_deactivated(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    return ledger.deactivate_account(account_ref=m["account_id"], cause=cause)


# Registrar / designated operators -----------------------------------------------------


def _application_submitted(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    source = cause.source_system
    return ledger.collect(
        record_ref=m["application_id"],
        channel=Channel.DESIGNATED_OPERATOR,
        purposes=m["purposes"],
        certificate=_certificate(m["certificate"]),
        organisation=_organisation(m["organisation"]),
        personal_items=_people(source, [m["applicant"], *m["contacts"]]),
        cause=cause,
    )


def _record_of(ledger: Ledger, cause: Cause, application_id: str) -> UUID:
    return ledger.certificate_record_id(cause.source_system, application_id)


def _correction_submitted(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    changes: dict[str, Any] = {}
    if m["common_name"] is not None:
        changes["common_name"] = m["common_name"]
    if m["sans"] is not None:
        changes["sans"] = list(m["sans"])
    if m["organisation"] is not None:
        changes["organisation"] = _organisation(m["organisation"])
    return ledger.correct(
        _record_of(ledger, cause, m["application_id"]),
        channel=Channel.DESIGNATED_OPERATOR,
        certificate_changes=changes,
        personal_changes=_people(cause.source_system, m["contacts"]),
        cause=cause,
    )


def _information_provided(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    items = []
    for provided in m["items"]:
        subject = None
        if provided["subject_ref"] or provided["subject_email"]:
            subject = _subject_key(cause.source_system, provided["subject_ref"], provided["subject_email"])
        items.append(ProvidedItemInput(provided["item"], subject))
    return ledger.record_provision(
        category=ProvisionCategory.MANAGING_OPERATOR,
        recipient=_recipient(m["recipient"]),
        items=items,
        certificate_record_id=_record_of(ledger, cause, m["application_id"]),
        cause=cause,
    )


def _status_published(ledger: Ledger, m: dict[str, Any], cause: Cause) -> CommandResult:
    return ledger.record_provision(
        category=ProvisionCategory.VERIFIERS,
        recipient=_recipient(m["recipient"]),
        items=[ProvidedItemInput(item) for item in m["items"]],
        certificate_record_id=_record_of(ledger, cause, m["application_id"]),
        cause=cause,
    )


TRANSLATIONS: dict[str, Callable[[Ledger, dict[str, Any], Cause], CommandResult]] = {
    f"{UPSTREAM}.acme.AccountRegistered": _account_registered,
    f"{UPSTREAM}.acme.AccountContactUpdated": _account_contact_updated,
    f"{UPSTREAM}.acme.CertificateIssued": _certificate_issued,
    f"{UPSTREAM}.acme.PrecertificateSubmitted": _precertificate_submitted,
    f"{UPSTREAM}.acme.CertificateRevoked": _certificate_revoked,
    f"{UPSTREAM}.acme.AccountDeactivated": _account_deactivated,
    f"{UPSTREAM}.registrar.ApplicationSubmitted": _application_submitted,
    f"{UPSTREAM}.registrar.CorrectionSubmitted": _correction_submitted,
    f"{UPSTREAM}.registrar.InformationProvided": _information_provided,
    f"{UPSTREAM}.registrar.StatusPublished": _status_published,
}


# What each message will read: a hint so a batch reads them all in one query ------------


@quick_init
@dataclass(frozen=True)
class Reads:
    """The aggregates a message's command will read, and which of them are data subjects."""

    aggregates: list[UUID]
    subjects: list[UUID]


def _subject_ids(ledger: Ledger, source: str, contacts: list[dict[str, Any]]) -> list[UUID]:
    ids = []
    for contact in contacts:
        ref, email = contact.get("subject_ref"), contact.get("email")
        if ref or email:
            ids.append(ledger.subject_id(_subject_key(source, ref, email)))
    return ids


def _reads_of(ledger: Ledger, name: str, m: dict[str, Any], source: str) -> Reads:
    short = name.rsplit(".", 1)[-1]
    aggregates: list[UUID] = []
    subjects: list[UUID] = []
    if "order_id" in m:
        aggregates.append(ledger.certificate_record_id(source, m["order_id"]))
    if "application_id" in m:
        aggregates.append(ledger.certificate_record_id(source, m["application_id"]))
    if "account_id" in m:
        aggregates.append(ledger.acme_account_id(source, m["account_id"]))
    if short in {"AccountRegistered", "AccountContactUpdated"}:
        subjects = [ledger.subject_id(SubjectKey.email(a)) for a in m["contacts"]]
    elif short == "ApplicationSubmitted":
        subjects = _subject_ids(ledger, source, [m["applicant"], *m["contacts"]])
    elif short == "CorrectionSubmitted":
        subjects = _subject_ids(ledger, source, m["contacts"])
    elif short == "InformationProvided":
        people = [{"subject_ref": i["subject_ref"], "email": i["subject_email"]} for i in m["items"]]
        subjects = _subject_ids(ledger, source, people)
    if short in {"PrecertificateSubmitted", "InformationProvided", "StatusPublished"}:
        aggregates.append(ledger.provision_id_for(source, str(m["envelope"]["event_id"])))
    return Reads([*aggregates, *subjects], subjects)


def reads(ledger: Ledger, decoded: Decoded) -> Reads:
    """What the command for this message will read (a hint: a wrong one costs a query, not a fact).

    A message whose fields do not make sense reads nothing here; its command
    refuses it as usual.
    """
    m = decoded.record
    try:
        source = m["envelope"]["source_system"]
        found = _reads_of(ledger, decoded.name, m, source)
        receipt = receipt_id(source, str(m["envelope"]["event_id"]))
    except Exception:  # noqa: BLE001 - a hint never stops ingest; the command judges the message
        return Reads([], [])
    return Reads([receipt, CATALOGUE_ID, *found.aggregates], found.subjects)


def prefetch(ledger: Ledger, messages: Iterable[Decoded]) -> None:
    """Inside a batch: reads what these messages' commands will read, in one query."""
    hints = [reads(ledger, m) for m in messages]
    ledger.prefetch(
        (i for h in hints for i in h.aggregates), subject_ids=(i for h in hints for i in h.subjects)
    )


class NotForThisTopic(InvalidCommand):
    """Raised when a message's type or source system does not belong on the topic it came on."""


def apply(ledger: Ledger, decoded: Decoded, position: Position, topic_system: str) -> CommandResult:
    """Records one decoded message through the ledger command its type maps to."""
    translation = TRANSLATIONS.get(decoded.name)
    if translation is None:
        raise NotForThisTopic(f"no command for message type {decoded.name}")
    cause = cause_of(decoded.record, position)
    if cause.source_system != topic_system:
        raise NotForThisTopic(
            f"a message from source system {cause.source_system!r} on the topic of {topic_system!r}"
        )
    return translation(ledger, decoded.record, cause)
