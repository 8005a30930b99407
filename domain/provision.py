"""§4: a provision of certificate information to a third party (APPI Art. 29 records)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.codes import CertificateField, Clause, LegalGround, PersonalItemKind, ProvisionCategory
from domain.creation import create
from domain.errors import InvalidCommand
from domain.identity import uuid_order
from domain.quickinit import quick_init, quicken_events

#: The CA is in Japan: a recipient elsewhere is a foreign recipient (APPI Art. 28).
HOME_COUNTRY = "JP"
#: APPI Art. 29 records are kept for three years from the provision.
RECORD_RETENTION_YEARS = 3
_COUNTRY = re.compile(r"^[A-Z]{2}$")
_UNSPECIFIED_MANY = frozenset({ProvisionCategory.VERIFIERS, ProvisionCategory.CT_LOG})


@quick_init
@dataclass(frozen=True)
class Recipient:
    """Who received the information: an identifier, a name and a country (ISO 3166 alpha-2)."""

    recipient_id: str
    name: str
    country: str

    def check(self) -> Recipient:
        for field, value in (("identifier", self.recipient_id), ("name", self.name)):
            if not isinstance(value, str) or not value.strip() or len(value) > 200:
                raise InvalidCommand(
                    f"a provision needs a recipient {field} of 1-200 characters", Clause.PROVISION
                )
        if not isinstance(self.country, str) or not _COUNTRY.match(self.country):
            raise InvalidCommand("a recipient's country must be an ISO 3166 alpha-2 code", Clause.PROVISION)
        return Recipient(self.recipient_id.strip(), self.name.strip(), self.country)

    @property
    def foreign(self) -> bool:
        return self.country != HOME_COUNTRY


@quick_init
@dataclass(frozen=True)
class ProvidedItem:
    """One item provided: a subject's personal item, or a certificate field (subject None)."""

    item: str
    subject_id: UUID | None = None


@quick_init
@dataclass(frozen=True)
class CtSubmission:
    """§4.4: the CT log a (pre-)certificate went to and the log's timestamp."""

    log_id: str
    logged_at: datetime


def add_years(moment: datetime, years: int) -> datetime:
    try:
        return moment.replace(year=moment.year + years)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + years, day=28)


@quicken_events
class Provision(Aggregate):
    """One act of provision to one recipient, with its basis and items."""

    class Recorded(Aggregate.Created):
        category: str
        legal_ground: str | None
        recipient: dict[str, Any]
        foreign: bool
        items: list[dict[str, Any]]
        certificate_record_id: UUID | None
        unspecified_many: bool
        ct_log: dict[str, Any] | None
        provided_at: datetime
        record_required: bool
        retention_until: datetime | None
        cause: Cause

    def __init__(
        self,
        *,
        category: str,
        legal_ground: str | None,
        recipient: dict[str, Any],
        foreign: bool,
        items: list[dict[str, Any]],
        certificate_record_id: UUID | None,
        unspecified_many: bool,
        ct_log: dict[str, Any] | None,
        provided_at: datetime,
        record_required: bool,
        retention_until: datetime | None,
    ) -> None:
        self.category = category
        self.legal_ground = legal_ground
        self.recipient = recipient
        self.foreign = foreign
        self.items = items
        self.certificate_record_id = certificate_record_id
        self.unspecified_many = unspecified_many
        self.ct_log = ct_log
        self.provided_at = provided_at
        self.record_required = record_required
        self.retention_until = retention_until

    @property
    def subject_ids(self) -> list[UUID]:
        ids = {UUID(str(i["subject_id"])) for i in self.items if i.get("subject_id")}
        return sorted(ids, key=uuid_order)

    @classmethod
    def record(
        cls,
        *,
        provision_id: UUID,
        category: ProvisionCategory | str,
        recipient: Recipient,
        items: Sequence[ProvidedItem],
        certificate_record_id: UUID | None,
        legal_ground: LegalGround | str | None,
        ct_submission: CtSubmission | None,
        cause: Cause,
    ) -> Provision:
        """§4: refused without recipient, subject, items or basis; the ground only under 4.3."""
        try:
            checked_category = ProvisionCategory(category)
        except ValueError:
            raise InvalidCommand(
                "a provision needs its basis: a category 4.1-4.4", Clause.PROVISION
            ) from None
        if recipient is None:
            raise InvalidCommand("a provision needs a recipient", Clause.PROVISION)
        checked_recipient = recipient.check()
        ground = _check_ground(checked_category, legal_ground)
        checked_items = _check_items(items, has_record=certificate_record_id is not None)
        ct_log = _check_ct(checked_category, ct_submission)
        provided_at = cause.occurred_at
        # APPI Art. 29 records concern personal data; its proviso exempts provisions
        # under Art. 27(1) items (the 4.3 grounds). Those records are kept three years.
        personal = any(i["subject_id"] for i in checked_items)
        record_required = personal and checked_category is not ProvisionCategory.LEGAL
        return create(
            cls,
            cls.Recorded,
            provision_id,
            category=checked_category.value,
            legal_ground=ground,
            recipient={
                "recipient_id": checked_recipient.recipient_id,
                "name": checked_recipient.name,
                "country": checked_recipient.country,
            },
            foreign=checked_recipient.foreign,
            items=checked_items,
            certificate_record_id=certificate_record_id,
            unspecified_many=checked_category in _UNSPECIFIED_MANY,
            ct_log=ct_log,
            provided_at=provided_at,
            record_required=record_required,
            retention_until=add_years(provided_at, RECORD_RETENTION_YEARS) if record_required else None,
            cause=cause,
        )


def _check_ground(category: ProvisionCategory, legal_ground: LegalGround | str | None) -> str | None:
    if category is ProvisionCategory.LEGAL:
        if legal_ground is None:
            raise InvalidCommand(
                "a provision under 4.3 needs its legal ground (4.3.1-4.3.4)", Clause.PROVISION_LEGAL
            )
        try:
            return LegalGround(legal_ground).value
        except ValueError:
            raise InvalidCommand(
                f"unknown legal ground {legal_ground!r} (4.3.1-4.3.4)", Clause.PROVISION_LEGAL
            ) from None
    if legal_ground is not None:
        raise InvalidCommand(
            f"a legal ground belongs only to provisions under 4.3, not {category.value}",
            Clause.PROVISION_LEGAL,
        )
    return None


_PERSONAL_ITEMS = frozenset(k.value for k in PersonalItemKind)
_PROVIDABLE_ITEMS = _PERSONAL_ITEMS | {f.value for f in CertificateField} | {"serial", "validity"}


def _check_items(items: Sequence[ProvidedItem], *, has_record: bool) -> list[dict[str, Any]]:
    if not items:
        raise InvalidCommand("a provision needs the items provided", Clause.PROVISION)
    checked: list[dict[str, Any]] = []
    for item in items:
        if item.item not in _PROVIDABLE_ITEMS:
            raise InvalidCommand(f"unknown provided item {item.item!r}", Clause.PROVISION)
        is_personal = item.item in _PERSONAL_ITEMS
        if is_personal and item.subject_id is None:
            raise InvalidCommand(f"personal item {item.item} needs its data subject", Clause.PROVISION)
        if not is_personal and item.subject_id is not None:
            raise InvalidCommand(f"certificate item {item.item} has no data subject", Clause.PROVISION)
        checked.append({"item": item.item, "subject_id": item.subject_id})
    if not has_record and not any(i["subject_id"] for i in checked):
        raise InvalidCommand(
            "a provision needs what it is about: a data subject's item or the certificate record",
            Clause.PROVISION,
        )
    unique = {(i["item"], i["subject_id"]) for i in checked}
    if len(unique) != len(checked):
        raise InvalidCommand("a provided item appears twice", Clause.PROVISION)
    return sorted(checked, key=lambda i: (str(i["subject_id"]), i["item"]))


def _check_ct(category: ProvisionCategory, ct: CtSubmission | None) -> dict[str, Any] | None:
    if category is ProvisionCategory.CT_LOG:
        if ct is None or not isinstance(ct.log_id, str) or not ct.log_id.strip():
            raise InvalidCommand("a provision under 4.4 needs the CT log", Clause.PROVISION)
        if not isinstance(ct.logged_at, datetime) or ct.logged_at.tzinfo is None:
            raise InvalidCommand("a provision under 4.4 needs the log's timestamp", Clause.PROVISION)
        return {"log_id": ct.log_id.strip(), "logged_at": ct.logged_at}
    if ct is not None:
        raise InvalidCommand("only a provision under 4.4 goes to a CT log", Clause.PROVISION)
    return None
