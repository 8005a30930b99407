"""The ledger end to end on a real event store: the same scenarios on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any
from uuid import UUID

import pytest

from domain.application import Ledger
from domain.cause import Cause
from domain.certificate import CertificateIdentity
from domain.commands import CommandResult, PersonalItemInput, ProvidedItemInput
from domain.errors import (
    DomainError,
    InvalidCommand,
    LegalHoldActive,
    NotFound,
    PolicyViolation,
    UpstreamEventConflict,
)
from domain.identity import SubjectKey
from domain.personal import ERASED
from domain.provision import CtSubmission, Recipient
from tests.helpers import ALL_PURPOSES, T0, FakeClock, cause, fresh_upstream_id, publish_policy

TARO = SubjectKey.email("taro@example.jp")
HANAKO = SubjectKey.email("hanako@example.jp")
OPERATOR = Recipient("op-7", "Reseller Seven", "JP")
CT_LOG = Recipient("ct-argon", "Argon CT log", "US")
TARO_ITEMS = {
    "name": "山田 太郎",
    "email": "taro@example.jp",
    "phone": "+81-3-1234-5678",
    "postal_address": "東京都千代田区丸の内1-1-1",
}
HANAKO_ITEMS = {"name": "Hanako Suzuki", "email": "hanako@example.jp"}


def items(key: SubjectKey, values: dict[str, str]) -> list[PersonalItemInput]:
    return [PersonalItemInput(key, kind, value) for kind, value in values.items()]


def collect(
    ledger: Ledger,
    ref: str = "app-1",
    channel: str = "C1",
    upstream: str | None = None,
    people: list[PersonalItemInput] | None = None,
) -> UUID:
    result = ledger.collect(
        record_ref=ref,
        channel=channel,
        purposes=["P1", "P3", "P4"],
        certificate=CertificateIdentity(f"{ref}.example.jp", [f"{ref}.example.jp"], "OV"),
        organisation={"name": "Example KK", "country": "JP"},
        personal_items=people
        if people is not None
        else items(TARO, TARO_ITEMS) + items(HANAKO, HANAKO_ITEMS),
        cause=cause(source="acme" if channel == "C2" else "registrar", upstream=upstream),
    )
    assert result.id is not None
    return result.id


def position(ledger: Ledger) -> int:
    return ledger.recorder.max_notification_id() or 0


def refused_without_a_trace(
    ledger: Ledger, command: Callable[[], Any], error: type[DomainError]
) -> DomainError:
    """Runs a command that must be refused, and checks that nothing was stored."""
    before = position(ledger)
    with pytest.raises(error) as refused:
        command()
    assert position(ledger) == before, "a refused command stored an event"
    return refused.value


def raw_event_bytes(ledger: Ledger) -> bytes:
    notifications = ledger.recorder.select_notifications(start=1, limit=1_000_000)
    return b"\n".join(n.state for n in notifications)


# Collection and policy binding ---------------------------------------------


def test_collection_lands_two_people_on_their_subjects(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger)
    record = ledger.certificate_record(record_id)
    assert record.policy_version == "v1"
    taro = ledger.data_subject(TARO)
    assert ledger.subject_records(taro.id) == [record_id]
    assert taro.records == 1
    assert ledger.data_subject(SubjectKey.email(" Taro@EXAMPLE.jp")).id == taro.id
    package = ledger.disclosure_package(taro.id)
    assert package["records"][0]["items"] == TARO_ITEMS


def test_collection_without_a_policy_in_force_is_refused(ledger: Ledger) -> None:
    error = refused_without_a_trace(ledger, lambda: collect(ledger), PolicyViolation)
    assert error.clause == "§12"


def test_collection_is_bound_to_the_version_in_force_when_it_happened(ledger: Ledger) -> None:
    publish_policy(ledger)
    ledger.publish_policy(
        version="v2",
        effective_from=T0 + timedelta(days=1),
        announced_at=T0,
        purposes=ALL_PURPOSES,
        channels=["C1"],
        cause=cause(),
    )
    before = collect(ledger, ref="before", channel="C2")
    assert ledger.certificate_record(before).policy_version == "v1"
    late = cause(T0 + timedelta(days=2), source="acme")
    error = refused_without_a_trace(
        ledger,
        lambda: ledger.collect(
            record_ref="after",
            channel="C2",
            purposes=["P1"],
            certificate=CertificateIdentity("a.example", [], "DV"),
            cause=late,
        ),
        PolicyViolation,
    )
    assert error.clause == "§5"
    assert [v.version for v in ledger.policy_versions()] == ["v1", "v2"]


def test_personal_values_never_reach_the_event_store_in_the_clear(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger)
    ledger.correct(
        record_id,
        channel="C1",
        personal_changes=[PersonalItemInput(TARO, "phone", "+81-90-0000-1111")],
        cause=cause(),
    )
    stored = raw_event_bytes(ledger)
    for value in [*TARO_ITEMS.values(), *HANAKO_ITEMS.values(), "+81-90-0000-1111"]:
        assert value.encode() not in stored
    assert b"Example KK" in stored  # organisation data is not personal and stays readable


def test_a_second_collection_of_the_same_record_is_refused(ledger: Ledger) -> None:
    publish_policy(ledger)
    collect(ledger)
    refused_without_a_trace(ledger, lambda: collect(ledger), PolicyViolation)


def test_malformed_personal_input_is_refused_without_echoing_it(ledger: Ledger) -> None:
    publish_policy(ledger)
    secret_value = "x" * 301
    error = refused_without_a_trace(
        ledger,
        lambda: collect(ledger, people=[PersonalItemInput(TARO, "name", secret_value)]),
        InvalidCommand,
    )
    assert secret_value not in str(error)


# Correction (§6) -------------------------------------------------------------


def test_acme_may_not_correct_an_operator_record_and_nothing_is_written(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger, channel="C1")
    error = refused_without_a_trace(
        ledger,
        lambda: ledger.correct(
            record_id,
            channel="C2",
            personal_changes=[PersonalItemInput(TARO, "phone", "+81-3-0000-0000")],
            cause=cause(source="acme"),
        ),
        PolicyViolation,
    )
    assert error.clause == "§6"
    assert (
        ledger.disclosure_package(ledger.subject_id(TARO))["records"][0]["items"]["phone"]
        == TARO_ITEMS["phone"]
    )


def test_acme_corrects_its_own_record_and_the_old_value_is_kept(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger, channel="C2")
    result = ledger.correct(
        record_id,
        channel="C2",
        personal_changes=[PersonalItemInput(TARO, "email", "taro@new.example.jp")],
        cause=cause(source="acme"),
    )
    record = ledger.certificate_record(record_id)
    assert record.pending_events == []
    part = ledger.disclosure_package(ledger.subject_id(TARO))["records"][0]
    assert part["items"]["email"] == "taro@new.example.jp"
    assert [s["value"] for s in part["superseded_items"]] == ["taro@example.jp"]
    assert result.position is not None and result.position == position(ledger)


def test_a_correction_that_changes_nothing_is_refused(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger)
    refused_without_a_trace(
        ledger,
        lambda: ledger.correct(
            record_id,
            channel="C1",
            personal_changes=[PersonalItemInput(TARO, "name", "山田 太郎")],
            cause=cause(),
        ),
        InvalidCommand,
    )


# Provision (§4) and stop (§11) --------------------------------------------------


def test_a_provision_is_recorded_on_the_provision_the_record_and_the_subject(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger)
    result = ledger.record_provision(
        category="4.4",
        recipient=CT_LOG,
        certificate_record_id=record_id,
        items=[ProvidedItemInput("name", TARO), ProvidedItemInput("common_name")],
        ct_submission=CtSubmission("argon", T0),
        cause=cause(),
    )
    assert result.id is not None
    provision = ledger.provision(result.id)
    assert provision.foreign and provision.unspecified_many and provision.retention_until is not None
    assert ledger.certificate_record(record_id).provisions == [(result.id, "4.4", "ct-argon")]
    [noted] = ledger.subject_provisions(ledger.subject_id(TARO))
    assert (noted.provision_id, noted.category) == (result.id, "4.4")
    assert noted.retention_until == provision.retention_until
    assert ledger.subject_provisions(ledger.subject_id(HANAKO)) == []


def test_a_provision_of_an_item_not_on_the_record_is_refused(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger, people=items(TARO, {"email": "taro@example.jp"}))
    refused_without_a_trace(
        ledger,
        lambda: ledger.record_provision(
            category="4.1",
            recipient=OPERATOR,
            certificate_record_id=record_id,
            items=[ProvidedItemInput("phone", TARO)],
            cause=cause(),
        ),
        InvalidCommand,
    )


def test_a_provision_for_an_unknown_subject_is_refused(ledger: Ledger) -> None:
    publish_policy(ledger)
    refused_without_a_trace(
        ledger,
        lambda: ledger.record_provision(
            category="4.1",
            recipient=OPERATOR,
            items=[ProvidedItemInput("name", SubjectKey.email("nobody@example.jp"))],
            cause=cause(),
        ),
        NotFound,
    )


def test_4_3_without_a_ground_is_refused_and_with_one_recorded(ledger: Ledger) -> None:
    publish_policy(ledger)
    collect(ledger)
    police = Recipient("gov-1", "Police", "JP")
    error = refused_without_a_trace(
        ledger,
        lambda: ledger.record_provision(
            category="4.3", recipient=police, items=[ProvidedItemInput("name", TARO)], cause=cause()
        ),
        InvalidCommand,
    )
    assert error.clause == "§4.3"
    result = ledger.record_provision(
        category="4.3",
        legal_ground="4.3.1",
        recipient=police,
        items=[ProvidedItemInput("name", TARO)],
        cause=cause(),
    )
    assert result.id is not None and ledger.provision(result.id).legal_ground == "4.3.1"


def test_an_accepted_stop_refuses_4_1_for_that_subject_only(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger)
    ledger.record_provision(
        category="4.4",
        recipient=CT_LOG,
        certificate_record_id=record_id,
        items=[ProvidedItemInput("name", TARO)],
        ct_submission=CtSubmission("argon", T0),
        cause=cause(),
    )
    ledger.request_stop(TARO, request_id="stop-1", cause=cause())
    ledger.decide_stop(TARO, request_id="stop-1", accepted=True, reason="subject's request", cause=cause())
    decided = ledger.data_subject(TARO).stop_requests["stop-1"]
    assert decided.state == "accepted" and decided.irrevocable and len(decided.irrevocable) == 1
    error = refused_without_a_trace(
        ledger,
        lambda: ledger.record_provision(
            category="4.1",
            recipient=OPERATOR,
            certificate_record_id=record_id,
            items=[ProvidedItemInput("name", TARO), ProvidedItemInput("name", HANAKO)],
            cause=cause(),
        ),
        PolicyViolation,
    )
    assert error.clause == "§11"
    ledger.record_provision(
        category="4.1",
        recipient=OPERATOR,
        certificate_record_id=record_id,
        items=[ProvidedItemInput("name", HANAKO)],
        cause=cause(),
    )
    ledger.record_provision(
        category="4.3",
        legal_ground="4.3.4",
        recipient=Recipient("gov", "Ministry", "JP"),
        items=[ProvidedItemInput("name", TARO)],
        cause=cause(),
    )


# Idempotency -----------------------------------------------------------------


def test_the_same_upstream_event_twice_changes_nothing(ledger: Ledger) -> None:
    publish_policy(ledger)
    upstream = fresh_upstream_id()
    first_id = collect(ledger, upstream=upstream)
    after_first = position(ledger)
    replay = ledger.collect(
        record_ref="app-1",
        channel="C1",
        purposes=["P1", "P3", "P4"],
        certificate=CertificateIdentity("app-1.example.jp", ["app-1.example.jp"], "OV"),
        organisation={"name": "Example KK", "country": "JP"},
        personal_items=items(TARO, TARO_ITEMS) + items(HANAKO, HANAKO_ITEMS),
        cause=cause(source="registrar", upstream=upstream),
    )
    assert replay == CommandResult(first_id, after_first, duplicate=True)
    assert position(ledger) == after_first


@pytest.mark.parametrize("command", ["correct", "provide", "stop", "erase"])
def test_every_command_is_idempotent_by_upstream_event_id(
    ledger: Ledger, clock: FakeClock, command: str
) -> None:
    publish_policy(ledger)
    record_id = collect(ledger)
    upstream = fresh_upstream_id()
    runs: dict[str, Callable[[], CommandResult]] = {
        "correct": lambda: ledger.correct(
            record_id,
            channel="C1",
            certificate_changes={"sans": ["b.example.jp"]},
            cause=cause(upstream=upstream),
        ),
        "provide": lambda: ledger.record_provision(
            category="4.1",
            recipient=OPERATOR,
            certificate_record_id=record_id,
            items=[ProvidedItemInput("name", TARO)],
            cause=cause(upstream=upstream),
        ),
        "stop": lambda: ledger.request_stop(TARO, cause=cause(upstream=upstream)),
        "erase": lambda: ledger.request_erasure(TARO, cause=cause(upstream=upstream)),
    }
    first = runs[command]()
    after = position(ledger)
    second = runs[command]()
    assert second.duplicate and second.id == first.id and position(ledger) == after


def test_an_upstream_event_id_reused_for_another_command_is_refused(ledger: Ledger) -> None:
    publish_policy(ledger)
    upstream = fresh_upstream_id()
    record_id = collect(ledger, upstream=upstream)
    refused_without_a_trace(
        ledger,
        lambda: ledger.correct(
            record_id,
            channel="C1",
            certificate_changes={"sans": ["x.example.jp"]},
            cause=cause(upstream=upstream),
        ),
        UpstreamEventConflict,
    )


def test_the_same_upstream_id_from_another_system_is_another_event(ledger: Ledger) -> None:
    publish_policy(ledger)
    upstream = fresh_upstream_id()
    collect(ledger, ref="r1", channel="C1", upstream=upstream)
    collect(ledger, ref="r2", channel="C2", upstream=upstream)  # from "acme"
    assert len(ledger.subject_records(ledger.subject_id(TARO))) == 2
    assert ledger.data_subject(TARO).records == 2


# Disclosure (§7) ---------------------------------------------------------------


def test_the_disclosure_package_holds_all_of_the_subject_and_nothing_of_anyone_else(ledger: Ledger) -> None:
    publish_policy(ledger)
    shared = collect(ledger, ref="shared")
    own = collect(ledger, ref="own", channel="C2", people=items(TARO, {"email": "taro@example.jp"}))
    collect(ledger, ref="hanako-only", people=items(HANAKO, HANAKO_ITEMS))
    provided = ledger.record_provision(
        category="4.1",
        recipient=OPERATOR,
        certificate_record_id=shared,
        items=[ProvidedItemInput("name", TARO), ProvidedItemInput("name", HANAKO)],
        cause=cause(),
    )
    ledger.record_provision(
        category="4.1",
        recipient=OPERATOR,
        certificate_record_id=shared,
        items=[ProvidedItemInput("email", HANAKO)],
        cause=cause(),
    )
    opened = ledger.open_disclosure(TARO, requested_format="json", cause=cause())
    assert opened.id is not None
    ledger.request_identity_verification(opened.id, method="documents", cause=cause())
    ledger.record_identity_verified(opened.id, evidence_ref="case-9", cause=cause())
    _, package = ledger.fulfil_disclosure(opened.id, cause=cause())

    assert {r["record_id"] for r in package["records"]} == {str(shared), str(own)}
    by_id = {r["record_id"]: r for r in package["records"]}
    assert by_id[str(shared)]["items"] == TARO_ITEMS
    assert by_id[str(own)]["items"] == {"email": "taro@example.jp"}
    assert [p["provision_id"] for p in package["provisions"]] == [str(provided.id)]
    assert package["provisions"][0]["items"] == ["name"]
    text = repr(package)
    for value in HANAKO_ITEMS.values():
        assert value not in text
    request = ledger.disclosure_request(opened.id)
    assert request.state == "fulfilled" and request.package_digest


def test_fulfilling_before_verification_is_refused(ledger: Ledger) -> None:
    publish_policy(ledger)
    collect(ledger)
    opened = ledger.open_disclosure(TARO, requested_format="csv", cause=cause())
    assert opened.id is not None
    request_id = opened.id
    refused_without_a_trace(ledger, lambda: ledger.fulfil_disclosure(request_id, cause=cause()), DomainError)


def test_a_disclosure_has_a_due_date(ledger: Ledger) -> None:
    publish_policy(ledger)
    collect(ledger)
    opened = ledger.open_disclosure(TARO, requested_format="paper", cause=cause())
    assert opened.id is not None
    request = ledger.disclosure_request(opened.id)
    assert request.due_at == T0 + timedelta(days=14) and request.requested_format == "paper"
    assert request.is_overdue(T0 + timedelta(days=15))


# Erasure ---------------------------------------------------------------------------


def test_erasure_is_refused_while_a_provision_record_must_be_kept(ledger: Ledger, clock: FakeClock) -> None:
    publish_policy(ledger)
    record_id = collect(ledger)
    ledger.record_provision(
        category="4.1",
        recipient=OPERATOR,
        certificate_record_id=record_id,
        items=[ProvidedItemInput("name", TARO)],
        cause=cause(),
    )
    ledger.request_erasure(TARO, cause=cause())
    clock.advance(days=365 * 3 - 1)
    error = refused_without_a_trace(
        ledger, lambda: ledger.carry_out_erasure(TARO, cause=cause(clock.now)), LegalHoldActive
    )
    assert isinstance(error, LegalHoldActive) and error.holds[0][0].startswith("provision:")
    clock.advance(days=2)
    ledger.carry_out_erasure(TARO, cause=cause(clock.now))
    assert ledger.data_subject(TARO).erasure_state == "erased"


def test_erasure_is_refused_until_two_years_after_the_certificate_expires(
    ledger: Ledger, clock: FakeClock
) -> None:
    publish_policy(ledger)
    record_id = collect(ledger)
    not_after = T0 + timedelta(days=90)
    ledger.record_issuance(record_id, serial="01ab", not_before=T0, not_after=not_after, cause=cause())
    ledger.request_erasure(TARO, cause=cause())
    clock.now = not_after + timedelta(days=365 * 2 - 1)
    error = refused_without_a_trace(
        ledger, lambda: ledger.carry_out_erasure(TARO, cause=cause(clock.now)), LegalHoldActive
    )
    assert isinstance(error, LegalHoldActive) and error.holds[0][0] == f"certificate-record:{record_id}"
    clock.now = not_after + timedelta(days=365 * 2 + 1)
    ledger.carry_out_erasure(TARO, cause=cause(clock.now))


def test_erasure_makes_the_data_unreadable_everywhere_and_breaks_nothing(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger)
    ledger.correct(
        record_id,
        channel="C1",
        personal_changes=[PersonalItemInput(TARO, "phone", "+81-90-1111-2222")],
        cause=cause(),
    )
    taro_id = ledger.subject_id(TARO)
    ledger.request_erasure(TARO, cause=cause())
    ledger.carry_out_erasure(TARO, cause=cause())

    record = ledger.certificate_record(record_id)  # the aggregate still loads
    taro_values = ledger.cipher.open_many(s for (sid, _), s in record.items.items() if sid == taro_id)
    assert taro_values and all(v is ERASED for v in taro_values)
    package = ledger.disclosure_package(taro_id)
    part = package["records"][0]
    assert set(part["items"].values()) == {"[erased]"}
    assert {s["value"] for s in part["superseded_items"]} == {"[erased]"}
    assert package["erasure"]["state"] == "erased"
    # The other person on the same record is untouched.
    hanako = ledger.disclosure_package(ledger.subject_id(HANAKO))["records"][0]["items"]
    assert hanako == HANAKO_ITEMS
    # The key itself is gone from the key table.
    assert ledger.keyring.keys_for([(taro_id, 1)]) == {(taro_id, 1): None}


def test_after_erasure_new_data_of_the_same_person_uses_a_new_key(ledger: Ledger) -> None:
    publish_policy(ledger)
    first = collect(ledger, ref="first", people=items(TARO, {"email": "taro@example.jp"}))
    ledger.request_erasure(TARO, cause=cause())
    ledger.carry_out_erasure(TARO, cause=cause())
    second = collect(ledger, ref="second", people=items(TARO, {"email": "taro@example.jp"}))
    by_id = {
        r["record_id"]: r["items"] for r in ledger.disclosure_package(ledger.subject_id(TARO))["records"]
    }
    assert by_id == {str(first): {"email": "[erased]"}, str(second): {"email": "taro@example.jp"}}


def test_erasure_needs_a_request_first(ledger: Ledger) -> None:
    publish_policy(ledger)
    collect(ledger)
    refused_without_a_trace(ledger, lambda: ledger.carry_out_erasure(TARO, cause=cause()), DomainError)


def test_a_failed_erasure_save_keeps_the_key(ledger: Ledger) -> None:
    """The key is destroyed in the event's transaction: no stored event, no shredding."""
    publish_policy(ledger)
    collect(ledger)
    ledger.request_erasure(TARO, cause=cause())
    taro = ledger.data_subject(TARO)
    taro.erase(holds=[], cause=cause())
    # A concurrent writer stores the subject's next event first ...
    ledger.request_stop(TARO, request_id="race", cause=cause())
    # ... so saving the stale erasure conflicts, and the key must survive.
    from eventsourcing.persistence import IntegrityError  # noqa: PLC0415

    with pytest.raises(IntegrityError):
        ledger.save(taro, shred=[(taro.id, 1)])
    assert ledger.keyring.keys_for([(taro.id, 1)])[(taro.id, 1)] is not None
    assert ledger.disclosure_package(taro.id)["records"][0]["items"] == TARO_ITEMS


def test_a_replay_with_another_personal_value_is_a_conflict_not_a_duplicate(ledger: Ledger) -> None:
    publish_policy(ledger)
    upstream = fresh_upstream_id()
    collect(ledger, upstream=upstream, people=items(TARO, {"name": "山田 太郎"}))
    refused_without_a_trace(
        ledger,
        lambda: collect(ledger, upstream=upstream, people=items(TARO, {"name": "山田 次郎"})),
        UpstreamEventConflict,
    )


def test_every_stored_event_says_who_caused_it_and_when(ledger: Ledger) -> None:
    publish_policy(ledger)
    record_id = collect(ledger, upstream=fresh_upstream_id())
    ledger.record_provision(
        category="4.1",
        recipient=OPERATOR,
        certificate_record_id=record_id,
        items=[ProvidedItemInput("name", TARO)],
        cause=cause(upstream=fresh_upstream_id()),
    )
    ledger.request_erasure(HANAKO, cause=cause())
    notifications = ledger.recorder.select_notifications(start=1, limit=1000)
    assert len(notifications) >= 8
    for notification in notifications:
        event = ledger.mapper.to_domain_event(notification)
        caused = getattr(event, "cause", None)
        assert isinstance(caused, Cause), f"{notification.topic} carries no cause"
        assert caused.actor and caused.source_system and caused.correlation_id
        assert caused.occurred_at.tzinfo is not None
        recorded_at = getattr(event, "timestamp", None)  # when it was recorded
        assert recorded_at is not None and recorded_at.tzinfo is not None


def test_a_stale_save_of_a_few_events_conflicts_and_stores_none_of_them(ledger: Ledger) -> None:
    """A command's few events go in one round trip on PostgreSQL; a version conflict still refuses all."""
    from eventsourcing.persistence import IntegrityError  # noqa: PLC0415

    publish_policy(ledger)
    collect(ledger)
    stale = ledger.data_subject(TARO)
    stale.request_stop(request_id="first", cause=cause())
    stale.request_erasure(cause=cause())
    ledger.request_stop(TARO, request_id="race", cause=cause())  # a concurrent writer got there first
    before = ledger.recorder.max_notification_id()
    with pytest.raises(IntegrityError):
        ledger.save(stale)
    assert ledger.recorder.max_notification_id() == before
    # The connection went back clean: the next command is recorded.
    ledger.request_stop(TARO, request_id="after", cause=cause())
    assert (ledger.recorder.max_notification_id() or 0) > (before or 0)
