"""Running every view, rebuilding one, and reading them.

:class:`Projections` is what the CLI (and later the main job) uses: it keeps a
runner per view on its active generation, starts generation 1 of a view that
has none, follows a rebuild made elsewhere, and answers queries against the
active generations only.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any
from uuid import UUID

from eventsourcing.persistence import Notification

from domain.application import Ledger
from domain.personal import Sealed
from kiroku.persistence.outage import UNREACHABLE, Backoff
from kiroku.persistence.recorders import KirokuPostgresRecorder, KirokuSQLiteRecorder
from projections.runner import ViewRunner, forget_lock, generations_locked, locks_of, view_store_for
from projections.sql import Rows, utc_text
from projections.store import Generation, Read, SQLiteViewStore, ViewStopped, ViewStore
from projections.view import Notified, View, notified_page
from projections.views import make_views
from projections.views.subjects import ISSUANCE_HOLD_REASON, subject_ids_by

log = logging.getLogger("kiroku.projections")


@dataclass(frozen=True)
class ViewStatus:
    name: str
    generation: int | None
    state: str
    position: int
    lag: int
    stopped_at_notification: int | None
    stopped_event_type: str | None


@dataclass(frozen=True)
class Pruned:
    """A generation ``Projections.prune`` looked at: dropped (or would be, on a dry run), or kept, and why."""

    name: str
    generation: int
    state: str
    dropped: bool
    reason: str


#: How often a running ``kiroku projections run`` or ``kiroku run`` prunes its views' generations.
PRUNE_EVERY_S = 600.0
#: How long a retired generation is kept before a prune drops it (readers use one for a second).
RETIRED_FOR_S = 300.0


class Projections:
    """The views of one ledger: run, rebuild, status, queries."""

    def __init__(
        self,
        ledger: Ledger,
        *,
        page_size: int = 1000,
        poll_interval: float = 1.0,
        max_backoff_s: float = 10.0,
    ) -> None:
        self.ledger = ledger
        self.views: dict[str, View] = make_views(ledger)
        self.store: ViewStore = view_store_for(ledger, self.views.values())
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.max_backoff_s = max_backoff_s
        self.stop_event = threading.Event()

    def view(self, name: str) -> View:
        try:
            return self.views[name]
        except KeyError:
            raise KeyError(f"no view {name!r}; the views are {', '.join(self.views)}") from None

    def _current(self, name: str) -> Generation:
        """The generation to keep up to date: the active one, else one being built, else a new one."""
        generations = self.store.generations(name)
        for state in ("active", "building"):
            for generation in reversed(generations):
                if generation.state == state:
                    return generation
        return self.store.new_generation(self.view(name))

    # Running ----------------------------------------------------------------

    def run(
        self, names: list[str] | None = None, *, prune_every: float = 0.0, retired_for: float = RETIRED_FOR_S
    ) -> None:
        """Runs a runner per view on a thread each until :meth:`stop`; follows rebuilds.

        With ``prune_every`` (seconds), also prunes these views' generations
        that often (:meth:`prune`, with ``retired_for``), so that the tables of
        the generations rebuilds retire or leave unfinished do not pile up.
        """
        threads = [
            threading.Thread(target=self._run_view, args=(name,), name=f"view-{name}", daemon=True)
            for name in (names or list(self.views))
        ]
        if prune_every > 0:
            threads.append(
                threading.Thread(
                    target=self._prune_every,
                    args=(names, prune_every, retired_for),
                    name="prune",
                    daemon=True,
                )
            )
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    def _run_view(self, name: str) -> None:
        backoff = Backoff(self.max_backoff_s, self.stop_event, log)
        while not self.stop_event.is_set():
            try:
                generation = self._current(name)
            except UNREACHABLE as exc:
                backoff.wait(f"the database to find the generation of view {name}", exc)
                continue
            backoff.reset()
            runner = ViewRunner(
                self.ledger,
                self.store,
                self.view(name),
                generation,
                page_size=self.page_size,
                poll_interval=self.poll_interval,
                max_backoff_s=self.max_backoff_s,
            )
            watcher = threading.Thread(target=self._watch, args=(runner,), daemon=True)
            watcher.start()
            runner.run()
            runner.stop()
            watcher.join()
            with contextlib.suppress(*UNREACHABLE):  # unknown: the next runner looks again
                if self.store.stopped(name):
                    return  # stopped on an event it cannot apply; `kiroku projections retry` lets it go on

    def _prune_every(self, names: list[str] | None, every: float, retired_for: float) -> None:
        """Prunes every ``every`` seconds until :meth:`stop`, saying what it dropped; a failure waits."""
        while not self.stop_event.wait(every):
            try:
                looked_at = self.prune(names, retired_for=retired_for)
            except Exception as exc:  # noqa: BLE001 - the runners go on; the next round tries again
                log.warning(
                    "pruning the views' generations failed (%s); tried again in %g s",
                    type(exc).__name__,
                    every,
                )
                continue
            for p in looked_at:
                if p.dropped:
                    log.info(
                        "view %s: generation %s (%s) dropped: %s", p.name, p.generation, p.state, p.reason
                    )

    def _watch(self, runner: ViewRunner) -> None:
        """Stops a runner when asked to stop, or when its generation was replaced by a rebuild."""
        while not runner.stop_event.is_set():
            if self.stop_event.wait(min(self.poll_interval, 1.0)):
                runner.stop()
                return
            try:
                active = self.store.active(runner.view.name)
            except UNREACHABLE:
                continue  # the runner waits for the database too, and says so
            if active is not None and active.generation > runner.generation.generation:
                log.info(
                    "view %s: generation %s replaced by %s",
                    runner.view.name,
                    runner.generation.generation,
                    active.generation,
                )
                runner.stop()
                return

    def stop(self) -> None:
        self.stop_event.set()

    def catch_up(self, names: list[str] | None = None) -> None:
        """Brings each view's current generation up to date once, in this thread (tests, one-shot jobs)."""
        for name in names or list(self.views):
            generation = self._current(name)
            runner = ViewRunner(
                self.ledger, self.store, self.view(name), generation, page_size=self.page_size
            )
            runner.catch_up()
            if generation.state == "building":
                self.store.activate(self.view(name), generation)

    def rebuild(self, name: str, progress: Callable[[int, int, float], None] | None = None) -> Generation:
        """Builds a new generation from the first event beside the old one, then switches readers to it."""
        return self.rebuild_views([name], progress)[name]

    def rebuild_views(
        self, names: list[str] | None = None, progress: Callable[[int, int, float], None] | None = None
    ) -> dict[str, Generation]:
        """Rebuilds these views (all by default) in one pass over the events.

        Each page of events is read once (the kinds the views read) and
        applied to every new generation, each view in a transaction of its
        own; a view applied in the database walks the same ids on its own. A
        view that cannot apply an event is left unfinished (its old generation
        stays active) and the others go on; the first such stop is raised at
        the end.
        """
        with self.rebuilding(names or list(self.views)) as building:
            stops = self.build(building, progress)
            for name, generation in building.items():
                self.store.activate(self.view(name), generation)
        if stops:
            raise stops[0]
        return building

    @contextlib.contextmanager
    def rebuilding(self, names: Sequence[str]) -> Iterator[dict[str, Generation]]:
        """New generations of these views, their locks held while the block builds and activates them.

        Each generation's lock is taken before the generation is made, so no
        runner can find it unlocked (a runner of a view with no active
        generation follows the newest one being built). Those the block leaves
        unfinished (a view stopped, the build failed or was interrupted) are
        dropped as it ends, before their locks go: a rebuild leaves nothing
        half-built behind. Should the database be unreachable then, they stay,
        and ``kiroku projections prune`` drops them.
        """
        store = self.store
        planned = {
            name: Generation(name, store.next_generation_number(name), self.view(name).schema, "building")
            for name in names
        }
        with generations_locked(store, planned):
            made: dict[str, Generation] = {}
            try:
                for name, generation in planned.items():
                    made[name] = self.new_generation(name, number=generation.generation)
                yield dict(made)
            finally:
                self._drop_unfinished(made)

    def _drop_unfinished(self, made: dict[str, Generation]) -> None:
        for name, generation in made.items():
            try:
                if not self.store.drop_generation(self.view(name), generation):
                    continue  # activated, or gone already
            except Exception as exc:  # noqa: BLE001 - the build's own outcome is what the caller sees
                log.warning(
                    "view %s: could not drop generation %s, which this rebuild left unfinished (%s); "
                    "`kiroku projections prune` drops it",
                    name,
                    generation.generation,
                    type(exc).__name__,
                )
            else:
                log.info("view %s: generation %s, left unfinished, is dropped", name, generation.generation)

    def prune(
        self,
        names: list[str] | None = None,
        *,
        retired_for: float = RETIRED_FOR_S,
        dry_run: bool = False,
    ) -> list[Pruned]:
        """Drops the generations no one will read or build again, and says what it did with each.

        Dropped: a generation retired at least ``retired_for`` seconds ago
        (readers go on using the generation they looked up for a second after
        a switch; one retired before kiroku noted the time counts as long
        retired), and a generation being built of a view that has an active
        one: a rebuild that failed or was killed left it, or a runner's first
        build that a rebuild overtook (a runner follows a building generation
        only while its view has no active one, and a rebuild holds its
        generations' locks until it activates them, taking each before it
        makes the generation). Each is dropped holding its lock; one whose lock
        is held is kept. Never dropped: the active generation, and every
        generation of a view that has no active one yet.
        """
        horizon = utc_text(datetime.now(UTC) - timedelta(seconds=retired_for))
        assert horizon is not None
        result: list[Pruned] = []
        candidates: list[Generation] = []
        for name in names or list(self.views):
            generations = self.store.generations(name)
            active = any(g.state == "active" for g in generations)
            for generation in generations:
                if generation.state == "active":
                    continue
                if generation.state == "building" and not active:
                    result.append(_kept(generation, "its view has no active generation; runners build it"))
                elif generation.state == "retired" and (generation.retired_at or "") > horizon:
                    result.append(
                        _kept(generation, f"retired at {generation.retired_at}, under {retired_for:g} s ago")
                    )
                else:
                    candidates.append(generation)
        with locks_of(self.store, candidates) as held:
            for generation in candidates:
                if generation not in held:
                    result.append(_kept(generation, "its lock is held (a rebuild or a runner is on it)"))
                    continue
                if not dry_run:
                    if not self.store.drop_generation(self.view(generation.name), generation):
                        result.append(_kept(generation, "it changed since it was looked at"))
                        continue
                    forget_lock(self.store, generation)
                reason = "retired" if generation.state == "retired" else "left unfinished"
                result.append(Pruned(generation.name, generation.generation, generation.state, True, reason))
        return sorted(result, key=lambda p: (p.name, p.generation))

    def build(
        self, building: dict[str, Generation], progress: Callable[[int, int, float], None] | None = None
    ) -> list[ViewStopped]:
        """Builds these new generations from the first event, in one pass; activates none of them.

        Each view's indexes that it does not read while it is built are made as
        soon as its events are applied. A view that stops is taken out of
        ``building`` and gets none; the stops are returned.
        """
        stops: list[ViewStopped] = []
        in_database = {n: g for n, g in building.items() if self.store.in_database(self.view(n))}
        in_python = {n: g for n, g in building.items() if n not in in_database}
        # SQLite takes one writer at a time: there the views' pages take turns.
        parallel = 1 if isinstance(self.store, SQLiteViewStore) else max(len(building), 1)
        with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="rebuild") as workers:
            # A view applied in the database needs no event read here: its own worker
            # walks the notification ids and then makes the view's indexes, while the
            # others' pages are read and applied.
            ranges = {
                name: workers.submit(self._build_in_database, name, g) for name, g in in_database.items()
            }
            self._rebuild_pages(in_python, stops, workers, progress)
            # The views applied here that did not stop (_rebuild_pages took those out):
            # their indexes side by side, and beside a walk that may still be going on.
            indexing = {
                name: workers.submit(self.store.add_indexes, self.view(name), g)
                for name, g in in_python.items()
            }
            _gather(ranges, stops)
            _gather(indexing, stops)
        for stop in stops:
            building.pop(stop.view, None)
        return stops

    def new_generation(self, name: str, number: int | None = None) -> Generation:
        """A generation to rebuild the view in; indexes the view does not read come at the end."""
        view = self.view(name)
        return self.store.new_generation(view, only=view.indexes_applying_reads, number=number)

    def _build_in_database(self, name: str, generation: Generation) -> None:
        """A view applied in the database: every event so far, a page of ids at a time, then its indexes.

        Should the view's statement fail on a page, the page's events of the kinds
        the view reads are read for its Python ``apply``. The indexes it does not
        read while it is built are made last.
        """
        view = self.view(name)
        for first, last in self._id_pages():

            def page(first: int = first, last: int = last) -> list[Notified]:
                stored = self._notifications_between(first, last, view.event_types)
                return notified_page(stored, self.ledger.mapper)

            self.store.apply_range(view, generation, first, last, page, after=_after(first))
        self.store.add_indexes(view, generation)

    def _id_pages(self) -> Iterator[tuple[int, int]]:
        """Notification ids ``page_size`` at a time, from 1 to the last one there is when the walk gets there.

        Ids are given out under the event store's table lock, so once an id can
        be seen, every lower one is written (or never will be).
        """
        first, head = 1, 0
        while True:
            if first > head:
                head = self.ledger.recorder.max_notification_id() or 0
                if first > head:
                    return
            last = min(first + self.page_size - 1, head)
            yield first, last
            first = last + 1

    def _notifications_between(
        self, first: int, last: int, kinds: frozenset[str] | None
    ) -> list[Notification]:
        recorder = self.ledger.recorder
        assert isinstance(recorder, KirokuPostgresRecorder | KirokuSQLiteRecorder)
        return recorder.notifications_between(first, last, kinds)

    def _rebuild_pages(
        self,
        building: dict[str, Generation],
        stops: list[ViewStopped],
        workers: ThreadPoolExecutor,
        progress: Callable[[int, int, float], None] | None,
    ) -> None:
        """Reads the events these views read, a page of ids at a time, and applies each page to them all.

        The next page is read and decoded while the views apply this one: a
        view's page spends much of its time in the database (writing its rows),
        when this process would otherwise have nothing to do. An event that
        cannot be decoded is left for the view that reads it, which stops there
        and names it.
        """
        kinds: set[str] | None = set()
        for name in building:
            wanted = self.view(name).event_types
            kinds = None if kinds is None or wanted is None else kinds | wanted
        only = None if kinds is None else frozenset(kinds)
        mapper = self.ledger.mapper

        def read(first: int, last: int) -> tuple[int, int, list[Notified]]:
            page = notified_page(self._notifications_between(first, last, only), mapper)
            for notified in page:
                try:
                    notified.event  # noqa: B018 - decoded here, while the views write the page before
                except Exception:  # noqa: BLE001, S112 - left to the view that reads it, which says where
                    continue
            return first, last, page

        pages = self._id_pages()

        # On SQLite, which takes one writer at a time, the views' pages take turns
        # (see build) and the pages are read in turn too: nothing there to overlap.
        ahead = not isinstance(self.store, SQLiteViewStore)

        def read_ahead() -> Future[tuple[int, int, list[Notified]]] | None:
            bounds = next(pages, None)
            if bounds is None:
                return None
            if ahead:
                return reader.submit(read, *bounds)
            done: Future[tuple[int, int, list[Notified]]] = Future()
            done.set_result(read(*bounds))
            return done

        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="rebuild-read") as reader:
            upcoming = read_ahead()
            while upcoming is not None and building:
                first, last, page = upcoming.result()
                upcoming = read_ahead()
                # The views' transactions overlap as well: while the database writes
                # one view's rows, this process prepares the next view's.
                futures = {
                    name: workers.submit(
                        partial(self.store.apply_page, through=last, after=_after(first)),
                        self.view(name),
                        generation,
                        page,
                    )
                    for name, generation in building.items()
                }
                for name in _gather(futures, stops):
                    del building[name]
                if progress is not None:
                    head = self.ledger.recorder.max_notification_id() or 0
                    progress(last, head, last / max(time.monotonic() - started, 1e-9))
            if upcoming is not None:
                upcoming.cancel()

    # Status and queries ------------------------------------------------------

    def status(self) -> list[ViewStatus]:
        head = self.ledger.recorder.max_notification_id() or 0
        stopped = {(s.name, s.generation): s for s in self.store.stopped()}
        result = []
        for name in self.views:
            generations = self.store.generations(name)
            if not generations:
                result.append(ViewStatus(name, None, "not built", 0, head, None, None))
                continue
            for generation in generations:
                if generation.state == "retired":
                    continue
                position = self.store.position(generation) or 0
                halt = stopped.get((name, generation.generation))
                result.append(
                    ViewStatus(
                        name,
                        generation.generation,
                        "stopped" if halt else generation.state,
                        position,
                        head - position,
                        halt.notification_id if halt else None,
                        halt.event_type if halt else None,
                    )
                )
        return result

    def wait(self, position: int, names: list[str] | None = None, timeout: float = 10.0) -> bool:
        """Waits until the views have applied the event at ``position`` (reading one's own writes)."""
        deadline = time.monotonic() + timeout
        pending = list(names or self.views)
        while pending and time.monotonic() < deadline:
            pending = [n for n in pending if not self._reached(n, position)]
            if pending:
                time.sleep(0.05)
        return not pending

    def _reached(self, name: str, position: int) -> bool:
        active = self.store.active(name)
        self.store.note_active(active)  # what is read next comes from the generation that has it
        return active is not None and (self.store.position(active) or 0) >= position

    def subjects_by(self, kind: str, value: str) -> list[UUID]:
        """Subjects whose current e-mail address or name is ``value``, through the blind index."""
        if kind not in {"email", "name"}:
            raise ValueError("look up subjects by 'email' or 'name'")
        digest = self.ledger.lookup_digest(kind, value)
        rows = self.store.read(self.view("subjects"), "lookup", {"kind": kind, "digest": digest})
        return subject_ids_by(rows)

    def rows(self, name: str, table: str, where: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        return self.store.read(self.view(name), table, where or {})

    def subject(self, subject_id: UUID, at: datetime) -> dict[str, Any] | None:
        """A subject now: items (opened; ``[erased]`` once erased), records, open requests, holds in force."""
        state = self._subject(subject_id, at)
        if state is None:
            return None
        # Opened after the read's connection went back to the pool: the key ring
        # takes a connection of its own, and a reader holding one while waiting for
        # another could, with enough such readers, wait on the pool for ever. A key
        # destroyed in between shows its values as erased, as it should.
        items = state["items"]
        sealed = [
            Sealed(subject_id, row["generation"], row["item"], base64.b64decode(row["sealed"]))
            for row in items
        ]
        values = self.ledger.cipher.open_many(sealed)
        state["items"] = [
            {"record_id": row["record_id"], "item": row["item"], "value": str(value)}
            for row, value in zip(items, values, strict=True)
        ]
        return state

    def _subject(self, subject_id: UUID, at: datetime) -> dict[str, Any] | None:
        """The subject's rows, items still sealed, read together (on PostgreSQL one statement, one snapshot).

        The CA issuance-record holds are those of the records the subject's
        items are on, directly or through the ACME accounts they are on.
        """
        view = self.view("subjects")
        where = {"subject_id": str(subject_id)}
        held_by = [
            Rows("items", "record_id", where),
            Rows(
                "record_accounts",
                "record_id",
                {},
                [("account_id", "in_any", [Rows("account_subjects", "account_id", where)])],
            ),
        ]
        found, items, records, holds, issued, requests = self.store.read_together(
            [
                Read(view, "subjects", where),
                Read(view, "items", where),
                Read(view, "records", where),
                Read(view, "holds", where),
                Read(view, "record_holds", {}, "record_id", [("record_id", "in_any", held_by)]),
                Read(self.view("requests"), "requests", where),
            ]
        )
        if not found:
            return None
        now = utc_text(at)
        assert now is not None
        erased = found[0]["erasure_state"] == "erased"
        holds += [
            {
                "subject_id": str(subject_id),
                "reference": f"certificate-record:{r['record_id']}",
                "until": r["until"],
                "reason": ISSUANCE_HOLD_REASON,
            }
            for r in issued
        ]
        return {
            **found[0],
            "personal_data": "[erased]" if erased else "held",
            "items": items,
            "records": sorted(r["record_id"] for r in records),
            "holds": [h for h in holds if h["until"] > now],
            "open_requests": _requests_as_of(requests, now, open_only=True),
        }

    def certificate(self, record_id: UUID, at: datetime) -> dict[str, Any] | None:
        """A certificate record now: ``status`` says expired once ``not_after`` has passed."""
        view, key = self.view("certificates"), {"record_id": str(record_id)}
        # Read together: on PostgreSQL one statement, so one snapshot.
        found, recipients = self.store.read_together(
            [Read(view, "certificates", key), Read(view, "recipients", key)]
        )
        if not found:
            return None
        row = dict(found[0])
        if row["status"] == "issued" and row["not_after"] is not None and row["not_after"] <= utc_text(at):
            row["status"] = "expired"
        row["recipients"] = recipients
        return row

    def requests(
        self, at: datetime, *, open_only: bool = False, subject_id: UUID | None = None
    ) -> list[dict[str, Any]]:
        """Disclosure, stop and erasure requests (of one subject, if given), with ``overdue`` as of ``at``."""
        where = {"subject_id": str(subject_id)} if subject_id is not None else {}
        now = utc_text(at)
        assert now is not None
        return _requests_as_of(self.rows("requests", "requests", where), now, open_only=open_only)

    def audit_page(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        subject: UUID | None = None,
        certificate: UUID | None = None,
        event_type: str | None = None,
        actor: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Audit-trail rows after notification ``after``, oldest first, filtered."""
        where: dict[str, Any] = {}
        if certificate:
            where["certificate_record_id"] = str(certificate)
        if event_type:
            where["event_type"] = event_type
        if actor:
            where["actor"] = actor
        conditions: list[tuple[str, str, Any]] = [("notification_id", ">", after)]
        conditions += _time_range("occurred_at", since, until)
        view = self.view("audit_trail")
        if subject:
            concerning = self.store.read(
                view,
                "event_subjects",
                {"subject_id": str(subject)},
                "notification_id",
                conditions=[("notification_id", ">", after)],
            )
            conditions.append(("notification_id", "in", [r["notification_id"] for r in concerning]))
        return self.store.read(view, "events", where, "notification_id", conditions=conditions, limit=limit)

    def provision_records(
        self,
        *,
        recipient: str | None = None,
        category: str | None = None,
        country: str | None = None,
        foreign_only: bool = False,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """The provision ledger (APPI Art. 29 records), oldest first, filtered."""
        where: dict[str, Any] = {}
        if recipient:
            where["recipient_id"] = recipient
        if category:
            where["category"] = category
        if country:
            where["country"] = country
        if foreign_only:
            where["foreign_recipient"] = True
        rows = self.store.read(
            self.view("provision_ledger"),
            "provisions",
            where,
            "provided_at, provision_id",
            conditions=_time_range("provided_at", since, until),
        )
        flags = ("foreign_recipient", "unspecified_many", "record_required")
        return [{**r, **{f: bool(r[f]) for f in flags}} for r in rows]

    def bulk_provisions(self) -> list[dict[str, Any]]:
        """Continuous provision (verifiers, CT logs): one record per recipient and category."""
        bulk: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self.rows("provision_ledger", "provisions", {}):
            if not row["unspecified_many"]:
                continue
            entry = bulk.setdefault(
                (row["recipient_id"], row["category"]),
                {
                    "recipient_id": row["recipient_id"],
                    "recipient_name": row["recipient_name"],
                    "category": row["category"],
                    "country": row["country"],
                    "foreign_recipient": bool(row["foreign_recipient"]),
                    "provisions": 0,
                    "first_provided_at": row["provided_at"],
                    "last_provided_at": row["provided_at"],
                },
            )
            entry["provisions"] += 1
            entry["first_provided_at"] = min(entry["first_provided_at"], row["provided_at"])
            entry["last_provided_at"] = max(entry["last_provided_at"], row["provided_at"])
        return sorted(bulk.values(), key=lambda e: (e["recipient_id"], e["category"]))


def _kept(generation: Generation, reason: str) -> Pruned:
    return Pruned(generation.name, generation.generation, generation.state, False, reason)


def _after(first: int) -> int | None:
    """The position a walk over the ids from 1 stands at when its page starts at ``first``."""
    return None if first == 1 else first - 1


def _gather(futures: dict[str, Future[None]], stops: list[ViewStopped]) -> list[str]:
    """Waits for each view's part of a rebuild; keeps the stops (logged) and names the views that stopped."""
    stopped_views = []
    for name, future in futures.items():
        try:
            future.result()
        except ViewStopped as stopped:
            log.error("rebuild of %s: %s", name, stopped)
            stops.append(stopped)
            stopped_views.append(name)
    return stopped_views


def _time_range(column: str, since: datetime | None, until: datetime | None) -> list[tuple[str, str, Any]]:
    conditions: list[tuple[str, str, Any]] = []
    for operator, moment in ((">=", since), ("<", until)):
        if moment is not None:
            if moment.tzinfo is None:
                raise ValueError("times need a time zone")
            conditions.append((column, operator, utc_text(moment)))
    return conditions


def _requests_as_of(rows: list[dict[str, Any]], now: str, *, open_only: bool) -> list[dict[str, Any]]:
    """Request rows with ``open`` and ``overdue`` as of ``now``, by due date."""
    result = []
    for row in rows:
        is_open = row["closed_at"] is None
        if open_only and not is_open:
            continue
        result.append({**row, "open": is_open, "overdue": is_open and row["due_at"] < now})
    return sorted(result, key=lambda r: (r["due_at"], r["request_id"]))
