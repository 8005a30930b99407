"""ACME accounts (§5 C2, §6) and batches of commands saved in one transaction (both backends)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking
from eventsourcing.utils import get_topic

from consumers.lag import recorded_messages
from domain.account import AcmeAccount
from domain.application import Ledger
from domain.cause import Cause
from domain.certificate import CertificateIdentity, CertificateRecord
from domain.commands import PersonalItemInput, ProvidedItemInput
from domain.errors import DomainError, InvalidTransition, LegalHoldActive, NotFound, PolicyViolation
from domain.identity import SubjectKey
from domain.provision import CtSubmission, Recipient, add_years
from domain.service.base import HasEventsOf, HasMaxTrackingIds
from domain.service.requests import ISSUANCE_RECORD_RETENTION_YEARS
from domain.tracking import FollowingTracking
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from tests.helpers import T0, FakeClock, cause, fresh_upstream_id, publish_policy

ALICE = "alice@example.com"
BOB = "bob@example.com"
CT_OPERATOR = Recipient("ct:argon", "Argon log operator", "US")


def acme(upstream: str | None = None) -> Cause:
    return cause(source="acme", upstream=upstream or fresh_upstream_id(), actor="acme-server")


def register(ledger: Ledger, ref: str = "acct-1", contacts: tuple[str, ...] = (ALICE,)) -> None:
    ledger.register_account(account_ref=ref, contacts=list(contacts), purposes=["P1", "P3"], cause=acme())


def issue(ledger: Ledger, order: str, account: str = "acct-1", days: int = 90) -> CertificateRecord:
    result = ledger.collect(
        record_ref=order,
        channel="C2",
        purposes=["P1", "P3"],
        certificate=CertificateIdentity(f"{order}.example.com", [f"{order}.example.com"], "DV", "0a1b"),
        account_ref=account,
        validity=(T0, T0 + timedelta(days=days)),
        cause=acme(),
    )
    assert result.id is not None
    return ledger.certificate_record(result.id)


def test_an_acme_account_holds_its_contacts_sealed(ledger: Ledger) -> None:
    publish_policy(ledger)
    register(ledger, contacts=(ALICE, BOB))
    alice = ledger.data_subject(SubjectKey.email(ALICE))
    package = ledger.disclosure_package(alice.id)
    assert [(p["kind"], p["channel"], p["items"]) for p in package["records"]] == [
        ("acme-account", "C2", {"email": ALICE})
    ]
    account = ledger.acme_account(ledger.subject_records(alice.id)[0])
    assert len(account.subject_ids) == 2


def test_an_account_needs_a_policy_that_allows_acme(ledger: Ledger) -> None:
    publish_policy(ledger, channels=["C1"])
    with pytest.raises(PolicyViolation) as refused:
        register(ledger)
    assert refused.value.clause == "§5"


def test_a_contact_update_through_acme_replaces_the_contacts_and_keeps_the_old(ledger: Ledger) -> None:
    publish_policy(ledger)
    register(ledger, contacts=(ALICE,))
    ledger.update_account_contacts(account_ref="acct-1", contacts=[BOB], channel="C2", cause=acme())
    alice_id = ledger.subject_id(SubjectKey.email(ALICE))
    part = ledger.disclosure_package(alice_id)["records"][0]
    assert part["items"] == {}
    assert [s["value"] for s in part["superseded_items"]] == [ALICE]
    bob_part = ledger.disclosure_package(ledger.subject_id(SubjectKey.email(BOB)))["records"][0]
    assert bob_part["items"] == {"email": BOB}


def test_a_contact_removed_and_added_again_appears_on_the_account_once(ledger: Ledger) -> None:
    """The person's state does not list their records: the account tells whether they were on it."""
    publish_policy(ledger)
    register(ledger, contacts=(ALICE,))
    for contacts in ([BOB], [ALICE, BOB], [BOB], [ALICE]):
        ledger.update_account_contacts(account_ref="acct-1", contacts=contacts, channel="C2", cause=acme())
    account_id = ledger.acme_account_id("acme", "acct-1")
    for address in (ALICE, BOB):
        subject = ledger.data_subject(SubjectKey.email(address))
        assert ledger.subject_records(subject.id) == [account_id]
        assert subject.records == 1
        assert [r["kind"] for r in ledger.disclosure_package(subject.id)["records"]] == ["acme-account"]


@pytest.mark.parametrize("channel", ["C3", "C4"])
def test_an_account_is_not_corrected_through_other_channels(ledger: Ledger, channel: str) -> None:
    publish_policy(ledger)
    register(ledger)
    with pytest.raises(PolicyViolation) as refused:
        ledger.update_account_contacts(account_ref="acct-1", contacts=[BOB], channel=channel, cause=acme())
    assert refused.value.clause == "§6"


def test_a_certificate_ordered_under_an_account_is_linked_and_issued(ledger: Ledger) -> None:
    publish_policy(ledger)
    register(ledger)
    record = issue(ledger, "order-1")
    assert record.status_at(T0 + timedelta(days=1)) == "issued"
    assert record.account_id is not None
    assert ledger.acme_account(record.account_id).certificates == 1
    assert ledger.account_certificates(record.account_id) == [record.id]


def test_a_deactivated_account_orders_nothing(ledger: Ledger) -> None:
    publish_policy(ledger)
    register(ledger)
    ledger.deactivate_account(account_ref="acct-1", cause=acme())
    with pytest.raises(DomainError, match="deactivated"):
        issue(ledger, "order-2")


def test_the_account_contacts_are_held_while_its_certificates_issuance_records_are(
    ledger: Ledger, clock: FakeClock
) -> None:
    publish_policy(ledger)
    register(ledger)
    record = issue(ledger, "order-1", days=90)
    assert record.not_after is not None
    alice = SubjectKey.email(ALICE)
    ledger.request_erasure(alice, cause=cause())
    clock.now = record.not_after + timedelta(days=365 * 2 - 1)
    with pytest.raises(LegalHoldActive):
        ledger.carry_out_erasure(alice, cause=cause(clock.now))
    clock.now = record.not_after + timedelta(days=365 * 2 + 1)
    ledger.carry_out_erasure(alice, cause=cause(clock.now))
    assert ledger.disclosure_package(ledger.subject_id(alice))["records"][0]["items"] == {"email": "[erased]"}


def test_a_ct_submission_of_a_certificate_without_personal_data_is_recorded(ledger: Ledger) -> None:
    publish_policy(ledger)
    register(ledger)
    record = issue(ledger, "order-1")
    result = ledger.record_provision(
        category="4.4",
        recipient=CT_OPERATOR,
        certificate_record_id=record.id,
        items=[ProvidedItemInput("common_name"), ProvidedItemInput("sans")],
        ct_submission=CtSubmission("argon2025", T0),
        cause=acme(),
    )
    assert result.id is not None
    provision = ledger.provision(result.id)
    assert provision.subject_ids == [] and not provision.record_required
    assert ledger.certificate_record(record.id).provisions == [(result.id, "4.4", "ct:argon")]


# Batches ------------------------------------------------------------------------


def test_a_batch_saves_every_command_in_one_transaction_with_its_tracking(ledger: Ledger) -> None:
    publish_policy(ledger)
    before = ledger.recorder.max_notification_id() or 0
    with ledger.batch() as batch:
        register(ledger)
        record = ledger.collect(
            record_ref="order-1",
            channel="C2",
            purposes=["P1"],
            certificate=CertificateIdentity("a.example.com", [], "DV", "01"),
            account_ref="acct-1",
            validity=(T0, T0 + timedelta(days=30)),
            cause=acme(),
        )
        assert record.position is None  # nothing is saved before the commit
        assert (ledger.recorder.max_notification_id() or 0) == before
        position = batch.commit(Tracking("acme.events:0", 41))
    assert position is not None and position > before
    assert ledger.tracked_position("acme.events:0") == 41
    assert record.id is not None and ledger.certificate_record(record.id).account_id is not None
    # Events are stored in the order the commands ran: the account before the certificate.
    topics = [n.topic for n in ledger.recorder.select_notifications(start=before + 1, limit=100)]
    assert topics.index("domain.account:AcmeAccount.Registered") < topics.index(
        "domain.certificate:CertificateRecord.Collected"
    )


def test_a_refused_command_leaves_nothing_in_the_batch(ledger: Ledger) -> None:
    publish_policy(ledger)
    register(ledger, contacts=(ALICE,))
    alice = SubjectKey.email(ALICE)
    with ledger.batch() as batch:
        ledger.request_stop(alice, request_id="s1", cause=cause())
        ledger.decide_stop(alice, request_id="s1", accepted=True, reason="asked", cause=cause())
        with pytest.raises(DomainError):
            # Refused half-way: Bob's note would pass, Alice's is refused (§11).
            ledger.record_provision(
                category="4.1",
                recipient=Recipient("op", "Operator", "JP"),
                items=[ProvidedItemInput("email", SubjectKey.email(BOB)), ProvidedItemInput("email", alice)],
                cause=cause(),
            )
        batch.commit()
    assert ledger.subject_provisions(ledger.subject_id(alice)) == []
    assert ledger.data_subject(alice).provisions == 0
    assert ledger.data_subject(alice).provision_stopped


def test_a_command_refused_half_way_in_a_batch_leaves_the_aggregates_as_before(ledger: Ledger) -> None:
    """Bob's note is made, then Alice's is refused (§11): Bob's must not reach a later command."""
    publish_policy(ledger)
    register(ledger, contacts=(ALICE, BOB))
    alice, bob = SubjectKey.email(ALICE), SubjectKey.email(BOB)
    ledger.request_stop(alice, request_id="s1", cause=cause())
    ledger.decide_stop(alice, request_id="s1", accepted=True, reason="asked", cause=cause())
    operator = Recipient("op", "Operator", "JP")
    with ledger.batch() as batch:
        ledger.prefetch([ledger.subject_id(bob), ledger.subject_id(alice)])
        with pytest.raises(PolicyViolation):
            ledger.record_provision(
                category="4.1",
                recipient=operator,
                items=[ProvidedItemInput("email", bob), ProvidedItemInput("email", alice)],
                cause=cause(),
            )
        kept = ledger.record_provision(
            category="4.1", recipient=operator, items=[ProvidedItemInput("email", bob)], cause=cause()
        )
        batch.commit()
    assert [p.provision_id for p in ledger.subject_provisions(ledger.subject_id(bob))] == [kept.id]
    assert ledger.data_subject(bob).provisions == 1
    assert ledger.subject_provisions(ledger.subject_id(alice)) == []
    assert ledger.data_subject(alice).provisions == 0


def test_the_same_upstream_event_twice_in_a_batch_is_applied_once(ledger: Ledger) -> None:
    publish_policy(ledger)
    upstream = fresh_upstream_id()
    with ledger.batch() as batch:
        first = ledger.register_account(
            account_ref="a", contacts=[ALICE], purposes=["P1"], cause=acme(upstream)
        )
        second = ledger.register_account(
            account_ref="a", contacts=[ALICE], purposes=["P1"], cause=acme(upstream)
        )
        batch.commit(Tracking("acme.events:1", 7))
    assert second.duplicate and second.id == first.id


def test_a_batch_behind_the_recorded_position_is_refused_whole(ledger: Ledger) -> None:
    publish_policy(ledger)
    with ledger.batch() as batch:
        register(ledger, ref="a1")
        batch.commit(Tracking("acme.events:2", 10))
    before = ledger.recorder.max_notification_id()
    with ledger.batch() as batch:
        register(ledger, ref="a2")
        with pytest.raises(IntegrityError):
            batch.commit(Tracking("acme.events:2", 10))
    assert ledger.recorder.max_notification_id() == before
    assert ledger.tracked_position("acme.events:2") == 10
    account_id = ledger.acme_account_id("acme", "a2")
    with pytest.raises(DomainError):
        ledger.acme_account(account_id)


def test_a_batch_is_recorded_only_on_top_of_the_position_it_started_from(ledger: Ledger) -> None:
    """Ingest's tracking: a batch started from a position another writer has moved since is refused whole."""
    publish_policy(ledger)
    stream = "acme.events:4"

    def commit(ref: str, position: int, after: int | None) -> None:
        with ledger.batch() as batch:
            register(ledger, ref=ref)
            batch.commit(FollowingTracking(stream, position, after))

    def refused(ref: str, position: int, after: int | None) -> str:
        before = ledger.recorder.max_notification_id()
        with pytest.raises(IntegrityError) as refusal:
            commit(ref, position, after)
        assert ledger.recorder.max_notification_id() == before, "nothing of the batch is stored"
        with pytest.raises(DomainError):
            ledger.acme_account(ledger.acme_account_id("acme", ref))
        return str(refusal.value)

    commit("b1", 9, None)  # the first batch of the stream
    assert ledger.tracked_position(stream) == 9
    # Another writer that also started from nothing: the stream has a position now.
    message = refused("b2", 19, None)
    assert message.startswith(f"{stream}: not recorded up to 19") and "nothing recorded" in message
    # Started from a position the stream has moved past, ahead of it, or not past it.
    for position, after in [(19, 4), (19, 12), (9, 9), (7, 9)]:
        refused("b3", position, after)
    assert ledger.tracked_position(stream) == 9
    commit("b4", 19, 9)  # on top of the position it started from
    assert ledger.tracked_position(stream) == 19
    assert ledger.acme_account(ledger.acme_account_id("acme", "b4")).id is not None
    # A plain tracking record still moves the position forward only.
    with ledger.batch() as batch:
        register(ledger, ref="b5")
        batch.commit(Tracking(stream, 25))
    assert ledger.tracked_position(stream) == 25


def test_the_positions_of_several_streams_are_read_as_one_by_one(ledger: Ledger) -> None:
    publish_policy(ledger)
    for ref, stream, position in [
        ("t1", "acme.events:0", 4),
        ("t2", "acme.events:0", 9),
        ("t3", "registrar.events:3", 2),
    ]:
        with ledger.batch() as batch:
            register(ledger, ref=ref)
            batch.commit(Tracking(stream, position))
    streams = ["acme.events:0", "registrar.events:3", "acme.events:1", "acme.events:0"]
    positions = ledger.tracked_positions(streams)
    assert positions == {"acme.events:0": 9, "registrar.events:3": 2, "acme.events:1": None}
    assert positions == {stream: ledger.tracked_position(stream) for stream in streams}
    assert recorded_messages(ledger, ["acme.events:0", "registrar.events:3", "acme.events:1"]) == 10 + 3
    # On PostgreSQL in one statement; SQLite's recorder asks stream by stream.
    assert isinstance(ledger.recorder, HasMaxTrackingIds) is ("Postgres" in type(ledger.recorder).__name__)


def _events_of(ledger: Ledger, ids: list[UUID], after: list[int] | None = None) -> list[StoredEvent]:
    recorder = ledger.recorder
    assert isinstance(recorder, HasEventsOf)
    return recorder.events_of(ids, after)


def _order(ledger: Ledger, order: str, account: str = "acct-1") -> None:
    """An issued certificate under the account, inside a batch (nothing is read back)."""
    ledger.collect(
        record_ref=order,
        channel="C2",
        purposes=["P1", "P3"],
        certificate=CertificateIdentity(f"{order}.example.com", [f"{order}.example.com"], "DV", "0a1b"),
        account_ref=account,
        validity=(T0, T0 + timedelta(days=90)),
        cause=acme(),
    )


def test_a_batch_sees_what_another_writer_saved_after_the_batch_before(
    ledger: Ledger, settings: Settings, clock: FakeClock
) -> None:
    ledger.kept_from_version = 1  # keep every aggregate, however short its history
    publish_policy(ledger)
    with ledger.batch() as batch:
        register(ledger)
        _order(ledger, "o1")
        batch.commit()
    other = build_ledger(settings, clock=clock)  # another process, say the API's
    try:
        other.update_account_contacts(account_ref="acct-1", contacts=[BOB], channel="C2", cause=acme())
        other.deactivate_account(account_ref="acct-1", cause=acme())
    finally:
        other.close()
    with ledger.batch() as batch:
        with pytest.raises(InvalidTransition, match="deactivated"):
            _order(ledger, "o2")
        batch.commit()
    account = ledger.acme_account(ledger.acme_account_id("acme", "acct-1"))
    assert account.deactivated_at is not None
    assert account.certificates == 1
    assert len(ledger.account_certificates(account.id)) == 1
    assert account.subject_ids == [ledger.subject_id(SubjectKey.email(BOB))]


@pytest.mark.parametrize("how", ["refused by the store", "left without saving"])
def test_what_a_batch_that_was_not_saved_changed_is_not_seen_by_the_next(ledger: Ledger, how: str) -> None:
    ledger.kept_from_version = 1  # keep every aggregate, however short its history
    publish_policy(ledger)
    with ledger.batch() as batch:
        register(ledger)
        _order(ledger, "o1")
        batch.commit(Tracking("acme.events:0", 1))
    with ledger.batch() as batch:
        _order(ledger, "o2")
        if how == "refused by the store":
            with pytest.raises(IntegrityError):
                batch.commit(Tracking("acme.events:0", 1))  # not after the recorded position
    with ledger.batch() as batch:
        _order(ledger, "o2")  # were the unsaved record or link kept, this would be refused or conflict
        _order(ledger, "o3")
        batch.commit(Tracking("acme.events:0", 3))
    account = ledger.acme_account(ledger.acme_account_id("acme", "acct-1"))
    records = [ledger.certificate_record(i).record_ref for i in ledger.account_certificates(account.id)]
    assert records == ["o1", "o2", "o3"]
    assert account.version == len(_events_of(ledger, [account.id]))


def test_an_aggregate_kept_from_an_earlier_batch_reads_only_its_later_events(ledger: Ledger) -> None:
    ledger.kept_from_version = 3
    publish_policy(ledger)
    with ledger.batch() as batch:
        register(ledger)
        batch.commit()
    account_id = ledger.acme_account_id("acme", "acct-1")
    for number in range(3):
        with ledger.batch() as batch:
            _order(ledger, f"o{number}")
            batch.commit()
    version = ledger.acme_account(account_id).version
    # Kept: the account (a long history here); not kept: a receipt (one event).
    kept = ledger._kept()  # what is kept is the behaviour under test
    assert kept[account_id].version == version
    assert all(aggregate.version >= 3 for aggregate in kept.values())
    later = _events_of(ledger, [account_id], [version - 1])
    assert [e.originator_version for e in later] == [version]
    assert _events_of(ledger, [account_id], [version]) == []
    assert len(_events_of(ledger, [account_id], [0])) == version


def test_the_events_of_some_topics_are_read_alone_in_order(ledger: Ledger) -> None:
    publish_policy(ledger)
    register(ledger)
    records = [issue(ledger, f"o{number}").id for number in range(3)]
    account_id = ledger.acme_account_id("acme", "acct-1")
    recorder = ledger.recorder
    assert isinstance(recorder, HasEventsOf)
    linked, issued = get_topic(AcmeAccount.CertificateLinked), get_topic(CertificateRecord.Issued)
    found = recorder.events_of([*records, account_id], topics=[linked, issued])
    assert {e.topic for e in found} == {linked, issued}
    order = [(e.originator_id, e.originator_version) for e in found]
    assert order == sorted(order)  # by aggregate and version (a UUID sorts as its bytes)
    of_account = [e for e in found if e.originator_id == account_id]
    assert [e.originator_version for e in of_account] == [2, 3, 4]  # after Registered
    assert len([e for e in found if e.topic == issued]) == 3
    assert recorder.events_of([account_id], topics=["no.such:Topic"]) == []
    with pytest.raises(ValueError, match="not after a version"):
        recorder.events_of([account_id], [1], topics=[linked])


def test_the_aggregates_kept_are_bounded_by_number_and_by_their_events(ledger: Ledger) -> None:
    ledger.kept_from_version = 1
    publish_policy(ledger)
    for number in range(4):
        with ledger.batch() as batch:
            register(ledger, ref=f"acct-{number}")
            _order(ledger, f"o{number}", account=f"acct-{number}")
            batch.commit()
    kept = ledger._kept()  # what is kept is the behaviour under test
    order = list(kept)
    assert ledger.acme_account_id("acme", "acct-0") in order

    ledger.kept_aggregates = 3
    with ledger.batch() as batch:
        batch.commit()
    assert list(kept) == order[-3:]  # the least recently used went first

    ledger.kept_aggregates = 20_000
    newest = kept[order[-1]].version
    ledger.kept_events = newest
    with ledger.batch() as batch:
        batch.commit()
    assert list(kept) == [order[-1]]
    assert sum(a.version for a in kept.values()) <= ledger.kept_events


def test_personal_items_of_a_record_stay_with_their_collection(ledger: Ledger) -> None:
    """A record with personal items still collects as before under the split service."""
    publish_policy(ledger)
    result = ledger.collect(
        record_ref="app-1",
        channel="C1",
        purposes=["P1"],
        certificate=CertificateIdentity("b.example.jp", [], "DV"),
        personal_items=[PersonalItemInput(SubjectKey.email(ALICE), "name", "Alice Smith")],
        cause=cause(),
    )
    assert result.id is not None
    assert isinstance(ledger.certificate_record(result.id), CertificateRecord)
    assert not isinstance(ledger.certificate_record(result.id), AcmeAccount)


def test_an_aggregate_larger_than_the_bound_is_kept_while_batches_use_it(ledger: Ledger) -> None:
    ledger.kept_from_version = 1
    publish_policy(ledger)
    with ledger.batch() as batch:
        register(ledger)
        register(ledger, ref="acct-other")
        _order(ledger, "other-0", account="acct-other")
        batch.commit()
    account_id = ledger.acme_account_id("acme", "acct-1")
    other_id = ledger.acme_account_id("acme", "acct-other")
    kept = ledger._kept()  # what is kept is the behaviour under test
    held = kept[account_id]
    assert other_id in kept
    ledger.kept_events = 1  # every account's history is larger than this
    for number in range(3):
        with ledger.batch() as batch:
            _order(ledger, f"o{number}")
            batch.commit()
        # The account this batch used stays (the same object, brought up to date);
        # the one it did not use goes, as the bound says.
        assert kept[account_id] is held
        assert held.version == len(_events_of(ledger, [account_id]))
        assert other_id not in kept
    assert isinstance(held, AcmeAccount)
    assert held.certificates == 3


def _collect_with(ledger: Ledger, ref: str, validity: tuple[datetime, datetime] | None = None) -> UUID:
    """A record collected by a designated operator with Alice's address on it (issued if ``validity``)."""
    record_id = ledger.collect(
        record_ref=ref,
        channel="C1",
        purposes=["P1"],
        certificate=CertificateIdentity(f"{ref}.example.com", [f"{ref}.example.com"], "DV", "0c"),
        personal_items=[PersonalItemInput(SubjectKey.email(ALICE), "email", ALICE)],
        validity=validity,
        cause=cause(),
    ).id
    assert record_id is not None
    return record_id


def test_the_legal_holds_name_every_issued_record_of_the_person_and_of_their_accounts(ledger: Ledger) -> None:
    publish_policy(ledger)
    register(ledger)
    register(ledger, ref="acct-2", contacts=(ALICE, BOB))
    records = [issue(ledger, "o1"), issue(ledger, "o2", days=400), issue(ledger, "o3", account="acct-2")]
    records.append(ledger.certificate_record(_collect_with(ledger, "direct", (T0, T0 + timedelta(days=30)))))
    _collect_with(ledger, "never-issued")
    alice = ledger.subject_id(SubjectKey.email(ALICE))
    holds = ledger.legal_holds(alice, T0)
    assert sorted(h.reference for h in holds) == sorted(f"certificate-record:{r.id}" for r in records)
    until = {f"certificate-record:{r.id}": r.not_after for r in records}
    for hold in holds:
        not_after = until[hold.reference]
        assert not_after is not None
        assert hold.until == add_years(not_after, ISSUANCE_RECORD_RETENTION_YEARS)
    with ledger.batch():  # read through the batch's read-ahead: the same holds
        assert ledger.legal_holds(alice, T0) == holds
    ledger.holds_read_at_once = 1  # every record and account read in a round of its own
    assert ledger.legal_holds(alice, T0) == holds
    bob = ledger.subject_id(SubjectKey.email(BOB))
    assert [h.reference for h in ledger.legal_holds(bob, T0)] == [f"certificate-record:{records[2].id}"]
    # A record the person is on that the store does not hold is an error, not "no hold".
    subject = ledger.data_subject(bob)
    subject.appear_on(uuid4(), cause())
    ledger.save(subject)
    with pytest.raises(NotFound, match="not found"):
        ledger.legal_holds(bob, T0)
    with ledger.batch(), pytest.raises(NotFound, match="not found"):
        ledger.legal_holds(bob, T0)


def test_an_accounts_certificates_are_read_from_its_events_with_a_batchs_unsaved_ones(ledger: Ledger) -> None:
    publish_policy(ledger)
    register(ledger)
    account_id = ledger.acme_account_id("acme", "acct-1")
    first = issue(ledger, "o1")
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    second = issue(ledger, "o2")
    assert ledger.account_certificates(account_id) == [first.id, second.id]
    assert ledger.account_certificates(account_id, as_of=between) == [first.id]
    alice = ledger.subject_id(SubjectKey.email(ALICE))
    (part,) = [r for r in ledger.disclosure_package(alice)["records"] if r["kind"] == "acme-account"]
    assert part["certificate_record_ids"] == [str(first.id), str(second.id)]
    (then,) = [
        r for r in ledger.disclosure_package(alice, as_of=between)["records"] if r["kind"] == "acme-account"
    ]
    assert then["certificate_record_ids"] == [str(first.id)]
    with ledger.batch() as batch:
        _order(ledger, "o3")
        unsaved = ledger.account_certificates(account_id)
        assert unsaved[:2] == [first.id, second.id]
        assert len(unsaved) == 3
        batch.commit()
        assert ledger.account_certificates(account_id) == unsaved  # saved now: counted once
    assert ledger.acme_account(account_id).certificates == 3


def test_a_persons_records_and_provisions_are_read_from_their_events_with_a_batchs_unsaved_ones(
    ledger: Ledger,
) -> None:
    publish_policy(ledger)
    register(ledger)
    account_id = ledger.acme_account_id("acme", "acct-1")
    alice = ledger.subject_id(SubjectKey.email(ALICE))
    first = _collect_with(ledger, "r1")
    provided = ledger.record_provision(
        category="4.1",
        recipient=Recipient("op", "Operator", "JP"),
        items=[ProvidedItemInput("email", SubjectKey.email(ALICE))],
        cause=cause(),
    ).id
    time.sleep(0.01)
    between = datetime.now(UTC)
    time.sleep(0.01)
    with ledger.batch() as batch:
        later = _collect_with(ledger, "r2")
        assert ledger.subject_records(alice) == [account_id, first, later]
        batch.commit()
        assert ledger.subject_records(alice) == [account_id, first, later]  # saved now: listed once
    assert ledger.subject_records(alice, as_of=between) == [account_id, first]
    assert [p.provision_id for p in ledger.subject_provisions(alice)] == [provided]
    assert ledger.subject_provisions(alice, as_of=T0 - timedelta(days=1)) == []
    then = ledger.disclosure_package(alice, as_of=between)
    assert [r["record_id"] for r in then["records"]] == [str(account_id), str(first)]
    assert [p["provision_id"] for p in then["provisions"]] == [str(provided)]
    assert ledger.data_subject(alice).records == 3


def test_a_persons_provisions_are_read_as_of_the_version_a_command_has_in_hand(
    ledger: Ledger, settings: Settings, clock: FakeClock
) -> None:
    """A provision another writer saves meanwhile is not counted against the older state (§11's check)."""
    publish_policy(ledger)
    register(ledger)
    alice = ledger.subject_id(SubjectKey.email(ALICE))
    operator = Recipient("op", "Operator", "JP")

    def provide() -> UUID | None:
        items = [ProvidedItemInput("email", SubjectKey.email(ALICE))]
        return ledger.record_provision(category="4.1", recipient=operator, items=items, cause=cause()).id

    first = provide()
    in_hand = ledger.data_subject(alice)
    second = provide()  # meanwhile
    assert [p.provision_id for p in ledger.subject_provisions(alice)] == [first, second]
    assert [p.provision_id for p in ledger.subject_provisions(alice, version=in_hand.version)] == [first]
    assert len(ledger.subject_records(alice, version=in_hand.version)) == in_hand.records == 1
    with ledger.batch():
        third = provide()  # unsaved, on the subject as the batch read it
        other = build_ledger(settings, clock=clock)  # another process writes meanwhile
        try:
            items = [ProvidedItemInput("email", SubjectKey.email(ALICE))]
            other.record_provision(category="4.1", recipient=operator, items=items, cause=cause())
        finally:
            other.close()
        now = ledger.data_subject(alice)
        assert now.provisions == 3
        listed = [p.provision_id for p in ledger.subject_provisions(alice, version=now.version)]
        assert listed == [first, second, third]
        # Not saved: the batch's subject is behind the store (saving it would conflict).
