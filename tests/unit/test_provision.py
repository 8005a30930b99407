"""§4: provision basis, recipients, items, CT submissions and APPI Art. 29 retention."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from uuid import uuid4

import pytest

from domain.errors import InvalidCommand
from domain.provision import CtSubmission, ProvidedItem, Provision, Recipient
from tests.helpers import T0, cause

SUBJECT = uuid4()
DOMESTIC = Recipient("op-1", "Operator One", "JP")


def record(**overrides: Any) -> Provision:
    args: dict[str, Any] = {
        "provision_id": uuid4(),
        "category": "4.1",
        "recipient": DOMESTIC,
        "items": [ProvidedItem("name", SUBJECT), ProvidedItem("common_name")],
        "certificate_record_id": None,
        "legal_ground": None,
        "ct_submission": None,
        "cause": cause(),
    }
    args.update(overrides)
    return Provision.record(**args)


def test_a_provision_to_the_managing_operator_is_kept_three_years() -> None:
    provision = record()
    assert provision.record_required
    assert provision.retention_until == datetime(2027, 6, 1, 9, 0, tzinfo=T0.tzinfo)
    assert not provision.foreign and not provision.unspecified_many
    assert provision.subject_ids == [SUBJECT]


def test_a_leap_day_provision_is_kept_until_the_28th_of_february() -> None:
    leap = datetime(2024, 2, 29, 12, 0, tzinfo=T0.tzinfo)
    provision = record(cause=cause(leap))
    assert provision.retention_until == datetime(2027, 2, 28, 12, 0, tzinfo=T0.tzinfo)


def test_a_foreign_recipient_is_flagged() -> None:
    assert record(recipient=Recipient("op-2", "Operator Two", "SG")).foreign


def test_4_3_requires_a_legal_ground() -> None:
    with pytest.raises(InvalidCommand) as refused:
        record(category="4.3")
    assert refused.value.clause == "§4.3"


def test_4_3_with_a_ground_needs_no_art_29_record() -> None:
    provision = record(category="4.3", legal_ground="4.3.2")
    assert provision.legal_ground == "4.3.2"
    assert not provision.record_required and provision.retention_until is None


@pytest.mark.parametrize("category", ["4.1", "4.2", "4.4"])
def test_a_legal_ground_is_refused_outside_4_3(category: str) -> None:
    ct = CtSubmission("log", T0) if category == "4.4" else None
    with pytest.raises(InvalidCommand, match=r"only to provisions under 4\.3"):
        record(category=category, legal_ground="4.3.1", ct_submission=ct)


def test_an_unknown_legal_ground_is_refused() -> None:
    with pytest.raises(InvalidCommand, match="unknown legal ground"):
        record(category="4.3", legal_ground="4.3.9")


@pytest.mark.parametrize("category", ["4.2", "4.4"])
def test_verifiers_and_ct_logs_are_unspecified_many(category: str) -> None:
    ct = CtSubmission("log", T0) if category == "4.4" else None
    assert record(category=category, ct_submission=ct).unspecified_many


def test_4_4_needs_the_log_and_its_timestamp() -> None:
    with pytest.raises(InvalidCommand, match="needs the CT log"):
        record(category="4.4")
    with pytest.raises(InvalidCommand, match="timestamp"):
        record(category="4.4", ct_submission=CtSubmission("log", T0.replace(tzinfo=None)))
    provision = record(category="4.4", ct_submission=CtSubmission("argon", T0 + timedelta(seconds=1)))
    assert provision.ct_log == {"log_id": "argon", "logged_at": T0 + timedelta(seconds=1)}


def test_a_ct_log_belongs_only_to_4_4() -> None:
    with pytest.raises(InvalidCommand, match=r"only a provision under 4\.4"):
        record(ct_submission=CtSubmission("log", T0))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"recipient": None}, "needs a recipient"),
        ({"recipient": Recipient(" ", "Name", "JP")}, "recipient identifier"),
        ({"recipient": Recipient("id", "Name", "Japan")}, "ISO 3166"),
        ({"items": []}, "needs the items"),
        ({"items": [ProvidedItem("common_name")]}, "a data subject's item or the certificate record"),
        ({"items": [ProvidedItem("name")]}, "needs its data subject"),
        ({"items": [ProvidedItem("shoe_size", SUBJECT)]}, "unknown provided item"),
        ({"category": None}, "basis"),
        ({"category": "4.9"}, "basis"),
    ],
)
def test_a_provision_missing_recipient_subject_items_or_basis_is_refused(
    overrides: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidCommand, match=message) as refused:
        record(**overrides)
    assert refused.value.clause in {"§4", "§4.3"}


def test_a_provision_of_certificate_fields_alone_needs_its_record_and_no_art_29_record() -> None:
    provision = record(
        category="4.4",
        items=[ProvidedItem("common_name"), ProvidedItem("sans")],
        certificate_record_id=uuid4(),
        ct_submission=CtSubmission("argon", T0),
    )
    assert provision.subject_ids == []
    assert not provision.record_required and provision.retention_until is None
