"""Connections the server cut while they sat idle in the pool are not handed out (kiroku.persistence.live):
not for kiroku's statements, nor for the library's."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import ExitStack
from typing import Any
from uuid import UUID

import psycopg
import pytest
from eventsourcing.postgres import PostgresDatastore

from domain.application import Ledger
from kiroku.persistence.live import LivePostgresDatastore, was_cut
from kiroku.persistence.recorders import KirokuPostgresRecorder
from projections.service import Projections
from tests.helpers import FakeClock
from tests.integration.test_listed_kinds import note_dead_letters
from tests.integration.test_projections import play


def datastore_of(ledger: Ledger) -> PostgresDatastore:
    recorder = ledger.recorder
    assert isinstance(recorder, KirokuPostgresRecorder)
    assert isinstance(recorder.datastore, LivePostgresDatastore), "the factory makes its datastore live"
    return recorder.datastore


def cut_idle_connections(datastore: PostgresDatastore, url: str) -> set[int]:
    """Terminates the backends of every connection idle in the pool, as a server restart does; their pids."""
    pool = datastore.pool
    with ExitStack() as held:
        pids = {
            held.enter_context(pool.connection()).info.backend_pid
            for _ in range(pool.get_stats()["pool_size"])
        }
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM unnest(%s::int[]) AS pid", (sorted(pids),))
        deadline = time.monotonic() + 10
        while admin.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s)", (sorted(pids),)
        ).fetchone() != (0,):
            assert time.monotonic() < deadline, "the backends did not end"
            time.sleep(0.01)
    return pids


def test_a_cut_connection_is_not_handed_out_and_the_pools_others_are_replaced(
    pg_ledger: Ledger, postgres_url: str
) -> None:
    datastore = datastore_of(pg_ledger)
    cut = cut_idle_connections(datastore, postgres_url)
    assert len(cut) >= 2, "the pool held several connections"

    with datastore.get_connection() as conn:
        row = conn.execute("SELECT pg_backend_pid() AS pid").fetchone()
    assert row is not None and row["pid"] not in cut

    # The pool's other cut connections were tested and replaced: plain ones of the pool work, all at once.
    with ExitStack() as held:
        conns = [held.enter_context(datastore.get_connection()) for _ in range(len(cut))]
        pids = [c.execute("SELECT pg_backend_pid() AS pid").fetchone()["pid"] for c in conns]  # type: ignore[index]
    assert not set(pids) & cut


def test_a_healthy_connection_is_handed_out_and_transactions_commit_or_roll_back(
    pg_ledger: Ledger,
) -> None:
    datastore = datastore_of(pg_ledger)
    made = datastore.pool.get_stats()["connections_num"]
    for _ in range(10):
        with datastore.get_connection() as conn:
            assert not was_cut(conn)
            assert conn.execute("SELECT 1 AS one").fetchone() == {"one": 1}
    assert datastore.pool.get_stats()["connections_num"] == made, "the pool's idle connections, no new one"
    table = f'"{datastore.schema}".live_check'
    with datastore.transaction(commit=False) as cursor:
        cursor.execute(f"CREATE TABLE {table} (x int)")
    with datastore.transaction(commit=True) as cursor:
        cursor.execute("SELECT to_regclass(%s) AS found", (table,))
        assert cursor.fetchone() == {"found": None}, "rolled back"
        cursor.execute(f"CREATE TABLE {table} (x int)")
    with datastore.get_connection() as conn:
        found = conn.execute("SELECT to_regclass(%s)::text AS found", (table,)).fetchone()
        assert found is not None and found["found"] is not None, "committed"


def test_a_closed_connection_counts_as_cut(postgres_url: str) -> None:
    conn = psycopg.connect(postgres_url, autocommit=True)
    assert not was_cut(conn)
    conn.close()
    assert was_cut(conn)


def test_every_kind_of_read_works_at_once_after_the_server_cut_the_pool(
    pg_ledger: Ledger, clock: FakeClock, postgres_url: str
) -> None:
    play(pg_ledger, clock, seed=11, stories=2)
    note_dead_letters(pg_ledger, range(3))
    projections = Projections(pg_ledger)
    projections.catch_up()
    audit = projections.audit_page(limit=1000)
    subjects = projections.store.read(projections.views["audit_trail"], "event_subjects", {})
    subject_id = UUID(subjects[0]["subject_id"])
    record_id = next(UUID(row["certificate_record_id"]) for row in audit if row.get("certificate_record_id"))
    recorder = pg_ledger.recorder
    assert isinstance(recorder, KirokuPostgresRecorder)
    certificates = projections.store.active("certificates")
    assert certificates is not None

    reads: dict[str, Callable[[], Any]] = {
        "a view (the audit trail)": lambda: projections.audit_page(limit=1000),
        "a subject (views and keys)": lambda: projections.subject(subject_id, clock.now),
        "a certificate": lambda: projections.certificate(record_id, clock.now),
        "an aggregate's events": lambda: recorder.events_of([record_id]),
        "a listed kind (dead letters)": pg_ledger.dead_letters,
        "positions": lambda: recorder.max_tracking_ids(["no-such-stream"]),
        "a view's position (the library's read)": lambda: projections.store.position(certificates),
        "the head (the library's read)": recorder.max_notification_id,
        "a view runner's page (the library's read)": lambda: recorder.select_notifications(1, 50),
        "events of some kinds (the library's read)": lambda: recorder.select_notifications(
            1, 1000, topics=[n.topic for n in recorder.select_notifications(1, 1)]
        ),
        "an aggregate (the library's read)": lambda: recorder.select_events(record_id),
        "an aggregate (the library's repository)": lambda: pg_ledger.repository.get(record_id).version,
    }
    expected = {name: read() for name, read in reads.items()}
    assert expected["a subject (views and keys)"] is not None
    assert len(expected["a listed kind (dead letters)"]) == 3
    assert expected["a view's position (the library's read)"] == expected["the head (the library's read)"]
    assert len(expected["a view runner's page (the library's read)"]) == 50
    assert expected["events of some kinds (the library's read)"]
    assert (
        len(expected["an aggregate (the library's read)"])
        == expected["an aggregate (the library's repository)"]
    )
    pool = datastore_of(pg_ledger).pool
    for name, read in reads.items():
        cut = cut_idle_connections(datastore_of(pg_ledger), postgres_url)
        pool.pop_stats()
        try:
            found = read()
        except Exception as exc:  # noqa: BLE001 - the test names the read that failed
            pytest.fail(f"{name} failed after the server cut the pool's connections: {type(exc).__name__}")
        assert found == expected[name], name
        # One cut connection found; the pool's others tested and replaced together, not tried one by
        # one (a statement failing on each, as the library's own retries would go through them).
        stats = pool.get_stats()
        assert stats.get("returns_bad", 0) == 1, (name, stats)
        assert stats.get("connections_lost", 0) == len(cut) - 1, (name, stats)
