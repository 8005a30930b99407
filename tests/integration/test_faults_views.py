"""Views when PostgreSQL fails: connections terminated, the server away for a while, a runner's lock lost."""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import psycopg
import pytest

from consumers.contract import Contract
from consumers.synthetic import Traffic
from consumers.translate import Position, prefetch
from consumers.translate import apply as translate
from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from projections.runner import ViewRunner, advisory_lock_number, view_store_for
from projections.service import Projections
from projections.store import Generation, PostgresViewStore
from projections.view import Notified, View
from projections.views.certificates import Certificates
from projections.views.provisions import ProvisionLedger
from tests.helpers import FakeClock, publish_policy
from tests.integration.kafka_support import wait_for
from tests.integration.proxy import Proxy
from tests.integration.test_projections import build, play, rows_of


@pytest.fixture
def two_ways(
    proxied_environ: tuple[dict[str, str], dict[str, str], Proxy], clock: FakeClock
) -> Iterator[tuple[Ledger, Ledger, Proxy]]:
    """One store, two ledgers with the same keys: one through a proxy the test can cut, one direct."""
    environ, through_proxy, proxy = proxied_environ
    direct = build_ledger(Settings.from_env(environ), clock=clock)
    publish_policy(direct)
    proxied = build_ledger(Settings.from_env(through_proxy), clock=clock)
    yield proxied, direct, proxy
    proxied.close()
    direct.close()


def settled(direct: Ledger, names: Sequence[str]) -> Callable[[], bool]:
    """Whether every view is active and at the store's head (read directly: the views' own ledger
    may be cut off)."""
    store = view_store_for(direct)

    def check() -> bool:
        head = direct.recorder.max_notification_id()
        return all(
            (active := store.active(name)) is not None and store.position(active) == head for name in names
        )

    return check


def equal_to_a_rebuild(projections: Projections, direct: Ledger) -> None:
    """Each view's active generation holds exactly the rows a rebuild from the events gives."""
    check = Projections(direct)
    for name, view in check.views.items():
        active = check.store.active(name)
        assert active is not None, name
        rebuilt = check.rebuild(name)
        assert rows_of(check.store, view, active) == rows_of(check.store, view, rebuilt), name


@pytest.mark.slow
def test_views_wait_through_terminated_connections_and_an_outage_then_equal_a_rebuild(
    two_ways: tuple[Ledger, Ledger, Proxy],
    postgres_url: str,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    proxied, direct, proxy = two_ways
    caplog.set_level(logging.INFO, logger="kiroku.projections")
    play(direct, clock, seed=41, stories=2)
    projections = Projections(proxied, page_size=50, poll_interval=0.2, max_backoff_s=1.0)
    running = threading.Thread(target=projections.run, name="views")
    running.start()
    try:
        caught_up = settled(direct, list(projections.views))
        wait_for(caught_up, 60, what="the first catch-up")

        # Every connection the views hold (the pool's, each view's lock and LISTEN) terminated.
        with psycopg.connect(postgres_url, autocommit=True) as admin:
            ports = proxy.upstream_ports()
            row = admin.execute(
                "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_stat_activity "
                "WHERE client_port = ANY(%s) AND pid <> pg_backend_pid()",
                (ports,),
            ).fetchone()
        assert row is not None and row[0] >= len(projections.views), "each view's connections were terminated"
        play(direct, clock, seed=42, stories=2)
        wait_for(caught_up, 60, what="the second catch-up")

        # The server unreachable for a while: nothing applied meanwhile, then caught up.
        proxy.cut()
        before = direct.recorder.max_notification_id() or 0
        play(direct, clock, seed=43, stories=2)
        time.sleep(3)
        assert not caught_up(), "nothing is applied while the database is away"
        proxy.restore()
        assert (direct.recorder.max_notification_id() or 0) > before
        wait_for(caught_up, 60, what="the last catch-up")
        assert running.is_alive(), "the views are still being followed"
    finally:
        projections.stop()
        running.join(30)
    assert not running.is_alive()
    messages = [r.getMessage() for r in caplog.records]
    for name in projections.views:
        assert any(f"waiting for the database to run view {name}" in m for m in messages), name
        assert any(f"view {name}: the database answers again" in m for m in messages), name
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    equal_to_a_rebuild(projections, direct)


class HeldViewStore(PostgresViewStore):
    """The view store, but ``apply_page`` waits on the first page ``holds(page)`` picks, until released."""

    holds: Callable[[Sequence[Notified]], bool]
    holding: threading.Event
    release: threading.Event
    held_after: int | None

    def apply_page(
        self,
        view: View,
        generation: Generation,
        page: Sequence[Notified],
        *,
        after: int | None,
        through: int | None = None,
    ) -> None:
        if not self.holding.is_set() and self.holds(page):
            self.held_after = after
            self.holding.set()
            assert self.release.wait(60), "the test never let the page go on"
        super().apply_page(view, generation, page, after=after, through=through)


def held(store: Any, holds: Callable[[Sequence[Notified]], bool]) -> HeldViewStore:
    copied = copy.copy(store)
    copied.__class__ = HeldViewStore
    assert isinstance(copied, HeldViewStore)
    copied.holds, copied.holding, copied.release = holds, threading.Event(), threading.Event()
    return copied


def upstream_batch(ledger: Ledger, messages: Sequence[Any], first_offset: int) -> None:
    """Upstream messages recorded in one batch (one commit), as ingest records them."""
    contract = Contract.load()
    decoded = [contract.decode(message.value) for message in messages]
    with ledger.batch() as pending:
        prefetch(ledger, decoded)
        for offset, (message, content) in enumerate(zip(messages, decoded, strict=True), first_offset):
            translate(ledger, content, Position(message.topic, 0, offset), message.topic.split(".", 1)[0])
        pending.commit()


@pytest.mark.parametrize("view", [ProvisionLedger(), Certificates()], ids=["in-database", "python"])
def test_a_runner_that_lost_its_lock_mid_page_applies_nothing_of_it(
    pg_ledger: Ledger, postgres_url: str, view: View, caplog: pytest.LogCaptureFixture
) -> None:
    """Its lock's connection ends while it holds a page of 50 events; another runner takes the lock
    and applies the first 10 of them, then holds its next page. The first page, let go, is refused
    whole (the library's tracking would have let it through, past the second runner's position,
    applying those 10 events twice), and its runner waits for the lock again; the second goes on."""
    caplog.set_level(logging.INFO, logger="kiroku.projections")
    ledger = pg_ledger
    store = view_store_for(ledger, [view])
    assert isinstance(store, PostgresViewStore)
    assert store.in_database(view) == isinstance(view, ProvisionLedger)
    generation = store.new_generation(view)
    messages = list(Traffic(Contract.load(), seed=53).messages(120))
    upstream_batch(ledger, messages[:40], 0)
    armed = threading.Event()
    first_store = held(store, lambda page: armed.is_set() and len(page) == 50)
    second_pages: list[int] = []

    def second_holds(page: Sequence[Notified]) -> bool:
        second_pages.append(len(page))
        return len(second_pages) == 2

    second_store = held(store, second_holds)
    runners = [
        ViewRunner(
            ledger, runner_store, view, generation, page_size=size, poll_interval=0.1, max_backoff_s=0.5
        )
        for runner_store, size in ((first_store, 50), (second_store, 10))
    ]
    first, second = runners
    threads = [threading.Thread(target=runner.run) for runner in runners]
    threads[0].start()
    try:
        wait_for(
            lambda: store.position(generation) == ledger.recorder.max_notification_id(),
            60,
            what="the first runner",
        )
        applied_by_first = first.applied
        armed.set()
        upstream_batch(ledger, messages[40:], 40)
        assert first_store.holding.wait(30), "the first runner holds a page of the new events"
        assert first_store.held_after == store.position(generation)

        with psycopg.connect(postgres_url, autocommit=True) as admin:
            row = admin.execute(
                # A bigint key shows as its high 32 bits (classid) and its low 32 bits (objid).
                "SELECT count(pg_terminate_backend(pid)) AS n FROM pg_locks "
                "WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
                "AND classid = ((%(key)s::bigint >> 32) & 4294967295)::oid "
                "AND objid = (%(key)s::bigint & 4294967295)::oid",
                {"key": advisory_lock_number(store, view.name, generation.generation)},
            ).fetchone()
        assert row is not None and row[0] == 1, "the first runner's lock was ended with its connection"
        threads[1].start()
        assert second_store.holding.wait(30), "the second runner, with the lock, holds its second page"
        assert store.position(generation) == (first_store.held_after or 0) + 10
        first_store.release.set()

        def refused() -> list[logging.LogRecord]:
            return [r for r in caplog.records if "another runner moved the view's position" in r.getMessage()]

        wait_for(lambda: bool(refused()), 60, what="the first runner's page refused")
        second_store.release.set()
        head = ledger.recorder.max_notification_id()
        wait_for(lambda: store.position(generation) == head, 60, what="the second runner's catch-up")
    finally:
        first_store.release.set()
        second_store.release.set()
        for runner in runners:
            runner.stop()
        for thread in threads:
            thread.join(30)
    assert len(refused()) == 1 and refused()[0].levelno == logging.WARNING
    assert f"a page read from position {first_store.held_after};" in refused()[0].getMessage()
    assert first.applied == applied_by_first, "the first runner applied nothing of the page it held"
    assert second.applied == (head or 0) - (first_store.held_after or 0)
    whole = build(ledger, store, view, page_size=1000)
    assert rows_of(store, view, generation) == rows_of(store, view, whole.generation)
    assert any(rows_of(store, view, generation).values())
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
