"""Views: a rebuild equals the incremental build, one runner per view, a bad event stops one view."""

from __future__ import annotations

import copy
import logging
import random
import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import Any, ClassVar
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError

from consumers.contract import Contract, UndecodableMessage
from consumers.ingest import DeadLetter
from consumers.synthetic import Traffic
from consumers.translate import Position
from consumers.translate import apply as translate
from domain.application import Ledger
from domain.codes import Clause
from domain.commands import PersonalItemInput
from domain.errors import PolicyViolation
from projections.runner import ViewRunner, view_store_for
from projections.service import Projections
from projections.sql import Writer
from projections.store import Generation, PostgresViewStore, ViewStore
from projections.view import Notified, View, notified_page
from projections.views import VIEW_NAMES, make_views
from projections.views.audit import AuditTrail
from projections.views.certificates import Certificates
from projections.views.policy import PolicyVersions
from projections.views.provisions import ProvisionLedger
from tests.helpers import FakeClock, cause, publish_policy
from tests.integration.test_ledger import TARO, collect
from tests.integration.test_random_histories import CHANNELS, KINDS, VALUES, History, Op


def random_ops(chance: random.Random, count: int) -> list[Op]:
    """A seeded history of commands, like the hypothesis-generated ones."""
    makers = [
        lambda: Op(
            "collect",
            (
                chance.randint(0, 2),
                chance.choice(CHANNELS),
                set(chance.sample(range(3), chance.randint(0, 3))),
            ),
        ),
        lambda: Op(
            "correct",
            (
                chance.randint(0, 2),
                chance.choice(["C1", "C2"]),
                chance.randint(0, 2),
                chance.choice(KINDS),
                chance.choice(VALUES),
            ),
        ),
        lambda: Op(
            "provide",
            (chance.choice(["4.1", "4.2", "4.3", "4.4"]), None, chance.randint(0, 2), chance.randint(0, 2)),
        ),
        lambda: Op("provide", ("4.3", "4.3.1", chance.randint(0, 2), 2)),
        lambda: Op("request_stop", (chance.randint(0, 2),)),
        lambda: Op("decide_stop", (chance.randint(0, 2), chance.random() < 0.5)),
        lambda: Op("request_erasure", (chance.randint(0, 2),)),
        lambda: Op("erase", (chance.randint(0, 2), chance.randint(0, 4))),
        lambda: Op("replay", (chance.randint(0, 30),)),
    ]
    return [chance.choice(makers)() for _ in range(count)]


def play(ledger: Ledger, clock: FakeClock, seed: int, stories: int = 6, steps: int = 25) -> None:
    chance = random.Random(seed)
    for _ in range(stories):
        history = History(ledger, clock)
        for op in [
            Op("collect", (0, "C1", {0, 1})),
            Op("collect", (1, "C2", {1, 2})),
            *random_ops(chance, steps),
        ]:
            history.run(op)


def rows_of(store: ViewStore, view: View, generation: Generation) -> dict[str, list[dict[str, Any]]]:
    names = store.table_names(view, generation.generation)
    with store.transaction() as cursor:
        writer = Writer(cursor, store.dialect, names)
        return {t.name: writer.select(t.name, {}, order_by=", ".join(t.primary_key)) for t in view.tables}


def build(ledger: Ledger, store: ViewStore, view: View, page_size: int) -> ViewRunner:
    runner = ViewRunner(ledger, store, view, store.new_generation(view), page_size=page_size)
    runner.catch_up()
    return runner


def test_a_rebuild_equals_the_incremental_build(ledger: Ledger, clock: FakeClock) -> None:
    publish_policy(ledger)
    store = view_store_for(ledger)
    incremental = {name: build(ledger, store, view, page_size=7) for name, view in make_views(ledger).items()}
    for round_no in range(4):
        play(ledger, clock, seed=100 + round_no)
        for runner in incremental.values():
            runner.catch_up()
    head = ledger.recorder.max_notification_id()
    assert head is not None and head > 300
    for name, view in make_views(ledger).items():
        rebuilt = build(ledger, store, view, page_size=1000)
        assert store.position(rebuilt.generation) == head
        expected = rows_of(store, view, incremental[name].generation)
        assert rows_of(store, view, rebuilt.generation) == expected
        assert any(expected.values()), f"{name} is empty; the history should fill it"


def test_a_records_corrections_count_holds_across_pages_and_generations_sharing_a_view(
    ledger: Ledger,
) -> None:
    """One view object applies the live generation and a rebuild's new one, pages interleaved."""
    publish_policy(ledger)
    record_id = collect(ledger)

    def correct(phone: str) -> None:
        ledger.correct(
            record_id, channel="C1", personal_changes=[PersonalItemInput(TARO, "phone", phone)], cause=cause()
        )

    correct("+81-90-0000-0001")
    correct("+81-90-0000-0002")
    store = view_store_for(ledger)
    view = Certificates()
    live = build(ledger, store, view, page_size=1000)

    def corrections(runner: ViewRunner) -> list[int]:
        return [row["corrections"] for row in rows_of(store, view, runner.generation)["certificates"]]

    assert corrections(live) == [2]
    rebuilt = ViewRunner(ledger, store, view, store.new_generation(view), page_size=1)
    while corrections(rebuilt) != [1]:  # the new generation one event at a time, to the first correction
        assert rebuilt.run_once() == 1
    correct("+81-90-0000-0003")
    live.catch_up()
    assert corrections(live) == [3]
    rebuilt.catch_up()
    assert corrections(rebuilt) == [3]


def test_the_audit_trail_has_a_row_per_event_with_cause_clause_and_policy(
    ledger: Ledger, clock: FakeClock
) -> None:
    publish_policy(ledger)
    play(ledger, clock, seed=7, stories=2)
    store = view_store_for(ledger)
    runner = build(ledger, store, AuditTrail(), page_size=100)
    rows = rows_of(store, AuditTrail(), runner.generation)["events"]
    assert [r["notification_id"] for r in rows] == list(
        range(1, (ledger.recorder.max_notification_id() or 0) + 1)
    )
    collected = [r for r in rows if r["event_type"] == "CertificateRecord.Collected"]
    assert collected and all(r["clause"] == "§5" and r["policy_version"] == "v1" for r in collected)
    provided = [r for r in rows if r["event_type"] == "Provision.Recorded"]
    assert all(r["clause"].startswith("§4.") for r in provided)
    assert all(r["actor"] and r["source_system"] and r["recorded_at"] for r in rows)
    subjects = rows_of(store, AuditTrail(), runner.generation)["event_subjects"]
    assert subjects
    text = repr(rows) + repr(subjects)
    for value in VALUES:
        assert value not in text, "personal values do not belong in the audit trail"


def test_the_provision_ledger_keeps_the_art_29_facts(ledger: Ledger, clock: FakeClock) -> None:
    publish_policy(ledger)
    play(ledger, clock, seed=8, stories=3)
    store = view_store_for(ledger)
    runner = build(ledger, store, ProvisionLedger(), page_size=50)
    rows = rows_of(store, ProvisionLedger(), runner.generation)["provisions"]
    assert rows
    for row in rows:
        provision = ledger.provision(UUID(row["provision_id"]))
        assert row["category"] == provision.category
        assert bool(row["foreign_recipient"]) == provision.foreign
        assert (row["retention_until"] is None) == (provision.retention_until is None)


def test_two_runners_for_one_view_one_works_the_other_waits(ledger: Ledger, clock: FakeClock) -> None:
    publish_policy(ledger)
    store = view_store_for(ledger)
    view = PolicyVersions()
    generation = store.new_generation(view)
    first = ViewRunner(ledger, store, view, generation, poll_interval=0.1)
    second = ViewRunner(ledger, store, view, generation, poll_interval=0.1)
    one = threading.Thread(target=first.run)
    one.start()
    deadline = time.monotonic() + 10
    while first.applied == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    two = threading.Thread(target=second.run)
    two.start()
    ledger.publish_policy(
        version="v2",
        effective_from=clock.now + timedelta(days=1),
        announced_at=clock.now,
        purposes={"P1": "x"},
        channels=["C1"],
        justification="narrowed",
        cause=cause(),
    )
    deadline = time.monotonic() + 10
    while store.position(generation) != ledger.recorder.max_notification_id() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.position(generation) == ledger.recorder.max_notification_id()
    assert first.applied == 2 and second.applied == 0, "only the lock holder works"
    first.stop()
    one.join(10)
    second.stop()
    two.join(10)
    versions = store.read(view, "versions", {}, order_by="version")
    assert [v["version"] for v in versions] == ["v1", "v2"]


def revise(
    ledger: Ledger,
    version: str,
    announced_at: datetime,
    effective_from: datetime,
    justification: str | None = None,
) -> int:
    """Announces a revision (P1 through C1 only); returns its notification id."""
    ledger.publish_policy(
        version=version,
        effective_from=effective_from,
        announced_at=announced_at,
        purposes={"P1": "x"},
        channels=["C1"],
        justification=justification,
        cause=cause(),
    )
    position = ledger.recorder.max_notification_id()
    assert position is not None
    return position


class Fragile(View):
    """A view that cannot apply revisions, to see one view stop and the others go on."""

    name = "fragile"
    schema = 1
    tables: ClassVar = PolicyVersions.tables
    broken = True

    def apply(self, notified: Notified, rows: Writer) -> None:
        if self.broken and notified.event_type == "PolicyCatalogue.Revised":
            raise ValueError("cannot read this revision")
        PolicyVersions().apply(notified, rows)


def test_an_event_a_view_cannot_apply_stops_that_view_only_until_retried(
    ledger: Ledger, clock: FakeClock
) -> None:
    publish_policy(ledger)
    revised_at = revise(ledger, "v2", clock.now, clock.now, justification="narrowed")
    store = view_store_for(ledger)
    fragile = Fragile()
    runner = ViewRunner(ledger, store, fragile, store.new_generation(fragile), poll_interval=0.05)
    runner.run()  # returns: the view stopped
    [stopped] = store.stopped("fragile")
    assert (stopped.notification_id, stopped.event_type, stopped.error_class) == (
        revised_at,
        "PolicyCatalogue.Revised",
        "ValueError",
    )
    healthy = build(ledger, store, PolicyVersions(), page_size=10)
    assert store.position(healthy.generation) == ledger.recorder.max_notification_id()
    assert store.position(runner.generation) is None  # the page with the bad event was not applied
    refused = ViewRunner(ledger, store, fragile, runner.generation)
    refused.run()
    assert refused.applied == 0, "a stopped view does not run until retried"
    assert store.clear_stopped("fragile") == 1
    fragile.broken = False
    fixed = ViewRunner(ledger, store, fragile, runner.generation)
    fixed.catch_up()
    assert store.position(runner.generation) == ledger.recorder.max_notification_id()


class Duplicating(View):
    """A view whose rows for a revision clash with an earlier row: found only when rows are written."""

    name = "duplicating"
    schema = 1
    tables: ClassVar = PolicyVersions.tables

    def apply(self, notified: Notified, rows: Writer) -> None:
        if notified.event_type in {"PolicyCatalogue.Published", "PolicyCatalogue.Revised"}:
            version = "same" if notified.event.version in {"v1", "v2"} else notified.event.version
            rows.insert("versions", {"version": version, "notification_id": notified.notification_id})


def test_a_row_that_cannot_be_written_stops_the_view_at_the_event_that_wrote_it(
    ledger: Ledger, clock: FakeClock
) -> None:
    publish_policy(ledger)
    revised_at = revise(ledger, "v2", clock.now, clock.now, justification="narrowed")
    revise(ledger, "v3", clock.now, clock.now + timedelta(days=1))
    store = view_store_for(ledger)
    view = Duplicating()
    # One page holds the three events; their rows are written together, and fail together.
    runner = ViewRunner(ledger, store, view, store.new_generation(view), page_size=100, poll_interval=0.05)
    runner.run()
    [stopped] = store.stopped("duplicating")
    assert (stopped.notification_id, stopped.event_type) == (revised_at, "PolicyCatalogue.Revised")
    assert stopped.error_class in {"UniqueViolation", "IntegrityError"}  # PostgreSQL's, SQLite's
    assert store.position(runner.generation) is None


@pytest.mark.parametrize("name", VIEW_NAMES)
def test_a_view_is_read_only_once_it_has_caught_up(ledger: Ledger, name: str) -> None:
    publish_policy(ledger)
    store = view_store_for(ledger)
    view = make_views(ledger)[name]
    generation = store.new_generation(view)
    with pytest.raises(LookupError):
        store.read(view, view.tables[0].name, {})
    runner = ViewRunner(ledger, store, view, generation, poll_interval=0.05)
    thread = threading.Thread(target=runner.run)
    thread.start()
    deadline = time.monotonic() + 10
    while store.active(name) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    runner.stop()
    thread.join(10)
    active = store.active(name)
    assert active is not None and active.generation == generation.generation


def every_event(view: View) -> View:
    """The same view applied in Python and given every event, whatever its ``event_types`` say."""
    whole = copy.copy(view)
    whole.__class__ = type(
        f"Every{type(view).__name__}", (type(view),), {"event_types": None, "in_database": frozenset()}
    )
    return whole


def varied_history(ledger: Ledger, clock: FakeClock) -> None:
    """Upstream traffic (accounts, certificates, CT provisions), stops and erasures, requests, accesses."""
    publish_policy(ledger)
    contract = Contract.load()
    messages = list(Traffic(contract, seed=21).messages(400))
    for offset, message in enumerate(messages):
        content = contract.decode(message.value)
        translate(ledger, content, Position(message.topic, 0, offset), message.topic.split(".", 1)[0])
    # Two messages ingest could not record: one the policy refused (its clause), one undecodable.
    with ledger.batch() as batch:
        letters = [
            DeadLetter(
                SimpleNamespace(topic="acme.events", partition=0, offset=offset, timestamp=timestamp), error
            )
            for offset, timestamp, error in (
                (400, 10**12, PolicyViolation("no such purpose", Clause.PURPOSES)),
                (401, -1, UndecodableMessage("truncated")),
            )
        ]
        batch.add([letter.noted("acme.events:0", "acme") for letter in letters], {})
        batch.commit()
    play(ledger, clock, seed=22, stories=3)
    revise(ledger, "v2", clock.now, clock.now + timedelta(days=1), justification="narrowed")
    subject_ids = [UUID(s) for s in {r["subject_id"] for r in _subjects_in(ledger)}][:3]
    fulfilled, failed, refused = (
        ledger.open_disclosure(s, requested_format="json", cause=cause()).id for s in subject_ids
    )
    for request_id in (fulfilled, failed, refused):
        assert request_id is not None
        ledger.request_identity_verification(request_id, method="documents", cause=cause())
    assert fulfilled is not None and failed is not None and refused is not None
    ledger.record_identity_verified(fulfilled, evidence_ref="doc-1", cause=cause())
    ledger.fulfil_disclosure(fulfilled, cause=cause())
    ledger.record_identity_verification_failed(failed, reason="mismatch", cause=cause())
    ledger.refuse_disclosure(refused, ground="violates-other-law", explanation="x", cause=cause())
    ledger.record_access(subject_ids, endpoint="/subjects", cause=cause())


def _subjects_in(ledger: Ledger) -> list[dict[str, Any]]:
    store = view_store_for(ledger)
    view = make_views(ledger)["subjects"]
    return rows_of(store, view, build(ledger, store, view, page_size=1000).generation)["subjects"]


def test_a_view_given_only_its_kinds_of_event_builds_what_every_event_builds(
    ledger: Ledger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """On PostgreSQL the audit trail is applied by its SQL statement: it must match the Python rules."""
    varied_history(ledger, clock)
    notifications = ledger.recorder.select_notifications(start=1, limit=100_000)
    stored = {n.topic.rsplit(":", 1)[-1] for n in notifications}
    views = make_views(ledger)
    declared = set().union(*(v.event_types or () for v in views.values()))
    assert declared <= stored, f"the history lacks {sorted(declared - stored)}"
    assert stored - declared, "some kinds of event should be left out by every view but the audit trail"
    store = view_store_for(ledger)
    for name, view in views.items():
        with caplog.at_level(logging.WARNING, logger="kiroku.projections"):
            chosen = build(ledger, store, view, page_size=50)
        whole = build(ledger, store, every_event(view), page_size=50)
        assert store.position(chosen.generation) == store.position(whole.generation) == len(notifications)
        expected = rows_of(store, view, whole.generation)
        assert rows_of(store, view, chosen.generation) == expected, name
        assert any(expected.values()), f"{name} is empty; the history should fill it"
        if store.in_database(view):  # pages that split the history's runs of related events
            small = build(ledger, store, view, page_size=3)
            assert rows_of(store, view, small.generation) == expected, name
    assert store.in_database(views["audit_trail"]) == isinstance(store, PostgresViewStore)
    warned = [r.getMessage() for r in caplog.records]
    assert not [w for w in warned if "applied in Python" in w], "the SQL should apply every page"
    assert not [w for w in warned if "one by one" in w], "every page should be written in bulk"


class UnreadableInDatabase(AuditTrail):
    """The audit trail with a statement that fails on every page, as on an event its SQL cannot read."""

    def database_page(self, names: Mapping[str, str], events: str) -> str:  # noqa: ARG002
        return "SELECT 1 / 0 WHERE %(first)s <= %(last)s"


def test_a_page_the_database_cannot_apply_is_applied_in_python(
    pg_ledger: Ledger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    play(pg_ledger, clock, seed=9, stories=1)
    store = view_store_for(pg_ledger)
    assert store.in_database(UnreadableInDatabase())
    with caplog.at_level(logging.WARNING, logger="kiroku.projections"):
        fallen_back = build(pg_ledger, store, UnreadableInDatabase(), page_size=40)
    head = pg_ledger.recorder.max_notification_id()
    assert store.position(fallen_back.generation) == head
    reference = build(pg_ledger, store, every_event(AuditTrail()), page_size=40)
    assert rows_of(store, AuditTrail(), fallen_back.generation) == rows_of(
        store, AuditTrail(), reference.generation
    )
    warned = [r.getMessage() for r in caplog.records if "applied in Python" in r.getMessage()]
    assert len(warned) == -(-(head or 0) // 40), "one warning per page"
    assert all("DivisionByZero" in w for w in warned)


def test_a_rebuild_applies_in_python_the_pages_the_database_cannot(
    pg_ledger: Ledger, clock: FakeClock
) -> None:
    play(pg_ledger, clock, seed=10, stories=1)
    projections = Projections(pg_ledger, page_size=40)
    projections.views["audit_trail"] = UnreadableInDatabase()
    rebuilt = projections.rebuild("audit_trail")
    assert projections.store.position(rebuilt) == pg_ledger.recorder.max_notification_id()
    reference = build(pg_ledger, projections.store, every_event(AuditTrail()), page_size=40)
    assert rows_of(projections.store, AuditTrail(), rebuilt) == rows_of(
        projections.store, AuditTrail(), reference.generation
    )


@pytest.mark.parametrize("kind", ["python", "database"])
def test_a_page_is_applied_only_on_top_of_the_position_it_was_read_from(
    ledger: Ledger, clock: FakeClock, kind: str
) -> None:
    """A page read from a position another writer has moved since is refused whole: no row, no position."""
    publish_policy(ledger)
    play(ledger, clock, seed=12, stories=2)
    store = view_store_for(ledger)
    view: View = ProvisionLedger() if kind == "database" else Certificates()
    if kind == "database" and not store.in_database(view):
        view = every_event(view)  # SQLite: the same view, in Python; the rule is the store's either way
    generation = store.new_generation(view)
    notifications = ledger.recorder.select_notifications(start=1, limit=100_000)
    half = len(notifications) // 2
    first = notified_page(notifications[:half], ledger.mapper)
    second = notified_page(notifications[half:], ledger.mapper)
    middle = first[-1].notification_id

    store.apply_page(view, generation, first, after=None)
    assert store.position(generation) == middle
    applied_once = rows_of(store, view, generation)
    assert any(applied_once.values()), "the first half should fill the view"

    for page, after in ((first, None), (second, None), (second, middle - 1), (first, middle)):
        with pytest.raises(IntegrityError) as refused:
            store.apply_page(view, generation, page, after=after)
        assert generation.stream in str(refused.value)
        assert store.position(generation) == middle
        assert rows_of(store, view, generation) == applied_once, f"nothing of a page read from {after}"

    store.apply_page(view, generation, second, after=middle)
    assert store.position(generation) == notifications[-1].id
    whole = build(ledger, store, view, page_size=1000)
    assert rows_of(store, view, generation) == rows_of(store, view, whole.generation)


def test_a_runner_waits_while_a_rebuild_builds_the_generation_it_would_follow(
    ledger: Ledger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With no active generation a runner follows the one being built, here a rebuild's: it waits for
    the rebuild to finish instead of applying pages beside it, then follows the rebuilt generation."""
    caplog.set_level(logging.INFO, logger="kiroku.projections")
    publish_policy(ledger)
    play(ledger, clock, seed=61, stories=2)
    projections = Projections(ledger, page_size=20)
    name = "certificates"
    assert projections.store.generations(name) == []
    runners: list[ViewRunner] = []
    threads: list[threading.Thread] = []

    def progress(done: int, head: int, rate: float) -> None:
        if runners:
            return
        generation = projections._current(name)  # what Projections.run would follow
        assert generation.state == "building" and projections.store.position(generation) == done
        runner = ViewRunner(ledger, projections.store, projections.view(name), generation, poll_interval=0.05)
        runners.append(runner)
        threads.append(threading.Thread(target=runner.run))
        threads[0].start()
        deadline = time.monotonic() + 10
        while not any("another runner holds its lock" in r.getMessage() for r in caplog.records):
            assert time.monotonic() < deadline, "the runner should wait for the rebuild's lock"
            time.sleep(0.05)
        time.sleep(0.3)
        assert runner.applied == 0 and projections.store.position(generation) == done

    try:
        rebuilt = projections.rebuild_views([name], progress)[name]
        assert runners, "the rebuild took more than one page"
        runner = runners[0]
        assert runner.generation.generation == rebuilt.generation
        play(ledger, clock, seed=62, stories=1)
        head = ledger.recorder.max_notification_id() or 0
        deadline = time.monotonic() + 10
        while projections.store.position(rebuilt) != head and time.monotonic() < deadline:
            time.sleep(0.05)
        assert projections.store.position(rebuilt) == head
    finally:
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join(10)
    assert runner.generation.state == "active"
    assert 0 < runner.applied < head, "the runner applied only what came after the rebuild"
    whole = build(ledger, projections.store, projections.view(name), page_size=1000)
    assert rows_of(projections.store, projections.view(name), rebuilt) == rows_of(
        projections.store, projections.view(name), whole.generation
    )
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not warned


def stops_by_itself(runner: ViewRunner, within: float = 10) -> bool:
    """Runs the runner on a thread: whether it ended by itself within ``within`` seconds (then stopped)."""
    thread = threading.Thread(target=runner.run)
    thread.start()
    thread.join(within)
    ended = not thread.is_alive()
    runner.stop()
    thread.join(10)
    return ended


def test_a_runner_never_activates_a_generation_older_than_the_active_one(
    ledger: Ledger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """A runner left on a generation it was building, once a rebuild's newer one is active, stops
    following it instead of catching it up and pointing readers back at it."""
    caplog.set_level(logging.INFO, logger="kiroku.projections")
    publish_policy(ledger)
    play(ledger, clock, seed=63, stories=1)
    store = view_store_for(ledger)
    view = Certificates()
    older = store.new_generation(view)
    newer = build(ledger, store, view, page_size=1000).generation
    store.activate(view, newer)
    runner = ViewRunner(ledger, store, view, older, poll_interval=0.05)
    assert stops_by_itself(runner), "the runner stops by itself"
    active = store.active(view.name)
    assert active is not None and active.generation == newer.generation
    assert runner.applied == 0 and store.position(older) is None
    said = [r.getMessage() for r in caplog.records]
    behind = f"generation {older.generation} is behind the active generation {newer.generation}"
    assert f"view certificates {behind}; this runner stops following it" in said


def test_a_runner_on_a_generation_since_dropped_stops_and_says_it_was_dropped(
    ledger: Ledger, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kiroku.projections")
    publish_policy(ledger)
    play(ledger, clock, seed=64, stories=1)
    store = view_store_for(ledger)
    view = Certificates()
    active = build(ledger, store, view, page_size=1000).generation
    store.activate(view, active)
    gone = store.new_generation(view)
    store.drop_generation(view, gone)
    runner = ViewRunner(ledger, store, view, gone, poll_interval=0.05)
    assert stops_by_itself(runner), "the runner stops by itself"
    assert runner.applied == 0
    assert [g.generation for g in store.generations(view.name)] == [active.generation]
    said = [r.getMessage() for r in caplog.records]
    expected = f"generation {gone.generation} is dropped (kiroku projections prune)"
    assert f"view certificates {expected}; this runner stops following it" in said
