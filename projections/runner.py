"""Running a view: catch up from the tracking position, then follow new events.

One runner per view generation may work at a time: it holds a lock
(a PostgreSQL advisory lock, or a lock file beside the SQLite database), and a
second runner waits for it. A runner follows PostgreSQL's notifications and
also polls, so a lost notification never stalls it. A page of events is
applied in one transaction with the tracking record. An event the view
cannot apply stops that view (and only that view) with an error naming the
event; :meth:`ViewStore.clear_stopped` lets it run again.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import psycopg
from eventsourcing.persistence import IntegrityError

from domain.application import Ledger
from kiroku.persistence.advisory import advisory_key
from kiroku.persistence.ddl_lock import ddl_lock
from kiroku.persistence.outage import UNREACHABLE, Backoff
from kiroku.persistence.recorders import KirokuPostgresRecorder, KirokuSQLiteRecorder
from projections.store import Generation, PostgresViewStore, SQLiteViewStore, ViewStopped, ViewStore
from projections.view import View, notified_page

log = logging.getLogger("kiroku.projections")


def view_store_for(ledger: Ledger, views: Iterable[View] = ()) -> ViewStore:
    """The view store in the ledger's own database; live generations of ``views`` get any index they lack."""
    recorder = ledger.recorder
    if isinstance(recorder, KirokuPostgresRecorder):
        pg = PostgresViewStore(recorder.datastore)
        if ledger.mapper.cipher is None and ledger.mapper.compressor is None:
            pg.events_table = pg.qualified(recorder.events_table_name)  # views may read the events' JSON
        kwargs = recorder.datastore.pool.kwargs
        assert isinstance(kwargs, dict)
        # Creating the tables: one process at a time (the API's workers start together).
        with (
            psycopg.connect(**kwargs, autocommit=True) as conn,
            ddl_lock(conn, recorder.datastore.schema or "public"),
        ):
            pg.create_table()
            pg.prepare()
            pg.add_missing_indexes(views)
        return pg
    if isinstance(recorder, KirokuSQLiteRecorder):
        lite = SQLiteViewStore(recorder.datastore)
        lite.create_table()
        lite.prepare()
        lite.add_missing_indexes(views)
        return lite
    raise TypeError(f"no view store for {type(recorder).__name__}")


def advisory_lock_number(store: PostgresViewStore, view_name: str, generation: int) -> int:
    """The PostgreSQL advisory lock of a view generation (in the store's schema)."""
    return advisory_key(store.datastore.schema, "kiroku-view", view_name, str(generation))


def lock_path(store: SQLiteViewStore, view_name: str, generation: int) -> Path:
    """The file whose lock is a view generation's lock, beside the SQLite database."""
    return Path(f"{store.datastore.pool.db_name}.{view_name}.g{generation}.lock")


def _try_advisory_lock(conn: psycopg.Connection[Any], number: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s) AS locked", (number,)).fetchone()
    return bool(row is not None and row["locked"])


def _try_file_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class RebuildUnderWay(Exception):
    """Raised when a generation a rebuild is about to make is locked: another rebuild is making it."""


@contextlib.contextmanager
def generations_locked(store: ViewStore, generations: Mapping[str, Generation]) -> Iterator[None]:
    """Holds the locks of these generations, about to be made, while a rebuild builds them.

    A runner whose view has no active generation follows the one being built,
    which may be a rebuild's: it waits for the lock until the rebuild is over,
    instead of applying pages beside it. The generations are not made yet, so
    no runner can hold one; another rebuild that planned the same number can,
    and then this says so (``RebuildUnderWay``) rather than wait.
    """
    with locks_of(store, generations.values()) as held:
        for generation in generations.values():
            if generation not in held:
                raise RebuildUnderWay(
                    f"view {generation.name} generation {generation.generation} is locked: "
                    "another rebuild of the view is starting; nothing was rebuilt"
                )
        yield


@contextlib.contextmanager
def locks_of(store: ViewStore, generations: Iterable[Generation]) -> Iterator[list[Generation]]:
    """Tries each generation's lock once, without waiting; yields those it holds, until the block ends."""
    held: list[Generation] = []
    with contextlib.ExitStack() as stack:
        if isinstance(store, PostgresViewStore):
            kwargs = store.datastore.pool.kwargs
            assert isinstance(kwargs, dict)
            conn = stack.enter_context(psycopg.connect(**kwargs, autocommit=True))
            held.extend(
                g
                for g in generations
                if _try_advisory_lock(conn, advisory_lock_number(store, g.name, g.generation))
            )
        else:
            assert isinstance(store, SQLiteViewStore)
            for generation in generations:
                fd = os.open(
                    lock_path(store, generation.name, generation.generation), os.O_RDWR | os.O_CREAT, 0o600
                )
                stack.callback(os.close, fd)
                if _try_file_lock(fd):
                    held.append(generation)
        yield held  # the session's end (or the files' closing) lets the locks go


def forget_lock(store: ViewStore, generation: Generation) -> None:
    """After a generation is dropped: its lock file goes too (an advisory lock leaves nothing)."""
    if isinstance(store, SQLiteViewStore):
        lock_path(store, generation.name, generation.generation).unlink(missing_ok=True)


@dataclass(frozen=True)
class _Lock:
    """A view generation's lock, held; ``confirm()`` raises if it has been lost."""

    confirm: Callable[[], None]


class ViewRunner:
    """Builds and follows one generation of one view."""

    def __init__(
        self,
        ledger: Ledger,
        store: ViewStore,
        view: View,
        generation: Generation,
        *,
        page_size: int = 1000,
        poll_interval: float = 1.0,
        max_backoff_s: float = 10.0,
    ) -> None:
        self.ledger, self.store, self.view, self.generation = ledger, store, view, generation
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.max_backoff_s = max_backoff_s
        #: The position the last page was read from (named if the store refuses the page).
        self.page_read_from: int | None = None
        self.stop_event = threading.Event()
        self.applied = 0

    def stop(self) -> None:
        self.stop_event.set()

    def lag(self) -> int:
        head = self.ledger.recorder.max_notification_id() or 0
        return head - (self.store.position(self.generation) or 0)

    def run_once(self) -> int:
        """Applies the next page of events; returns how many there were.

        The page is applied only on top of the position it was read from
        (``ViewStore.apply_page``): if another runner moved it meanwhile, the
        store refuses the page (``IntegrityError``) and nothing of it is written.
        """
        after = self.page_read_from = self.store.position(self.generation)
        notifications = self.ledger.recorder.select_notifications(
            start=(after or 0) + 1, limit=self.page_size
        )
        page = notified_page(notifications, self.ledger.mapper)
        self.store.apply_page(self.view, self.generation, page, after=after)
        self.applied += len(page)
        return len(page)

    def catch_up(self) -> int:
        """Applies pages until none is left; returns how many events were applied."""
        total = 0
        while not self.stop_event.is_set():
            applied = self.run_once()
            total += applied
            if applied < self.page_size:
                break
        return total

    def run(self) -> None:
        """Works until stopped: waits for the lock, catches up, follows new events.

        While the database is unreachable (a connection terminated, the server
        down) it says so in its log, waits (backing off up to ``max_backoff_s``)
        and starts again: the lock taken anew, the view caught up from its
        position. Losing the lock's connection ends the lock too, so another
        runner may have taken it; the store refuses this runner's pages from
        then on (the position moved), and it goes back to waiting for the lock.
        """
        backoff = Backoff(self.max_backoff_s, self.stop_event, log)
        while not self.stop_event.is_set():
            try:
                if self.store.stopped(self.view.name):
                    log.error("view %s is stopped; retry it before running", self.view.name)
                    return
                if self._work(backoff):
                    return
            except UNREACHABLE as exc:
                backoff.wait(f"the database to run view {self.view.name}", exc)
            except IntegrityError:
                log.warning(
                    "view %s: another runner moved the view's position while this one applied a page "
                    "read from position %s; the page was not applied, and this runner waits for the "
                    "view's lock again",
                    self.view.name,
                    self.page_read_from,
                )
                self.stop_event.wait(min(self.poll_interval, 1.0))

    def _work(self, backoff: Backoff) -> bool:
        """Holds the lock and follows the events; True when done (stopped, the view stopped, or the
        generation no longer the one to follow)."""
        with self._lock() as lock, self._notifications() as wait_for_news:
            if lock is None:
                return True
            # What it is now: a rebuild that held the lock may have activated it, or a newer one.
            if not self._still_current():
                return True
            while not self.stop_event.is_set():
                lock.confirm()
                try:
                    applied = self.catch_up()
                except ViewStopped as stopped:
                    self.store.mark_stopped(stopped)
                    log.error("%s", stopped)
                    return True
                if backoff.waited:
                    log.info("view %s: the database answers again; the view is caught up", self.view.name)
                    backoff.reset()
                if self.generation.state == "building" and applied < self.page_size:
                    if not self._still_current():
                        return True
                    self.store.activate(self.view, self.generation)
                    self.generation = Generation(
                        self.generation.name,
                        self.generation.generation,
                        self.generation.schema_version,
                        "active",
                    )
                    log.info("view %s generation %s is active", self.view.name, self.generation.generation)
                wait_for_news(self.poll_interval)
        return True

    def _still_current(self) -> bool:
        """Reads the generation's state anew; False if it is retired or dropped, or a newer one is active.

        Readers never go back to an older generation: a runner building one
        that a rebuild has overtaken stops following it rather than activate it.
        """
        generations = self.store.generations(self.view.name)
        number = self.generation.generation
        ours = next((g for g in generations if g.generation == number), None)
        newer = [g.generation for g in generations if g.state == "active" and g.generation > number]
        if ours is None or ours.state == "retired" or newer:
            if newer:
                why = f"behind the active generation {newer[0]}"
            else:
                why = "dropped (kiroku projections prune)" if ours is None else "retired"
            log.info(
                "view %s generation %s is %s; this runner stops following it", self.view.name, number, why
            )
            return False
        self.generation = ours
        return True

    # The lock ---------------------------------------------------------------

    @contextlib.contextmanager
    def _lock(self) -> Iterator[_Lock | None]:
        """Holds the view generation's lock; yields None if stopped before it was ours."""
        if isinstance(self.store, PostgresViewStore):
            with self._advisory_lock(self.store) as held:
                yield held
        else:
            assert isinstance(self.store, SQLiteViewStore)
            with self._file_lock(lock_path(self.store, self.view.name, self.generation.generation)) as held:
                yield held

    def _acquire(self, try_lock: Callable[[], bool]) -> bool:
        """Tries the lock until it is ours or the runner is stopped; says whether it is ours."""
        said = False
        while not self.stop_event.is_set():
            if try_lock():
                return True
            if not said:
                log.info("view %s: another runner holds its lock; waiting", self.view.name)
                said = True
            self.stop_event.wait(0.5)
        return False

    @contextlib.contextmanager
    def _advisory_lock(self, store: PostgresViewStore) -> Iterator[_Lock | None]:
        # A connection of its own, not one of the pool's, held while the runner works:
        # a session's advisory lock lasts as long as the session, and no longer.
        number = advisory_lock_number(store, self.view.name, self.generation.generation)
        kwargs = store.datastore.pool.kwargs
        assert isinstance(kwargs, dict)
        with psycopg.connect(**kwargs, autocommit=True) as conn:

            def confirm() -> None:
                conn.execute("SELECT 1")  # raises if the session, and so the lock, has ended

            if not self._acquire(partial(_try_advisory_lock, conn, number)):
                yield None
                return
            try:
                yield _Lock(confirm)
            finally:
                # A lost session has ended the lock already (closing the connection ends it too).
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (number,))

    @contextlib.contextmanager
    def _file_lock(self, path: Path) -> Iterator[_Lock | None]:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if not self._acquire(partial(_try_file_lock, fd)):
                yield None
                return
            try:
                yield _Lock(lambda: None)  # held while the file is open: nothing to confirm
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # News of new events ----------------------------------------------------

    @contextlib.contextmanager
    def _notifications(self) -> Iterator[Any]:
        """A function that waits up to a timeout for news of new events (and polls regardless)."""
        recorder = self.ledger.recorder
        if not isinstance(recorder, KirokuPostgresRecorder):
            yield self.stop_event.wait
            return
        datastore = recorder.datastore
        kwargs = datastore.pool.kwargs
        assert isinstance(kwargs, dict)
        conn = psycopg.connect(**kwargs, autocommit=True)
        try:
            conn.execute(f'LISTEN "{recorder.channel_name}"')

            def wait(timeout: float) -> None:
                deadline = time.monotonic() + timeout
                for _ in conn.notifies(timeout=timeout, stop_after=1):
                    break
                # Lost or not, the next loop polls: a missing NOTIFY never stalls us.
                if time.monotonic() < deadline and self.stop_event.is_set():
                    return

            yield wait
        finally:
            conn.close()
