"""Snapshots of long histories: taken by saved batches, read instead of the events before them.

Both backends.
"""

from __future__ import annotations

import itertools
import logging
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate

from domain.application import Ledger
from domain.commands import PersonalItemInput
from domain.identity import SubjectKey
from domain.service.base import replay
from domain.snapshots import SNAPSHOT_FORMAT, KirokuSnapshot
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from tests.helpers import FakeClock, cause, publish_policy
from tests.integration.test_accounts_and_batches import ALICE, _order, acme, register
from tests.integration.test_ledger import TARO, TARO_ITEMS, collect
from tests.integration.test_projections import play


def _whole(ledger: Ledger, aggregate_id: UUID) -> Any:
    """The aggregate replayed from every one of its events, no snapshot."""
    return replay(None, ledger.events.get(aggregate_id))


def _snapshot_versions(ledger: Ledger, aggregate_id: UUID) -> list[int]:
    store = ledger.snapshot_store
    assert store is not None
    return [s.originator_version for s in store.recorder.select_events(aggregate_id)]


def _state(aggregate: Any) -> dict[str, Any]:
    return {k: v for k, v in vars(aggregate).items() if k != "_pending_events"}


def test_every_aggregate_of_a_varied_history_comes_back_from_its_snapshot(
    ledger: Ledger, clock: FakeClock
) -> None:
    publish_policy(ledger)
    play(ledger, clock, seed=7, stories=4, steps=30)
    ids = list(dict.fromkeys(n.originator_id for n in ledger.recorder.select_notifications(1, 100_000)))
    kinds = set()
    for aggregate_id in ids:
        aggregate = _whole(ledger, UUID(str(aggregate_id)))
        stored = ledger.mapper.to_stored_event(KirokuSnapshot.take(aggregate))
        snapshot = ledger.mapper.to_domain_event(stored)  # through the store's JSON
        assert isinstance(snapshot, KirokuSnapshot)
        back = snapshot.mutate(None)
        assert type(back) is type(aggregate)
        assert _state(back) == _state(aggregate)
        kinds.add(type(aggregate).__name__)
    assert {"CertificateRecord", "DataSubject", "Provision", "UpstreamReceipt"} <= kinds


def _account_ordering_in_batches(ledger: Ledger, *, snapshot_from: int, orders: int) -> UUID:
    """An ACME account with ``orders`` certificates, each ordered in a batch of its own."""
    ledger.snapshot_from = snapshot_from
    publish_policy(ledger)
    register(ledger)
    for number in range(orders):
        with ledger.batch() as batch:
            _order(ledger, f"o{number}")
            batch.commit()
    return ledger.acme_account_id("acme", "acct-1")


def test_a_saved_batch_snapshots_a_long_history_and_a_new_process_reads_from_it(
    ledger: Ledger, settings: Settings, clock: FakeClock
) -> None:
    account_id = _account_ordering_in_batches(ledger, snapshot_from=4, orders=6)
    # Snapshots when the account reached 4 events, then each 4 more (at least a tenth).
    versions = _snapshot_versions(ledger, account_id)
    assert versions and versions[0] >= 4
    assert all(b - a >= 4 for a, b in itertools.pairwise(versions))
    whole = _whole(ledger, account_id)
    assert whole.version - versions[-1] < 4

    other = build_ledger(settings, clock=clock)  # another process: nothing kept in memory
    other.snapshot_from = 1_000_000  # it takes none of its own
    try:
        read = other.acme_account(account_id)
        assert other._snapshot_versions[account_id] == versions[-1]  # it started from the snapshot
        assert _state(read) == _state(whole)
        # Events after the snapshot are applied to it: here, more certificates and a contact change.
        with other.batch() as batch:
            _order(other, "later-1")
            _order(other, "later-2")
            batch.commit()
        other.update_account_contacts(
            account_ref="acct-1", contacts=["bob@example.com"], channel="C2", cause=acme()
        )
        assert _snapshot_versions(other, account_id) == versions
        third = build_ledger(settings, clock=clock)
        try:
            after = third.acme_account(account_id)
            assert third._snapshot_versions[account_id] == versions[-1]
            assert _state(after) == _state(_whole(third, account_id))
            assert after.certificates == 8
            assert len(third.account_certificates(account_id)) == 8
            # Many at once (one statement with the snapshots, more than a few ids).
            fourth = build_ledger(settings, clock=clock)
            try:
                ids = [*third.account_certificates(account_id), account_id]
                many = fourth._read_many(ids)
                assert fourth._snapshot_versions[account_id] == versions[-1]
                for aggregate_id in ids:
                    assert _state(many[aggregate_id]) == _state(_whole(fourth, aggregate_id))
            finally:
                fourth.close()
            assert third.legal_holds(ledger.subject_id(SubjectKey.email(ALICE))) == ledger.legal_holds(
                ledger.subject_id(SubjectKey.email(ALICE))
            )
        finally:
            third.close()
    finally:
        other.close()


def test_a_process_remembers_a_bounded_number_of_snapshot_versions(ledger: Ledger) -> None:
    """Forgetting the oldest snapshot versions costs at most an early snapshot, never a wrong state."""
    ledger.snapshot_from = 4
    ledger.snapshot_versions_kept = 2
    publish_policy(ledger)
    accounts = ["acct-a", "acct-b", "acct-c"]
    for ref in accounts:
        register(ledger, ref)
    for number in range(5):
        with ledger.batch() as batch:
            for ref in accounts:
                _order(ledger, f"{ref}-o{number}", account=ref)
            batch.commit()
    ids = [ledger.acme_account_id("acme", ref) for ref in accounts]
    assert all(_snapshot_versions(ledger, i) for i in ids), "each account should have been snapshotted"
    assert list(ledger._snapshot_versions) == ids[1:], "the two most recently snapshotted are kept"
    # The forgotten one is snapshotted again no later than the others, and reads right.
    for number in range(5, 9):
        with ledger.batch() as batch:
            _order(ledger, f"acct-a-o{number}", account="acct-a")
            batch.commit()
    assert len(ledger._snapshot_versions) == 2
    assert ids[0] in ledger._snapshot_versions
    versions = _snapshot_versions(ledger, ids[0])
    assert versions == sorted(set(versions))
    assert _state(ledger.acme_account(ids[0])) == _state(_whole(ledger, ids[0]))


def test_a_snapshot_of_another_format_is_ignored_and_the_events_are_read(
    ledger: Ledger, settings: Settings, clock: FakeClock
) -> None:
    publish_policy(ledger)
    register(ledger)
    account_id = ledger.acme_account_id("acme", "acct-1")
    _order(ledger, "o1")
    account = ledger.acme_account(account_id)
    snapshot = KirokuSnapshot.take(account)
    stale = KirokuSnapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state={**snapshot.state, "~format": SNAPSHOT_FORMAT + 1, "certificates": 0},
    )
    assert ledger.snapshot_store is not None
    ledger.snapshot_store.put([stale])
    other = build_ledger(settings, clock=clock)
    try:
        read = other.acme_account(account_id)
        assert account_id not in other._snapshot_versions
        assert read.certificates == 1  # from the events, not the stale snapshot
    finally:
        other.close()


class _Unwritable:
    """A value the snapshot codec does not know."""


def test_a_snapshot_that_cannot_be_written_leaves_the_batch_saved(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    ledger.snapshot_from = 1
    publish_policy(ledger)
    with ledger.batch() as batch:
        register(ledger)
        account_id = ledger.acme_account_id("acme", "acct-1")
        account: Aggregate = batch.aggregates[account_id]
        account.__dict__["odd"] = _Unwritable()
        with caplog.at_level(logging.WARNING, logger="kiroku.ledger"):
            batch.commit()
    assert "no snapshot of a AcmeAccount at version 1: SnapshotStateError" in caplog.text
    assert _snapshot_versions(ledger, account_id) == []
    assert _whole(ledger, account_id).version == 1


def test_personal_values_are_not_in_the_clear_in_snapshots(ledger: Ledger) -> None:
    publish_policy(ledger)
    secret_phone = "+81-90-5555-0123"
    record_id = collect(ledger)
    ledger.correct(
        record_id,
        channel="C1",
        personal_changes=[PersonalItemInput(TARO, "phone", secret_phone)],
        cause=cause(datetime(2026, 2, 1, tzinfo=UTC)),
    )
    ledger.snapshot_from = 1
    record = ledger.certificate_record(record_id)
    ledger.take_snapshots([record])
    store = ledger.snapshot_store
    assert store is not None
    raw = b"".join(s.state for s in store.recorder.select_events(record_id))
    assert raw, "a snapshot was written"
    for value in (*TARO_ITEMS.values(), secret_phone):
        assert value.encode() not in raw
    assert b"Example KK" in raw  # organisation data is not personal and stays readable


def test_the_snapshots_table_may_be_emptied_while_processes_run(
    ledger: Ledger, settings: Settings, clock: FakeClock
) -> None:
    account_id = _account_ordering_in_batches(ledger, snapshot_from=2, orders=4)
    assert _snapshot_versions(ledger, account_id)
    store = ledger.snapshot_store
    assert store is not None
    datastore: Any = getattr(store.recorder, "datastore")  # noqa: B009 - not on the recorder's type
    schema = getattr(datastore, "schema", None)  # PostgreSQL's; SQLite has none
    table = f'"{schema}".{ledger._snapshots_table}' if schema else ledger._snapshots_table
    with datastore.transaction(commit=True) as curs:
        curs.execute(f"DELETE FROM {table}")
    assert _snapshot_versions(ledger, account_id) == []
    whole = _state(_whole(ledger, account_id))
    assert _state(ledger.acme_account(account_id)) == whole  # this process read from one before
    other = build_ledger(settings, clock=clock)
    try:
        assert _state(other.acme_account(account_id)) == whole
        assert account_id not in other._snapshot_versions
    finally:
        other.close()
    with ledger.batch() as batch:  # and snapshots are taken again as the history grows
        for number in range(4, 8):
            _order(ledger, f"o{number}")
        batch.commit()
    assert _snapshot_versions(ledger, account_id)[-1] == _whole(ledger, account_id).version


@pytest.mark.parametrize(
    "state",
    [
        {"~format": SNAPSHOT_FORMAT, "certificates": {"zz": 1}},  # a tag this code never wrote
        {"~format": SNAPSHOT_FORMAT, "items": {"c": ["os:PathLike", {}]}},  # a class outside the domain
        {"~format": SNAPSHOT_FORMAT, "certificates": {"U": "abc"}},  # cut short
        {"~format": SNAPSHOT_FORMAT, "items": {"e": ["domain.gone:Enum", "x"]}},  # a class since removed
    ],
    ids=["unknown tag", "outside class", "cut short", "removed class"],
)
def test_a_snapshot_that_cannot_be_read_is_passed_over_for_the_events(
    ledger: Ledger,
    settings: Settings,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
    state: dict[str, Any],
) -> None:
    publish_policy(ledger)
    register(ledger)
    account_id = ledger.acme_account_id("acme", "acct-1")
    _order(ledger, "o1")
    whole = _whole(ledger, account_id)
    damaged = KirokuSnapshot(
        originator_id=account_id,
        originator_version=whole.version,
        timestamp=datetime.now(UTC),
        topic="domain.account:AcmeAccount",
        state=state,
    )
    assert ledger.snapshot_store is not None
    ledger.snapshot_store.put([damaged])
    other = build_ledger(settings, clock=clock)
    try:
        with caplog.at_level(logging.WARNING, logger="kiroku.ledger"):
            read = other.acme_account(account_id)
            many = other._read_many([account_id, *(uuid4() for _ in range(9))])  # the many-id statement
        assert _state(read) == _state(whole)
        assert many[account_id] is not None and _state(many[account_id]) == _state(whole)
        assert account_id not in other._snapshot_versions
        assert "could not be read" in caplog.text
    finally:
        other.close()
