"""§5, §6: a certificate's information as collected, issued, corrected and revoked."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.codes import CertificateField, Channel, Clause, ProvisionCategory, ValidationLevel
from domain.creation import create
from domain.errors import InvalidCommand, InvalidTransition, PolicyViolation
from domain.identity import uuid_order
from domain.personal import Sealed
from domain.policy import PolicyVersion
from domain.quickinit import quick_init, quicken_events

_SERIAL = re.compile(r"^[0-9a-f]{1,40}$")
_ORG_FIELDS = frozenset({"name", "unit", "locality", "state", "country"})
_MAX_SANS = 100
_MAX_NAME = 255
_REVOCATION_REASONS = frozenset(
    {
        "unspecified",
        "keyCompromise",
        "affiliationChanged",
        "superseded",
        "cessationOfOperation",
        "privilegeWithdrawn",
    }
)


@quick_init
@dataclass(frozen=True)
class CertificateIdentity:
    """What identifies a certificate: names, serial when known, DV or OV."""

    common_name: str
    sans: Sequence[str]
    validation: str
    serial: str | None = None


def normalise_serial(serial: str) -> str:
    cleaned = serial.replace(":", "").strip().lower() if isinstance(serial, str) else ""
    cleaned = cleaned.lstrip("0") or "0"
    if not _SERIAL.match(cleaned):
        raise InvalidCommand("serial must be a hexadecimal number of at most 20 octets")
    return cleaned


def check_common_name(value: object) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > _MAX_NAME:
        raise InvalidCommand(f"common name must be 1-{_MAX_NAME} characters")
    return value.strip().lower()


def check_sans(value: object) -> list[str]:
    if not isinstance(value, list | tuple) or len(value) > _MAX_SANS:
        raise InvalidCommand(f"SANs must be a list of at most {_MAX_SANS} names")
    return sorted({check_common_name(v) for v in value})


def check_organisation(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not value:
        raise InvalidCommand("organisation must be a mapping of name, unit, locality, state, country")
    unknown = set(value) - _ORG_FIELDS
    if unknown:
        raise InvalidCommand(f"unknown organisation fields: {', '.join(sorted(map(str, unknown)))}")
    checked: dict[str, str] = {}
    for key, field_value in value.items():
        if not isinstance(field_value, str) or not field_value.strip() or len(field_value) > _MAX_NAME:
            raise InvalidCommand(f"organisation {key} must be 1-{_MAX_NAME} characters")
        checked[str(key)] = field_value.strip()
    if "country" in checked and not re.fullmatch(r"[A-Z]{2}", checked["country"]):
        raise InvalidCommand("organisation country must be an ISO 3166 alpha-2 code")
    return dict(sorted(checked.items()))


@quicken_events
class CertificateRecord(Aggregate):
    """One certificate's information, bound to the policy version it was collected under."""

    class Collected(Aggregate.Created):
        record_ref: str
        channel: str
        policy_version: str
        purposes: list[str]
        common_name: str
        sans: list[str]
        validation: str
        serial: str | None
        organisation: dict[str, str] | None
        items: list[Sealed]
        account_id: UUID | None
        cause: Cause

    class Issued(Aggregate.Event):
        serial: str
        not_before: datetime
        not_after: datetime
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.serial = self.serial
            aggregate.not_before = self.not_before
            aggregate.not_after = self.not_after

    class Corrected(Aggregate.Event):
        channel: str
        certificate_changes: dict[str, Any]
        personal_changes: list[Sealed]
        changed: list[str]
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            for name, value in self.certificate_changes.items():
                setattr(aggregate, name, value)
            for sealed in self.personal_changes:
                key = (sealed.subject_id, sealed.kind)
                previous = aggregate.items.get(key)
                if previous is not None:
                    aggregate.superseded.append((self.cause.occurred_at, previous))
                aggregate.items[key] = sealed

    class Revoked(Aggregate.Event):
        reason: str
        revoked_at: datetime
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.revoked_at = self.revoked_at
            aggregate.revocation_reason = self.reason

    class ProvisionNoted(Aggregate.Event):
        provision_id: UUID
        category: str
        recipient_id: str
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.provisions.append((self.provision_id, self.category, self.recipient_id))

    def __init__(
        self,
        *,
        record_ref: str,
        channel: str,
        policy_version: str,
        purposes: list[str],
        common_name: str,
        sans: list[str],
        validation: str,
        serial: str | None,
        organisation: dict[str, str] | None,
        items: list[Sealed],
        account_id: UUID | None,
        cause: Cause,
    ) -> None:
        self.record_ref = record_ref
        self.account_id = account_id
        self.collected_at = cause.occurred_at
        self.channel = channel
        self.policy_version = policy_version
        self.purposes = list(purposes)
        self.common_name = common_name
        self.sans = list(sans)
        self.validation = validation
        self.serial = serial
        self.organisation = organisation
        self.items: dict[tuple[UUID, str], Sealed] = {(s.subject_id, s.kind): s for s in items}
        self.superseded: list[tuple[datetime, Sealed]] = []
        self.not_before: datetime | None = None
        self.not_after: datetime | None = None
        self.revoked_at: datetime | None = None
        self.revocation_reason: str | None = None
        self.provisions: list[tuple[UUID, str, str]] = []

    @classmethod
    def collect(
        cls,
        *,
        record_id: UUID,
        record_ref: str,
        channel: Channel | str,
        policy: PolicyVersion,
        purposes: Sequence[str],
        certificate: CertificateIdentity,
        organisation: Mapping[str, str] | None,
        items: Sequence[Sealed],
        cause: Cause,
        account_id: UUID | None = None,
    ) -> CertificateRecord:
        """§5: collected through a channel the policy in force allows, for its purposes (§2)."""
        try:
            checked_channel = Channel(channel)
        except ValueError:
            raise InvalidCommand(f"unknown channel {channel!r} (C1-C4)", Clause.COLLECTION) from None
        if checked_channel not in policy.channels:
            raise PolicyViolation(
                f"channel {checked_channel.value} is not a collection channel of policy version "
                f"{policy.version}",
                Clause.COLLECTION,
            )
        if not purposes:
            raise InvalidCommand("a collection must name its purposes", Clause.PURPOSES)
        outside = sorted(set(purposes) - set(policy.purposes))
        if outside:
            raise PolicyViolation(
                f"purposes {', '.join(outside)} are not in policy version {policy.version}",
                Clause.PURPOSES,
            )
        try:
            validation = ValidationLevel(certificate.validation)
        except ValueError:
            raise InvalidCommand("validation must be DV or OV") from None
        checked_org = check_organisation(organisation)
        if validation is ValidationLevel.OV and not (checked_org and "name" in checked_org):
            raise InvalidCommand("an OV certificate's information needs the organisation name")
        keys = [(s.subject_id, s.kind) for s in items]
        if len(keys) != len(set(keys)):
            raise InvalidCommand("each subject's personal item kind may appear only once")
        if not isinstance(record_ref, str) or not record_ref.strip() or len(record_ref) > _MAX_NAME:
            raise InvalidCommand(f"record reference must be 1-{_MAX_NAME} characters")
        return create(
            cls,
            cls.Collected,
            record_id,
            record_ref=record_ref,
            channel=checked_channel.value,
            policy_version=policy.version,
            purposes=sorted(set(purposes)),
            common_name=check_common_name(certificate.common_name),
            sans=check_sans(certificate.sans),
            validation=validation.value,
            serial=normalise_serial(certificate.serial) if certificate.serial else None,
            organisation=checked_org,
            items=list(items),
            account_id=account_id,
            cause=cause,
        )

    @property
    def subject_ids(self) -> list[UUID]:
        return sorted({subject_id for subject_id, _ in self.items}, key=uuid_order)

    def check_correction_channel(self, channel: Channel | str) -> Channel:
        """§6: through a designated operator for any record; through ACME only for ACME records."""
        try:
            checked = Channel(channel)
        except ValueError:
            raise InvalidCommand(f"unknown channel {channel!r} (C1-C4)", Clause.CORRECTION) from None
        if checked is Channel.DESIGNATED_OPERATOR:
            return checked
        if checked is Channel.ACME:
            if self.channel == Channel.ACME.value:
                return checked
            raise PolicyViolation(
                f"a correction through the ACME server (C2) is allowed only for records collected "
                f"through ACME; this record was collected through {self.channel}",
                Clause.CORRECTION,
            )
        raise PolicyViolation(
            f"corrections go through a designated operator (C1) or, for ACME records, the ACME "
            f"server (C2); {checked.value} is not a correction channel",
            Clause.CORRECTION,
        )

    def correct(
        self,
        *,
        channel: Channel | str,
        certificate_changes: Mapping[str, Any],
        personal_changes: Sequence[Sealed],
        cause: Cause,
    ) -> None:
        """§6: records which items changed and through which channel."""
        checked_channel = self.check_correction_channel(channel)
        changes: dict[str, Any] = {}
        for name, value in certificate_changes.items():
            try:
                field = CertificateField(name)
            except ValueError:
                raise InvalidCommand(f"{name!r} is not a correctable certificate field") from None
            if field is CertificateField.COMMON_NAME:
                changes[field.value] = check_common_name(value)
            elif field is CertificateField.SANS:
                changes[field.value] = check_sans(value)
            else:
                changes[field.value] = check_organisation(value)
        changes = {k: v for k, v in changes.items() if getattr(self, k) != v}
        org_change = changes.get("organisation", self.organisation)
        if self.validation == ValidationLevel.OV.value and not (org_change and "name" in org_change):
            raise InvalidCommand("an OV certificate's information needs the organisation name")
        subjects = {s for s, _ in self.items}
        for sealed in personal_changes:
            if sealed.subject_id not in subjects:
                raise InvalidCommand(
                    f"subject {sealed.subject_id} does not appear on this record; a correction "
                    "changes the items of subjects already on it",
                    Clause.CORRECTION,
                )
        if not changes and not personal_changes:
            raise InvalidCommand("the correction changes nothing", Clause.CORRECTION)
        changed = sorted(changes) + sorted(f"{s.kind}@{s.subject_id}" for s in personal_changes)
        self.trigger_event(
            self.Corrected,
            channel=checked_channel.value,
            certificate_changes=changes,
            personal_changes=list(personal_changes),
            changed=changed,
            cause=cause,
        )

    def record_issuance(
        self, *, serial: str, not_before: datetime, not_after: datetime, cause: Cause
    ) -> None:
        if self.not_after is not None:
            raise InvalidTransition("the certificate of this record was already issued")
        for name, moment in (("not_before", not_before), ("not_after", not_after)):
            if not isinstance(moment, datetime) or moment.tzinfo is None:
                raise InvalidCommand(f"{name} must be a datetime with a time zone")
        if not_after <= not_before:
            raise InvalidCommand("not_after must be later than not_before")
        checked_serial = normalise_serial(serial)
        if self.serial is not None and self.serial != checked_serial:
            raise InvalidCommand("the serial differs from the one collected for this record")
        self.trigger_event(
            self.Issued, serial=checked_serial, not_before=not_before, not_after=not_after, cause=cause
        )

    def revoke(self, *, reason: str, revoked_at: datetime, cause: Cause) -> None:
        if self.not_after is None:
            raise InvalidTransition("a certificate that was never issued cannot be revoked")
        if self.revoked_at is not None:
            raise InvalidTransition("the certificate is already revoked")
        if reason not in _REVOCATION_REASONS:
            raise InvalidCommand(
                f"unknown revocation reason; expected one of {', '.join(sorted(_REVOCATION_REASONS))}"
            )
        if not isinstance(revoked_at, datetime) or revoked_at.tzinfo is None:
            raise InvalidCommand("revoked_at must be a datetime with a time zone")
        self.trigger_event(self.Revoked, reason=reason, revoked_at=revoked_at, cause=cause)

    def note_provision(
        self, *, provision_id: UUID, category: ProvisionCategory, recipient_id: str, cause: Cause
    ) -> None:
        self.trigger_event(
            self.ProvisionNoted,
            provision_id=provision_id,
            category=category.value,
            recipient_id=recipient_id,
            cause=cause,
        )

    def status_at(self, moment: datetime) -> str:
        """collected, issued, revoked or expired, as of ``moment``."""
        if self.revoked_at is not None and self.revoked_at <= moment:
            return "revoked"
        if self.not_after is None:
            return "collected"
        if self.not_after <= moment:
            return "expired"
        return "issued"
