"""Running, rebuilding and reading the views; erasure reaches every view (both backends)."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

from domain.application import Ledger
from domain.certificate import CertificateIdentity
from domain.commands import PersonalItemInput, ProvidedItemInput
from domain.identity import SubjectKey
from domain.provision import CtSubmission, Recipient
from projections.service import Projections
from projections.sql import Writer
from projections.store import PostgresViewStore, Read, ViewStopped
from tests.helpers import T0, FakeClock, cause, publish_policy

TARO = SubjectKey.email("taro@example.jp")
HANAKO = SubjectKey.email("hanako@example.jp")
TARO_VALUES = {
    "name": "山田 太郎",
    "email": "taro@example.jp",
    "phone": "+81-3-1234-5678",
    "postal_address": "東京都千代田区丸の内1-1-1",
}


def collect(ledger: Ledger, ref: str) -> None:
    ledger.collect(
        record_ref=ref,
        channel="C1",
        purposes=["P1", "P3"],
        certificate=CertificateIdentity(f"{ref}.example.jp", [], "DV"),
        personal_items=[
            *(PersonalItemInput(TARO, k, v) for k, v in TARO_VALUES.items()),
            PersonalItemInput(HANAKO, "name", "鈴木 花子"),
            PersonalItemInput(HANAKO, "email", "hanako@example.jp"),
        ],
        cause=cause(),
    )


def every_view_row(projections: Projections) -> str:
    """Every row of every generation of every view, as text."""
    dump: list[Any] = []
    for name, view in projections.views.items():
        for generation in projections.store.generations(name):
            names = projections.store.table_names(view, generation.generation)
            with projections.store.transaction() as cursor:
                writer = Writer(cursor, projections.store.dialect, names)
                dump.extend(writer.select(t.name, {}) for t in view.tables)
    return repr(dump)


def test_after_erasure_no_view_holds_the_subject_readably_and_lookups_find_nothing(
    ledger: Ledger, clock: FakeClock
) -> None:
    publish_policy(ledger)
    collect(ledger, "r1")
    ledger.record_provision(
        category="4.3",
        legal_ground="4.3.1",
        recipient=Recipient("gov", "Police", "JP"),
        items=[ProvidedItemInput("name", TARO)],
        cause=cause(),
    )
    projections = Projections(ledger)
    projections.catch_up()
    taro_id = ledger.subject_id(TARO)
    assert projections.subjects_by("email", "Taro@Example.JP") == [taro_id]
    assert projections.subjects_by("name", "山田　太郎") == [taro_id]  # a full-width space, as typed in Japan
    assert projections.rows("subjects", "items", {"subject_id": str(taro_id)})

    ledger.request_erasure(TARO, cause=cause())
    ledger.carry_out_erasure(TARO, cause=cause())
    projections.catch_up()
    assert projections.subjects_by("email", "taro@example.jp") == []
    assert projections.subjects_by("name", "山田 太郎") == []
    assert projections.rows("subjects", "items", {"subject_id": str(taro_id)}) == []
    assert (
        projections.rows("subjects", "subjects", {"subject_id": str(taro_id)})[0]["erasure_state"] == "erased"
    )
    assert projections.subjects_by("email", "hanako@example.jp") == [ledger.subject_id(HANAKO)]

    rebuilt = projections.rebuild("subjects")
    assert rebuilt.generation == 2
    assert projections.subjects_by("email", "taro@example.jp") == []
    text = every_view_row(projections)
    for value in TARO_VALUES.values():
        assert value not in text


def test_a_reader_can_wait_for_its_own_write(ledger: Ledger) -> None:
    publish_policy(ledger)
    projections = Projections(ledger, poll_interval=0.05)
    worker = threading.Thread(target=projections.run, daemon=True)
    worker.start()
    try:
        collect(ledger, "r2")
        result = ledger.request_stop(TARO, request_id="s1", cause=cause())
        assert result.position is not None
        assert projections.wait(result.position, timeout=15)
        [request] = projections.rows("requests", "requests", {"kind": "stop"})
        assert request["state"] == "requested"
    finally:
        projections.stop()
        worker.join(15)
    assert not worker.is_alive()


def test_a_rebuild_switches_readers_only_when_it_is_complete(ledger: Ledger, clock: FakeClock) -> None:
    publish_policy(ledger)
    for n in range(5):
        collect(ledger, f"r{n}")
    projections = Projections(ledger, page_size=4)
    projections.catch_up(["certificates"])
    first = projections.store.active("certificates")
    assert first is not None
    seen: list[int] = []

    def progress(done: int, head: int, rate: float) -> None:
        active = projections.store.active("certificates")
        assert active is not None
        seen.append(active.generation)  # readers still on the old one while it builds
        assert len(projections.rows("certificates", "certificates")) == 5

    rebuilt = projections.rebuild("certificates", progress)
    assert set(seen) == {first.generation} and len(seen) > 1
    active = projections.store.active("certificates")
    assert active is not None and active.generation == rebuilt.generation
    [status] = [s for s in projections.status() if s.name == "certificates"]
    assert status.lag == 0 and status.state == "active"


def test_status_shows_lag_and_not_built_views(ledger: Ledger, clock: FakeClock) -> None:
    publish_policy(ledger)
    clock.advance(days=1)
    collect(ledger, "r9")
    projections = Projections(ledger)
    before = {s.name: s for s in projections.status()}
    assert before["audit_trail"].state == "not built" and before["audit_trail"].lag > 0
    projections.catch_up(["audit_trail"])
    after = {s.name: s for s in projections.status()}
    assert after["audit_trail"].lag == 0 and after["audit_trail"].state == "active"
    assert T0 + timedelta(days=1) == clock.now


def test_certificates_expire_requests_fall_overdue_and_ct_provisions_group_per_recipient(
    ledger: Ledger, clock: FakeClock
) -> None:
    publish_policy(ledger)
    ledger.register_account(
        account_ref="a1", contacts=["ops@example.org"], purposes=["P1"], cause=cause(source="acme")
    )
    for order in ("o1", "o2"):
        ledger.record_ct_submission(
            order_ref=order,
            account_ref="a1",
            purposes=["P1"],
            certificate=CertificateIdentity(f"{order}.example.org", [], "DV", "0f"),
            log_operator=Recipient("ct:argon", "Argon", "US"),
            submission=CtSubmission("argon", clock.now),
            cause=cause(source="acme"),
        )
        ledger.record_acme_certificate(
            order_ref=order,
            account_ref="a1",
            purposes=["P1"],
            certificate=CertificateIdentity(f"{order}.example.org", [], "DV", "0f"),
            validity=(clock.now, clock.now + timedelta(days=90)),
            cause=cause(source="acme"),
        )
    ledger.request_stop(SubjectKey.email("ops@example.org"), request_id="s1", cause=cause())
    projections = Projections(ledger)
    projections.catch_up()
    record_id = ledger.certificate_record_id("acme", "o1")
    assert projections.certificate(record_id, clock.now + timedelta(days=1))["status"] == "issued"  # type: ignore[index]
    expired = projections.certificate(record_id, clock.now + timedelta(days=91))
    assert expired is not None and expired["status"] == "expired"
    assert [r["recipient_id"] for r in expired["recipients"]] == ["ct:argon"]
    [request] = projections.requests(clock.now + timedelta(days=15), open_only=True)
    assert request["kind"] == "stop" and request["overdue"]
    assert not projections.requests(clock.now + timedelta(days=1))[0]["overdue"]
    [bulk] = projections.bulk_provisions()
    assert (bulk["recipient_id"], bulk["category"], bulk["provisions"], bulk["foreign_recipient"]) == (
        "ct:argon",
        "4.4",
        2,
        True,
    )


def test_a_subject_reads_with_items_records_holds_and_open_requests(ledger: Ledger, clock: FakeClock) -> None:
    publish_policy(ledger)
    collect(ledger, "r7")
    ledger.record_provision(
        category="4.1",
        recipient=Recipient("op", "Operator", "JP"),
        certificate_record_id=ledger.certificate_record_id("registrar", "r7"),
        items=[ProvidedItemInput("name", TARO)],
        cause=cause(),
    )
    ledger.open_disclosure(TARO, requested_format="json", cause=cause())
    projections = Projections(ledger)
    projections.catch_up()
    taro = projections.subject(ledger.subject_id(TARO), clock.now)
    assert taro is not None
    assert {i["item"]: i["value"] for i in taro["items"]} == TARO_VALUES
    assert taro["records"] == [str(ledger.certificate_record_id("registrar", "r7"))]
    assert [h["reason"] for h in taro["holds"]] == ["APPI Art. 29 provision record retention"]
    assert [r["kind"] for r in taro["open_requests"]] == ["disclosure"]
    later = projections.subject(ledger.subject_id(TARO), clock.now + timedelta(days=365 * 3 + 1))
    assert later is not None and later["holds"] == []
    assert projections.subject(ledger.subject_id(SubjectKey.email("nobody@example.jp")), clock.now) is None


def test_a_subject_holds_the_issuance_records_of_their_records_and_their_accounts(
    ledger: Ledger, clock: FakeClock
) -> None:
    """Issued directly (items on the record) or through an ACME account: held two years after expiry."""
    publish_policy(ledger)
    collect(ledger, "r8")
    direct = ledger.certificate_record_id("registrar", "r8")
    expiry = T0 + timedelta(days=90)
    ledger.record_issuance(direct, serial="08", not_before=T0, not_after=expiry, cause=cause())
    acme = cause(source="acme", actor="acme-server")
    ledger.register_account(account_ref="a8", contacts=["taro@example.jp"], purposes=["P1"], cause=acme)
    ledger.collect(
        record_ref="o8",
        channel="C2",
        purposes=["P1"],
        certificate=CertificateIdentity("o8.example.com", ["o8.example.com"], "DV", "0b"),
        account_ref="a8",
        validity=(T0, T0 + timedelta(days=30)),
        cause=acme,
    )
    ordered = ledger.certificate_record_id("acme", "o8")
    projections = Projections(ledger)
    projections.catch_up()
    taro = projections.subject(ledger.subject_id(TARO), clock.now)
    assert taro is not None
    assert sorted((h["reference"], h["until"][:10], h["reason"]) for h in taro["holds"]) == sorted(
        [
            (f"certificate-record:{direct}", "2026-08-30", "CA issuance record retention"),
            (f"certificate-record:{ordered}", "2026-07-01", "CA issuance record retention"),
        ]
    )
    hanako = projections.subject(ledger.subject_id(HANAKO), clock.now)
    assert hanako is not None
    assert [h["reference"] for h in hanako["holds"]] == [f"certificate-record:{direct}"]
    expired = projections.subject(ledger.subject_id(TARO), T0 + timedelta(days=365 * 2 + 91))
    assert expired is not None and expired["holds"] == []


def test_a_subject_read_needs_one_pooled_connection_at_a_time(pg_ledger: Ledger, clock: FakeClock) -> None:
    """A reader never holds a connection while waiting for another one from the same pool.

    Otherwise as many concurrent readers as the pool has connections would each
    hold one and wait for a second until the pool's timeout (seen under load).
    With a pool of one connection such a reader fails at once.
    """
    collect(pg_ledger, "r9")
    projections = Projections(pg_ledger)
    projections.catch_up()
    pool = pg_ledger.recorder.datastore.pool  # type: ignore[attr-defined]
    pool.resize(1, 1)  # no new connections; the open ones stay open
    held = [pool.getconn() for _ in range(pool.get_stats()["pool_size"] - 1)]
    try:
        assert pool.get_stats()["pool_available"] == 1
        # Forgotten, so each read looks its view's generation up again (with one connection).
        projections.store._reading_cache().clear()
        taro = projections.subject(pg_ledger.subject_id(TARO), clock.now)
        assert taro is not None
        assert {i["item"]: i["value"] for i in taro["items"]} == TARO_VALUES
        projections.store._reading_cache().clear()
        record = projections.certificate(pg_ledger.certificate_record_id("registrar", "r9"), clock.now)
        assert record is not None
    finally:
        for conn in held:
            pool.putconn(conn)


def test_a_live_generation_gets_the_indexes_its_view_declares_now(pg_ledger: Ledger) -> None:
    """An index added to a view later reaches the tables of a generation built before it, on start."""
    collect(pg_ledger, "r10")
    projections = Projections(pg_ledger)
    projections.catch_up()
    generation = projections.store.active("subjects")
    assert generation is not None
    index = f"kv_subjects_g{generation.generation}_account_subjects_i0"
    datastore = pg_ledger.recorder.datastore  # type: ignore[attr-defined]
    with datastore.get_connection() as conn:
        conn.execute(f'DROP INDEX "{datastore.schema}"."{index}"')  # as made before the index was declared
        conn.commit()
    Projections(pg_ledger)
    with datastore.get_connection() as conn:
        found = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE schemaname = %s AND indexname = %s",
            (datastore.schema, index),
        ).fetchall()
    assert len(found) == 1
    assert "(subject_id)" in found[0]["indexdef"]


def test_reads_together_give_the_rows_of_each_read_alone(ledger: Ledger) -> None:
    """One statement on PostgreSQL (rows as JSON): the same values, types and order as separate reads."""
    publish_policy(ledger)
    collect(ledger, "r11")
    collect(ledger, "r12")
    ledger.open_disclosure(TARO, requested_format="json", cause=cause())
    projections = Projections(ledger)
    projections.catch_up()
    subjects, requests = projections.view("subjects"), projections.view("requests")
    taro = {"subject_id": str(ledger.subject_id(TARO))}
    reads = [
        Read(subjects, "subjects", taro),  # text, int, bool and NULL columns
        Read(subjects, "items", taro, order_by="record_id, item"),
        Read(subjects, "records", {}, order_by="record_id DESC"),
        Read(subjects, "holds", {"subject_id": "nobody"}),  # no row
        Read(subjects, "records", {}, conditions=[("record_id", "in", [])]),  # can match no row
        Read(requests, "requests", taro),
    ]
    together = projections.store.read_together(reads)
    alone = [
        projections.store.read(r.view, r.table, r.where, r.order_by, conditions=r.conditions) for r in reads
    ]
    assert together == alone
    # 0 == False in Python: the types are compared too (text, int, bool, NULL).
    assert [{k: type(v) for k, v in row.items()} for rows in together for row in rows] == [
        {k: type(v) for k, v in row.items()} for rows in alone for row in rows
    ]
    assert together[0][0]["erased_at"] is None
    assert len(together[1]) > 1 and len(together[2]) > 1  # order is compared too
    assert together[3] == [] and together[4] == []


def indexes(projections: Projections, table: str) -> dict[str, str]:
    """The indexes PostgreSQL has on one table of the views' schema: name -> definition."""
    store = projections.store
    assert isinstance(store, PostgresViewStore)
    with store.reading() as cursor:
        cursor.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
            (store.datastore.schema, table),
        )
        return {row["indexname"]: row["indexdef"] for row in cursor.fetchall()}


def index_names(projections: Projections, table: str) -> set[str]:
    return set(indexes(projections, table))


def test_a_rebuild_makes_the_indexes_its_view_does_not_read_at_the_end(
    pg_ledger: Ledger, clock: FakeClock
) -> None:
    for n in range(5):
        collect(pg_ledger, f"r{n}")
    projections = Projections(pg_ledger, page_size=4)
    building: list[set[str]] = []

    def progress(done: int, head: int, rate: float) -> None:
        [generation] = [g for g in projections.store.generations("certificates") if g.state == "building"]
        building.append(index_names(projections, f"kv_certificates_g{generation.generation}_certificates"))

    rebuilt = projections.rebuild("certificates", progress)
    table = f"kv_certificates_g{rebuilt.generation}_certificates"
    assert building and all(names == {f"{table}_pkey"} for names in building), (
        "primary key only while it builds"
    )
    assert index_names(projections, table) == {f"{table}_pkey", f"{table}_i0", f"{table}_i1", f"{table}_i2"}


def test_opening_the_store_leaves_a_building_generation_s_indexes_to_its_builder(
    pg_ledger: Ledger, clock: FakeClock
) -> None:
    # Another process opening the store while a rebuild writes must not index the tables under it
    # (that took locks the rebuild's writes waited on: a deadlock, seen with two rebuild processes).
    projections = Projections(pg_ledger)
    view = projections.view("certificates")
    building = projections.new_generation("certificates")
    table = f"kv_certificates_g{building.generation}_certificates"
    Projections(pg_ledger)  # opens the store, as a second rebuild process does
    assert index_names(projections, table) == {f"{table}_pkey"}
    projections.store.activate(view, building)
    assert index_names(projections, table) == {f"{table}_pkey", f"{table}_i0", f"{table}_i1", f"{table}_i2"}


def indexed_columns(projections: Projections, table: str) -> list[tuple[str, ...]]:
    """The column lists of one table's indexes, primary key included."""
    definitions = indexes(projections, table).values()
    return sorted(tuple(c.strip() for c in d.rsplit("(", 1)[1].rstrip(")").split(",")) for d in definitions)


def test_a_rebuilt_view_has_every_index_it_declares(pg_ledger: Ledger, clock: FakeClock) -> None:
    for n in range(3):
        collect(pg_ledger, f"r{n}")
    projections = Projections(pg_ledger)
    rebuilt = projections.rebuild_views()
    for name, generation in rebuilt.items():
        for table in projections.view(name).tables:
            declared = sorted([tuple(table.primary_key), *(tuple(index) for index in table.indexes)])
            found = indexed_columns(projections, f"kv_{name}_g{generation.generation}_{table.name}")
            assert found == declared, f"{name}.{table.name}"


def test_a_build_indexes_each_view_that_did_not_stop_and_no_view_that_did(
    pg_ledger: Ledger, clock: FakeClock
) -> None:
    """Each view's indexes are made as soon as its events are applied, before any view is activated."""
    collect(pg_ledger, "before")
    pg_ledger.recorder.insert_events(
        [StoredEvent(uuid4(), 1, "domain.subject:DataSubject.StopDecided", b"{not json")]
    )
    collect(pg_ledger, "after")
    projections = Projections(pg_ledger, page_size=2)
    building = {name: projections.new_generation(name) for name in projections.views}
    stops = projections.build(building)
    stopped = {stop.view for stop in stops}
    # Views that read that kind of event, applied here and in the database; and two that do not.
    assert {"subjects", "audit_trail"} <= stopped
    assert not {"certificates", "provision_ledger"} & stopped
    assert set(building) == set(projections.views) - stopped
    for name in projections.views:
        view = projections.view(name)
        [generation] = [g for g in projections.store.generations(name) if g.state == "building"]
        for table in view.tables:
            early = view.indexes_applying_reads
            declared = [
                tuple(table.primary_key),
                *(
                    tuple(index)
                    for index in table.indexes
                    if name in building or early is None or (table.name, *index) in early
                ),
            ]
            found = indexed_columns(projections, f"kv_{name}_g{generation.generation}_{table.name}")
            assert found == sorted(declared), f"{name}.{table.name}"


def test_an_event_that_cannot_be_decoded_stops_a_rebuild_of_the_views_that_read_it_only(
    ledger: Ledger, clock: FakeClock
) -> None:
    """The page after it is read and decoded ahead of the views: that must not stop the others."""
    publish_policy(ledger)
    collect(ledger, "before")
    ids = ledger.recorder.insert_events(
        [StoredEvent(uuid4(), 1, "domain.subject:DataSubject.StopDecided", b"{not json")]
    )
    assert ids is not None
    [bad] = ids
    collect(ledger, "after")
    projections = Projections(ledger, page_size=2)  # pages read ahead before and after the bad one
    with pytest.raises(ViewStopped) as stopped:
        projections.rebuild_views()
    assert stopped.value.notified.notification_id == bad
    assert stopped.value.notified.event_type == "DataSubject.StopDecided"
    # The certificates view does not read that kind of event: rebuilt whole, and switched to.
    [generation] = [g for g in projections.store.generations("certificates") if g.state == "active"]
    assert projections.store.position(generation) == ledger.recorder.max_notification_id()
    assert [r["record_ref"] for r in _certificate_rows(projections)] == ["after", "before"]
    assert not [g for g in projections.store.generations("subjects") if g.state == "active"]


def _certificate_rows(projections: Projections) -> list[dict[str, Any]]:
    view = projections.view("certificates")
    [active] = [g for g in projections.store.generations("certificates") if g.state == "active"]
    names = projections.store.table_names(view, active.generation)
    with projections.store.transaction() as cursor:
        return Writer(cursor, projections.store.dialect, names).select(
            "certificates", {}, order_by="record_ref"
        )
