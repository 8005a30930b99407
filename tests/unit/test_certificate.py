"""§5, §6: collection, correction channels, issuance and revocation of a record."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from domain.certificate import CertificateIdentity, CertificateRecord
from domain.errors import InvalidCommand, InvalidTransition, PolicyViolation
from domain.personal import Sealed
from tests.helpers import T0, cause, policy_version, sealed


def collected(
    channel: str = "C1", items: list[Sealed] | None = None, validation: str = "DV"
) -> CertificateRecord:
    return CertificateRecord.collect(
        record_id=uuid4(),
        record_ref="ref-1",
        channel=channel,
        policy=policy_version(),
        purposes=["P1", "P3"],
        certificate=CertificateIdentity("WWW.Example.JP", ["www.example.jp", "example.jp"], validation),
        organisation={"name": "Example KK", "country": "JP"} if validation == "OV" else None,
        items=items if items is not None else [sealed()],
        cause=cause(),
    )


def test_collection_binds_channel_policy_version_and_purposes() -> None:
    record = collected()
    assert (record.channel, record.policy_version, record.purposes) == ("C1", "v-test", ["P1", "P3"])
    assert record.common_name == "www.example.jp"
    assert record.sans == ["example.jp", "www.example.jp"]


def test_collection_through_a_channel_the_policy_version_lacks_is_refused() -> None:
    with pytest.raises(PolicyViolation) as refused:
        CertificateRecord.collect(
            record_id=uuid4(),
            record_ref="r",
            channel="C2",
            policy=policy_version(channels=["C1"]),
            purposes=["P1"],
            certificate=CertificateIdentity("a.example", [], "DV"),
            organisation=None,
            items=[],
            cause=cause(),
        )
    assert refused.value.clause == "§5"


def test_collection_for_a_purpose_outside_the_policy_is_refused() -> None:
    with pytest.raises(PolicyViolation) as refused:
        CertificateRecord.collect(
            record_id=uuid4(),
            record_ref="r",
            channel="C1",
            policy=policy_version(purposes={"P1": "x"}),
            purposes=["P1", "P7"],
            certificate=CertificateIdentity("a.example", [], "DV"),
            organisation=None,
            items=[],
            cause=cause(),
        )
    assert refused.value.clause == "§2"
    assert "P7" in str(refused.value)


def test_an_ov_record_needs_the_organisation_name() -> None:
    with pytest.raises(InvalidCommand, match="organisation name"):
        CertificateRecord.collect(
            record_id=uuid4(),
            record_ref="r",
            channel="C1",
            policy=policy_version(),
            purposes=["P1"],
            certificate=CertificateIdentity("a.example", [], "OV"),
            organisation={"country": "JP"},
            items=[],
            cause=cause(),
        )


def test_a_subject_item_kind_appears_once_per_record() -> None:
    subject = uuid4()
    with pytest.raises(InvalidCommand, match="only once"):
        collected(items=[sealed(subject, "name"), sealed(subject, "name")])


@pytest.mark.parametrize("record_channel", ["C1", "C2", "C3", "C4"])
def test_a_designated_operator_may_correct_any_record(record_channel: str) -> None:
    record = collected(channel=record_channel)
    record.correct(
        channel="C1",
        certificate_changes={"common_name": "new.example.jp"},
        personal_changes=[],
        cause=cause(),
    )
    event = record.pending_events[-1]
    assert isinstance(event, CertificateRecord.Corrected)
    assert (event.channel, event.changed) == ("C1", ["common_name"])


def test_the_acme_server_may_correct_records_collected_through_acme() -> None:
    subject = uuid4()
    record = collected(channel="C2", items=[sealed(subject, "email")])
    replacement = sealed(subject, "email")
    record.correct(channel="C2", certificate_changes={}, personal_changes=[replacement], cause=cause())
    assert record.items[(subject, "email")] is replacement
    assert len(record.superseded) == 1


@pytest.mark.parametrize("record_channel", ["C1", "C3", "C4"])
def test_the_acme_server_may_not_correct_other_records(record_channel: str) -> None:
    record = collected(channel=record_channel)
    version = record.version
    with pytest.raises(PolicyViolation) as refused:
        record.correct(
            channel="C2", certificate_changes={"common_name": "x.example"}, personal_changes=[], cause=cause()
        )
    assert refused.value.clause == "§6"
    assert record.version == version and record.common_name == "www.example.jp"


@pytest.mark.parametrize("channel", ["C3", "C4"])
def test_other_channels_are_not_correction_channels(channel: str) -> None:
    record = collected(channel=channel)
    with pytest.raises(PolicyViolation) as refused:
        record.correct(
            channel=channel,
            certificate_changes={"common_name": "x.example"},
            personal_changes=[],
            cause=cause(),
        )
    assert refused.value.clause == "§6"


def test_a_correction_must_change_something() -> None:
    record = collected()
    with pytest.raises(InvalidCommand, match="changes nothing"):
        record.correct(
            channel="C1",
            certificate_changes={"common_name": "www.example.jp"},
            personal_changes=[],
            cause=cause(),
        )


def test_a_correction_changes_only_subjects_on_the_record() -> None:
    record = collected()
    with pytest.raises(InvalidCommand, match="does not appear on this record"):
        record.correct(channel="C1", certificate_changes={}, personal_changes=[sealed()], cause=cause())


def test_a_field_that_is_not_correctable_is_refused() -> None:
    record = collected()
    with pytest.raises(InvalidCommand, match="not a correctable"):
        record.correct(channel="C1", certificate_changes={"serial": "01"}, personal_changes=[], cause=cause())


def test_issuance_then_revocation_then_status() -> None:
    record = collected()
    assert record.status_at(T0) == "collected"
    with pytest.raises(InvalidTransition, match="never issued"):
        record.revoke(reason="keyCompromise", revoked_at=T0, cause=cause())
    record.record_issuance(serial="0A:0B", not_before=T0, not_after=T0 + timedelta(days=90), cause=cause())
    assert record.serial == "a0b"
    assert record.status_at(T0 + timedelta(days=1)) == "issued"
    assert record.status_at(T0 + timedelta(days=91)) == "expired"
    with pytest.raises(InvalidTransition, match="already issued"):
        record.record_issuance(serial="0a0b", not_before=T0, not_after=T0 + timedelta(days=9), cause=cause())
    record.revoke(reason="keyCompromise", revoked_at=T0 + timedelta(days=2), cause=cause())
    assert record.status_at(T0 + timedelta(days=3)) == "revoked"
    with pytest.raises(InvalidTransition, match="already revoked"):
        record.revoke(reason="keyCompromise", revoked_at=T0 + timedelta(days=3), cause=cause())


def test_validity_must_end_after_it_starts() -> None:
    record = collected()
    with pytest.raises(InvalidCommand, match="later than not_before"):
        record.record_issuance(serial="01", not_before=T0, not_after=T0, cause=cause())


def test_a_serial_must_be_hexadecimal() -> None:
    record = collected()
    with pytest.raises(InvalidCommand, match="hexadecimal"):
        record.record_issuance(serial="zz", not_before=T0, not_after=T0 + timedelta(days=1), cause=cause())
