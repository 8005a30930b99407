"""Where views live: tracking recorders of the eventsourcing library, one per backend.

A view's rows and its tracking record are written in one transaction, so an
event is applied once whatever crashes. Each build of a view is a
*generation* with tables of its own (``kv_<view>_g<n>_<table>``); readers are
pointed at the active generation only, so a rebuild beside it is never seen
half-built. A view that cannot apply an event is marked stopped, with the
event's notification id and type, until an operator retries it.
"""

from __future__ import annotations

import logging
import time
from abc import abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import Tracking
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore

from domain.tracking import FollowingTracking
from kiroku.persistence.recorders import FollowingPostgresTracking, FollowingSQLiteTracking
from projections.sql import (
    Dialect,
    PostgresDialect,
    SQLiteDialect,
    Table,
    Writer,
    create_statements,
    utc_text,
)
from projections.view import Notified, View

log = logging.getLogger("kiroku.projections")

#: How long readers go on using the active generation they looked up.
READING_GENERATION_SECONDS = 1.0

GENERATIONS = Table(
    "kiroku_view_generations",
    [
        ("name", "text"),
        ("generation", "int"),
        ("schema_version", "int"),
        ("state", "text"),
        ("created_at", "text"),
        ("retired_at", "text"),
    ],
    ["name", "generation"],
)
#: Columns added to the store's own tables since they were first made (``ViewStore.prepare``).
ADDED_COLUMNS = [(GENERATIONS, ("retired_at",))]
STATUS = Table(
    "kiroku_view_status",
    [
        ("name", "text"),
        ("generation", "int"),
        ("notification_id", "int"),
        ("event_type", "text"),
        ("error_class", "text"),
        ("error_message", "text"),
        ("stopped_at", "text"),
    ],
    ["name", "generation"],
)


@dataclass(frozen=True)
class Read:
    """One read of a view's active generation, for :meth:`ViewStore.read_together`."""

    view: View
    table: str
    where: dict[str, Any]
    order_by: str | None = None
    conditions: Sequence[tuple[str, str, Any]] = ()


class ViewNotReady(LookupError):
    """Raised when a view is read before its first build has caught up."""


class ViewStopped(Exception):
    """Raised when a view could not apply an event; it says which event and which view."""

    def __init__(self, view: str, generation: int, notified: Notified, error: BaseException) -> None:
        self.view, self.generation, self.notified, self.error = view, generation, notified, error
        super().__init__(
            f"view {view} (generation {generation}) stopped at notification {notified.notification_id} "
            f"({notified.event_type}): {type(error).__name__}"
        )


class _BulkWriteFailed(Exception):
    """Raised when a page failed while its rows were held back for bulk writing."""


class _InDatabaseFailed(Exception):
    """Raised when a view's own SQL statement could not apply a page."""


@dataclass(frozen=True)
class Generation:
    name: str
    generation: int
    schema_version: int
    state: str
    #: When it was retired (UTC, ISO 8601); None if it is not, or was before kiroku kept the time.
    retired_at: str | None = None

    @property
    def stream(self) -> str:
        """The tracking record's name for this generation."""
        return f"view:{self.name}:g{self.generation}"


@dataclass(frozen=True)
class StoppedView:
    name: str
    generation: int
    notification_id: int
    event_type: str
    error_class: str
    error_message: str
    stopped_at: str


def _bare_name(view: View, generation: int, table: str) -> str:
    """A generation's table, unqualified (its indexes are named after it)."""
    return f"kv_{view.name}_g{generation}_{table}"


class ViewStore:
    """The backend-neutral part: generations, status, applying a page of events."""

    dialect: Dialect
    #: The event store's table, when its events' state is plain JSON a statement can read.
    events_table: str | None = None

    @abstractmethod
    def transaction(self) -> AbstractContextManager[Any]: ...

    @abstractmethod
    def reading(self) -> AbstractContextManager[Any]:
        """A read-only transaction (SQLite lets only one writer at a time)."""

    def applying(self) -> AbstractContextManager[Any]:
        """The transaction that applies a page of events to a view and moves its tracking record."""
        return self.transaction()

    @abstractmethod
    def qualified(self, table: str) -> str: ...

    @abstractmethod
    def insert_tracking_in(self, cursor: Any, tracking: Tracking) -> None: ...

    @abstractmethod
    def position(self, generation: Generation) -> int | None: ...

    def _meta_names(self) -> dict[str, str]:
        return {t.name: self.qualified(t.name) for t in (GENERATIONS, STATUS)}

    def table_names(self, view: View, generation: int) -> dict[str, str]:
        return {t.name: self.qualified(_bare_name(view, generation, t.name)) for t in view.tables}

    def _table_statements(self, view: View, generation: int, table: Table) -> list[str]:
        """A generation's table: its DDL, then one statement per declared index, in the view's order."""
        bare = _bare_name(view, generation, table.name)
        return create_statements(table, self.qualified(bare), bare, self.dialect)

    @abstractmethod
    def _columns(self, cursor: Any, table: str) -> set[str]:
        """The columns one of the store's own tables has now."""

    def prepare(self) -> None:
        with self.transaction() as cursor:
            for table in (GENERATIONS, STATUS):
                for statement in create_statements(
                    table, self.qualified(table.name), table.name, self.dialect
                ):
                    cursor.execute(statement)
            for table, added in ADDED_COLUMNS:
                kinds = dict(table.columns)
                for column in sorted(set(added) - self._columns(cursor, table.name)):
                    kind = self.dialect.types[kinds[column]]
                    cursor.execute(f"ALTER TABLE {self.qualified(table.name)} ADD COLUMN {column} {kind}")

    def add_missing_indexes(self, views: Iterable[View]) -> None:
        """Gives the active generations the indexes their view declares now.

        An index added to a view's tables changes no row, so it calls for no
        rebuild; the tables of a generation made before it get it here, when a
        process opens the store. A generation being built gets its indexes when
        it is activated (a rebuild may be making them last, on purpose).
        """
        for view in views:
            for generation in self.generations(view.name):
                if generation.state == "active":
                    self.add_indexes(view, generation)

    def add_indexes(self, view: View, generation: Generation) -> None:
        """Makes the indexes a generation's tables lack (each built at once, from the rows there are)."""
        with self.transaction() as cursor:
            for table in view.tables:
                for statement in self._table_statements(view, generation.generation, table)[1:]:
                    cursor.execute(statement)

    def generations(self, name: str) -> list[Generation]:
        with self.reading() as cursor:
            rows = Writer(cursor, self.dialect, self._meta_names()).select(
                GENERATIONS.name, {"name": name}, order_by="generation"
            )
        return [
            Generation(r["name"], r["generation"], r["schema_version"], r["state"], r["retired_at"])
            for r in rows
        ]

    def active(self, name: str) -> Generation | None:
        return next((g for g in self.generations(name) if g.state == "active"), None)

    def next_generation_number(self, name: str) -> int:
        """The number a new generation of the view gets: one past the highest there is."""
        return max((g.generation for g in self.generations(name)), default=0) + 1

    def new_generation(
        self, view: View, *, only: Collection[tuple[str, ...]] | None = None, number: int | None = None
    ) -> Generation:
        """A new, empty generation of the view, being built (readers do not see it).

        ``only`` (table, columns...) limits the indexes made now to those, besides
        the primary keys; :meth:`add_indexes` makes the others once it is built.
        ``number``: the one to make (a rebuild locks it first); by default the next.
        Two makers of one number: the second is refused (the generations' key).
        """
        if number is None:
            number = self.next_generation_number(view.name)
        with self.transaction() as cursor:
            for table in view.tables:
                create, *indexes = self._table_statements(view, number, table)
                cursor.execute(create)
                # Each index keeps the name its place in the view's list gives it, made now or later.
                for index, statement in zip(table.indexes, indexes, strict=True):
                    if only is None or (table.name, *index) in only:
                        cursor.execute(statement)
            Writer(cursor, self.dialect, self._meta_names()).insert(
                GENERATIONS.name,
                {
                    "name": view.name,
                    "generation": number,
                    "schema_version": view.schema,
                    "state": "building",
                    "created_at": utc_text(datetime.now(UTC)),
                },
            )
        return Generation(view.name, number, view.schema, "building")

    def reading_generation(self, name: str) -> Generation | None:
        """The active generation, as readers use it: looked up at most once a second per view.

        A retired generation keeps its tables, so a reader that goes on using it
        for up to a second after a switch reads a complete, slightly older view.
        """
        now = time.monotonic()
        known = self._reading_cache().get(name)
        if known is not None and now - known[1] < READING_GENERATION_SECONDS:
            return known[0]
        generation = self.active(name)
        self.note_active(generation)
        return generation

    def note_active(self, generation: Generation | None) -> None:
        """Tells readers which generation is active now (it was just looked up or switched to)."""
        if generation is not None:
            self._reading_cache()[generation.name] = (generation, time.monotonic())

    def _reading_cache(self) -> dict[str, tuple[Generation, float]]:
        # Made on first use: the stores' constructors are the library recorders'.
        cache: dict[str, tuple[Generation, float]] = self.__dict__.setdefault("_reading", {})
        return cache

    def activate(self, view: View, generation: Generation) -> None:
        """Points readers at this generation, with every index; the one they read before is retired."""
        self.add_indexes(view, generation)
        with self.transaction() as cursor:
            meta = Writer(cursor, self.dialect, self._meta_names())
            meta.update(
                GENERATIONS.name,
                {"name": generation.name, "state": "active"},
                {"state": "retired", "retired_at": utc_text(datetime.now(UTC))},
            )
            meta.update(
                GENERATIONS.name,
                {"name": generation.name, "generation": generation.generation},
                {"state": "active"},
            )
        self.note_active(replace(generation, state="active"))

    @property
    @abstractmethod
    def tracking_table(self) -> str:
        """The tracking records' table, qualified."""

    def drop_generation(self, view: View, generation: Generation) -> bool:
        """Drops a generation: its tables, its tracking record, a stop noted against it, its entry.

        In one transaction, and only if its entry is still as ``generation``
        says (its state, and when it was retired); otherwise nothing is
        dropped and it returns False. A prune that looked at the generations
        before another prune dropped this one, and a rebuild made a new one
        under its number, must not drop the new one. Only for a generation no
        runner or rebuild works on and no reader uses (``Projections.prune``
        holds its lock, and takes only generations retired a while ago or
        left unfinished).
        """
        p = self.dialect.placeholder
        retired = "retired_at IS NULL" if generation.retired_at is None else f"retired_at = {p}"
        with self.transaction() as cursor:
            # First, so that an activation or a switch of this entry waits for this transaction.
            cursor.execute(
                f"DELETE FROM {self._meta_names()[GENERATIONS.name]} "
                f"WHERE name = {p} AND generation = {p} AND state = {p} AND {retired} RETURNING generation",
                (generation.name, generation.generation, generation.state)
                + (() if generation.retired_at is None else (generation.retired_at,)),
            )
            if not cursor.fetchall():
                return False
            for table in self.table_names(view, generation.generation).values():
                cursor.execute(f"DROP TABLE IF EXISTS {table}")
            cursor.execute(
                f"DELETE FROM {self.tracking_table} WHERE application_name = {p}",
                (generation.stream,),
            )
            Writer(cursor, self.dialect, self._meta_names()).delete(
                STATUS.name, {"name": generation.name, "generation": generation.generation}
            )
        return True

    def in_database(self, view: View) -> bool:
        """Whether this store applies the view's events with the view's own SQL statement."""
        return self.events_table is not None and self.dialect.name in view.in_database

    def apply_page(
        self,
        view: View,
        generation: Generation,
        page: Sequence[Notified],
        *,
        after: int | None,
        through: int | None = None,
    ) -> None:
        """Applies the events and moves the tracking record, in one transaction.

        ``after`` is the position the page was read from (None: nothing applied
        yet). The transaction first moves the position, and only from ``after``
        (``FollowingTracking``): if another writer moved it meanwhile (a second
        runner that took the view's lock when this one lost it), the page is
        refused (``IntegrityError``) before a row is written, so no event is
        applied twice. ``through`` is the last notification id the page stands
        for, when the page holds only the kinds of event its views read (the
        view's position moves there even if none is in the page); by default,
        its last event's. Rows are written in bulk. If a bulk write fails, the
        page is applied again one row at a time, so the error names the event
        that caused it.
        """
        if self.in_database(view):
            if through is not None:
                raise ValueError(f"view {view.name} is applied in the database: it needs every event's id")
            if page:
                first, last = page[0].notification_id, page[-1].notification_id
                self.apply_range(view, generation, first, last, lambda: page, after=after)
            return
        if not page and through is None:
            return
        self._apply_in_python(view, generation, page, through, after)

    def apply_range(
        self,
        view: View,
        generation: Generation,
        first: int,
        last: int,
        page: Callable[[], Sequence[Notified]],
        *,
        after: int | None,
    ) -> None:
        """Applies the stored events ``first`` to ``last`` with the view's SQL statement.

        The tracking record moves from ``after`` to ``last`` first, in the same
        transaction (as :meth:`apply_page`). Should the statement fail (on an
        event its SQL cannot read), the events (``page()``) are applied in
        Python instead, and the log says so.
        """
        assert self.events_table is not None, "only for a view applied in the database"
        try:
            with self.applying() as cursor:
                self.insert_tracking_in(cursor, FollowingTracking(generation.stream, last, after))
                names = self.table_names(view, generation.generation)
                try:
                    # The planner's estimate of a page is far too high; compiling the
                    # statement (JIT) took longer than running it.
                    cursor.execute("SET LOCAL jit = off")
                    cursor.execute(
                        view.database_page(names, self.events_table), {"first": first, "last": last}
                    )
                except Exception as exc:
                    raise _InDatabaseFailed from exc
            return
        except _InDatabaseFailed as failed:
            log.warning(
                "view %s: the database could not apply notifications %s to %s (%s); "
                "they are applied in Python",
                view.name,
                first,
                last,
                type(failed.__cause__).__name__,
            )
        self._apply_in_python(view, generation, page(), last, after)

    def _apply_in_python(
        self,
        view: View,
        generation: Generation,
        page: Sequence[Notified],
        up_to: int | None,
        after: int | None,
    ) -> None:
        """The page in bulk; if that fails, again one row at a time, so the error names its event."""
        try:
            self._apply_page(view, generation, page, buffered=True, up_to=up_to, after=after)
        except _BulkWriteFailed as failed:
            log.warning(
                "view %s: writing notifications %s to %s in bulk failed (%s); they are written one by one",
                view.name,
                page[0].notification_id if page else up_to,
                page[-1].notification_id if page else up_to,
                type(failed.__cause__).__name__,
            )
            self._apply_page(view, generation, page, buffered=False, up_to=up_to, after=after)

    def _apply_page(
        self,
        view: View,
        generation: Generation,
        page: Sequence[Notified],
        *,
        buffered: bool,
        up_to: int | None,
        after: int | None,
    ) -> None:
        names = self.table_names(view, generation.generation)
        used = [notified for notified in page if view.uses(notified)]
        view.prepare(used)
        position = page[-1].notification_id if up_to is None else up_to
        with self.applying() as cursor:
            # The position first: a second writer of this generation waits here, then is refused.
            self.insert_tracking_in(cursor, FollowingTracking(generation.stream, position, after))
            rows = Writer(cursor, self.dialect, names, buffered=buffered, tables=view.tables)
            for notified in used:
                try:
                    view.apply(notified, rows)
                except Exception as exc:
                    if buffered:
                        raise _BulkWriteFailed from exc
                    raise ViewStopped(view.name, generation.generation, notified, exc) from exc
            try:
                rows.flush()
            except Exception as exc:
                raise _BulkWriteFailed from exc

    def mark_stopped(self, stopped: ViewStopped) -> None:
        with self.transaction() as cursor:
            Writer(cursor, self.dialect, self._meta_names()).upsert(
                STATUS.name,
                {
                    "name": stopped.view,
                    "generation": stopped.generation,
                    "notification_id": stopped.notified.notification_id,
                    "event_type": stopped.notified.event_type,
                    "error_class": type(stopped.error).__name__,
                    "error_message": str(stopped.error)[:500],
                    "stopped_at": utc_text(datetime.now(UTC)),
                },
                key=["name", "generation"],
            )

    def stopped(self, name: str | None = None) -> list[StoppedView]:
        with self.reading() as cursor:
            rows = Writer(cursor, self.dialect, self._meta_names()).select(
                STATUS.name, {"name": name} if name else {}, order_by="name, generation"
            )
        return [StoppedView(**row) for row in rows]

    def clear_stopped(self, name: str) -> int:
        """Lets a stopped view run again (``kiroku projections retry``); returns how many were cleared."""
        count = len(self.stopped(name))
        with self.transaction() as cursor:
            Writer(cursor, self.dialect, self._meta_names()).delete(STATUS.name, {"name": name})
        return count

    def read(
        self,
        view: View,
        table: str,
        where: dict[str, Any],
        order_by: str | None = None,
        *,
        conditions: Sequence[tuple[str, str, Any]] = (),
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of the active generation (raises ViewNotReady while none is)."""
        names = self._reading_names(view)  # before the cursor: it may read the generations
        with self.reading() as cursor:
            return Writer(cursor, self.dialect, names).select(
                table, where, order_by, conditions=conditions, limit=limit
            )

    def read_together(self, reads: Sequence[Read]) -> list[list[dict[str, Any]]]:
        """The rows of each read, in order: one after the other here, in one statement on PostgreSQL."""
        return [self.read(r.view, r.table, r.where, r.order_by, conditions=r.conditions) for r in reads]

    def _reading_names(self, view: View) -> dict[str, str]:
        generation = self.reading_generation(view.name)
        if generation is None:
            raise ViewNotReady(f"view {view.name} has no active generation yet")
        return self.table_names(view, generation.generation)


class _TrackingRecorderBacked:
    """The ViewStore primitives both library recorders provide the same way."""

    datastore: Any

    def _insert_tracking(self, cursor: Any, tracking: Tracking) -> None: ...  # the recorder's own

    def max_tracking_id(self, application_name: str) -> int | None: ...  # the recorder's own

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=True) as cursor:
            yield cursor

    @contextmanager
    def reading(self) -> Iterator[Any]:
        with self.datastore.transaction(commit=False) as cursor:
            yield cursor

    def insert_tracking_in(self, cursor: Any, tracking: Tracking) -> None:
        self._insert_tracking(cursor, tracking)

    def position(self, generation: Generation) -> int | None:
        return self.max_tracking_id(generation.stream)


class PostgresViewStore(FollowingPostgresTracking, _TrackingRecorderBacked, ViewStore):
    """Views in PostgreSQL, beside the event store."""

    dialect = PostgresDialect()

    def __init__(
        self, datastore: PostgresDatastore, *, tracking_table_name: str = "kiroku_view_tracking"
    ) -> None:
        super().__init__(datastore, tracking_table_name=tracking_table_name)

    def qualified(self, table: str) -> str:
        return f'"{self.datastore.schema}"."{table}"'

    @property
    def tracking_table(self) -> str:
        return self.qualified(self.tracking_table_name)

    def _columns(self, cursor: Any, table: str) -> set[str]:
        cursor.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = %s AND table_name = %s",
            (self.datastore.schema, table),
        )
        return {row["column_name"] for row in cursor.fetchall()}

    @contextmanager
    def applying(self) -> Iterator[Any]:
        """A page's transaction, which does not wait for its commit to reach the disk.

        A view is made from the events: should the server crash, the last pages
        applied are lost with their tracking record, as one, and applied again.
        """
        with self.transaction() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            yield cursor

    @contextmanager
    def reading(self) -> Iterator[Any]:
        # No transaction: each read is one statement, one round trip (not BEGIN, SELECT, ROLLBACK).
        with self.datastore.get_connection() as conn, conn.cursor() as cursor:
            yield cursor

    def read_together(self, reads: Sequence[Read]) -> list[list[dict[str, Any]]]:
        """The rows of each read, in one statement and one round trip.

        Each read is a scalar subquery that aggregates its rows into JSON
        (``json_agg``, in the read's order); text, numbers, booleans and NULL
        come back as the same Python values a plain read gives.
        """
        if not reads:
            return []
        parts: list[str] = []
        params: list[Any] = []
        # The tables first: finding a view's generation may take a connection of its own,
        # which must not wait while this read holds one (see Projections.subject).
        names = [self._reading_names(read.view) for read in reads]
        with self.reading() as cursor:
            for number, read in enumerate(reads):
                writer = Writer(cursor, self.dialect, names[number])
                query = writer.select_statement(
                    read.table, read.where, read.order_by, conditions=read.conditions
                )
                if query is None:  # it can match no row
                    parts.append(f"'[]'::json AS r{number}")
                    continue
                order = f" ORDER BY {read.order_by}" if read.order_by else ""
                parts.append(
                    f"(SELECT coalesce(json_agg(r{order}), '[]'::json) FROM ({query[0]}) AS r) AS r{number}"
                )
                params.extend(query[1])
            cursor.execute(f"SELECT {', '.join(parts)}", params)
            row = cursor.fetchone()
        assert row is not None
        return [list(row[f"r{number}"]) for number in range(len(reads))]


class SQLiteViewStore(FollowingSQLiteTracking, _TrackingRecorderBacked, ViewStore):
    """Views in the embedded SQLite file, beside the event store."""

    dialect = SQLiteDialect()

    def __init__(self, datastore: SQLiteDatastore) -> None:
        super().__init__(datastore)

    def qualified(self, table: str) -> str:
        return table

    @property
    def tracking_table(self) -> str:
        return "tracking"  # the library's SQLite recorder's, not configurable

    def _columns(self, cursor: Any, table: str) -> set[str]:
        cursor.execute(f"PRAGMA table_info({table})")
        return {row["name"] for row in cursor.fetchall()}
