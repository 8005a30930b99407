"""Listings of one rare kind of event across the store (gaps, dead letters) read through an index."""

from __future__ import annotations

from types import SimpleNamespace

from eventsourcing.persistence import Notification
from eventsourcing.utils import get_topic

from consumers.contract import UndecodableMessage
from consumers.ingest import DeadLetter
from domain.application import Ledger
from domain.dead_letter import UpstreamDeadLetter
from domain.gap import UpstreamGap
from kiroku.persistence.recorders import LISTED_TOPICS, KirokuPostgresRecorder
from tests.helpers import FakeClock
from tests.integration.test_projections import play


def test_the_listed_topics_are_the_gaps_and_the_dead_letters() -> None:
    assert set(LISTED_TOPICS) == {get_topic(UpstreamGap.Accepted), get_topic(UpstreamDeadLetter.Recorded)}


def note_dead_letters(ledger: Ledger, offsets: range) -> None:
    with ledger.batch() as batch:
        batch.add(
            [
                DeadLetter(
                    SimpleNamespace(topic="acme.events", partition=0, offset=offset, timestamp=-1),
                    UndecodableMessage("x"),
                ).noted("acme.events:0", "acme")
                for offset in offsets
            ],
            {},
        )
        batch.commit()


def test_dead_letters_among_many_events_are_read_through_the_index(
    pg_ledger: Ledger, clock: FakeClock
) -> None:
    recorder = pg_ledger.recorder
    assert isinstance(recorder, KirokuPostgresRecorder)
    note_dead_letters(pg_ledger, range(3))
    play(pg_ledger, clock, seed=95, stories=6)
    note_dead_letters(pg_ledger, range(3, 5))
    play(pg_ledger, clock, seed=96, stories=2)
    topic = get_topic(UpstreamDeadLetter.Recorded)

    # The same events, in the same order, as the library's read of the whole store, page by page.
    everything = recorder.select_notifications(start=1, limit=100_000, topics=[topic])
    assert len(everything) == 5
    for page in (1, 2, 1000):
        read: list[Notification] = []
        start = 1
        while True:
            found = recorder.notifications_of_topic(topic, start, page)
            read.extend(found)
            if len(found) < page:
                break
            start = found[-1].id + 1
        assert [(n.id, n.originator_id, n.topic, n.state) for n in read] == [
            (n.id, n.originator_id, n.topic, n.state) for n in everything
        ]
    assert [d.offset for d in pg_ledger.dead_letters(page=2)] == [0, 1, 2, 3, 4]
    assert [d.offset for d in pg_ledger.dead_letters(after=everything[1].id, limit=2)] == [2, 3]
    assert [d.offset for d in pg_ledger.dead_letters_from(page=2)] == [0, 1, 2, 3, 4]  # the CLI's

    # Through the partial index: the planner is told the table is large, as it is in production.
    table = f'"{recorder.datastore.schema}"."{recorder.events_table_name}"'
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(
            f"EXPLAIN SELECT notification_id FROM {table} WHERE topic = %s AND notification_id >= 1 "
            "ORDER BY notification_id LIMIT 1000",
            (topic,),
        )
        plan = " ".join(row["QUERY PLAN"] for row in cursor.fetchall())
    assert f"{recorder.events_table_name}_listed_kinds" in plan, plan
