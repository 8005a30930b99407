"""Process recorders that also keep the per-subject key table.

Destroying a subject's key (crypto-shredding) happens in the same transaction
as the ``DataSubject.Erased`` event: the application passes
``shred=[(subject_id, generation), ...]`` to ``save()``, the event store hands
it on to ``insert_events()`` and these recorders act on it before the events
are inserted. Either both happen or neither does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Iterator, Sequence
from typing import Any
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    ProgrammingError,
    StoredEvent,
    Tracking,
)
from eventsourcing.postgres import PostgresDatastore, PostgresProcessRecorder, PostgresTrackingRecorder
from eventsourcing.sqlite import (
    SQLiteAggregateRecorder,
    SQLiteCursor,
    SQLiteDatastore,
    SQLiteProcessRecorder,
    SQLiteTrackingRecorder,
)
from eventsourcing.utils import retry
from psycopg import Cursor
from psycopg.rows import DictRow, tuple_row
from psycopg.sql import SQL, Composed, Identifier, Literal

from domain.tracking import FollowingTracking
from kiroku.persistence.live import KEEPALIVE_PARAMETERS

KEYS_TABLE = "kiroku_subject_keys"
#: How the asyncio connections (the API's access records) name themselves to PostgreSQL.
ASYNC_APPLICATION_NAME = "kiroku-access-log"
#: Up to this many events are inserted with one INSERT ... RETURNING; more are copied.
_FEW_EVENTS = 50


#: Kinds of event a listing reads across the whole store (``Ledger.accepted_gaps``,
#: ``Ledger.dead_letters``): rare by nature. On PostgreSQL a partial index holds their
#: notification ids, so a listing reads them alone instead of walking every event.
LISTED_TOPICS = (
    "domain.gap:UpstreamGap.Accepted",
    "domain.dead_letter:UpstreamDeadLetter.Recorded",
)


def event_type_of(topic: str) -> str:
    """``Aggregate.Event`` from a stored topic ``module:Aggregate.Event``."""
    return topic.rsplit(":", 1)[-1]


def event_type_sql(topic: str) -> str:
    """:func:`event_type_of` in PostgreSQL, over the SQL expression ``topic``.

    The text after the last colon (``split_part`` with -1 needs PostgreSQL 14):
    about a quarter of the CPU of the regular expression it replaced, over
    every event a rebuild or a view's page filters by kind.
    """
    return f"split_part({topic}, ':', -1)"


def _stored_events(rows: Sequence[DictRow]) -> list[StoredEvent]:
    """Rows of (originator_id, originator_version, topic, state) as stored events."""
    return [
        StoredEvent(
            originator_id=row["originator_id"],
            originator_version=row["originator_version"],
            topic=row["topic"],
            state=bytes(row["state"]),
        )
        for row in rows
    ]


def postgres_keys_table(schema: str) -> Identifier:
    return Identifier(schema, KEYS_TABLE)


#: Reads of up to this many aggregates go as one statement without a transaction: the
#: planner's estimates for so few index scans stay far below where it compiles (JIT).
_FEW_READS = 8


#: The latest snapshot of each id not known (``fresh``) and the events after it, and the
#: events after the given versions of the known ones. Ids with no snapshot (nearly all)
#: are read by one index scan over the array, as events_of does; those with one, and the
#: known ones, by an index scan each from their version on.
_SNAPSHOTS_AND_EVENTS_OF = (
    "WITH s AS (SELECT DISTINCT ON (originator_id) "
    "originator_id, originator_version, topic, state FROM {snapshots} "
    "WHERE originator_id = ANY(%(fresh)b::uuid[]) "
    "ORDER BY originator_id, originator_version DESC) "
    "SELECT true AS snapshot, originator_id, originator_version, topic, state FROM s "
    "UNION ALL "
    "SELECT false, originator_id, originator_version, topic, state FROM {events} "
    "WHERE originator_id = ANY(%(fresh)b::uuid[]) "
    "AND originator_id NOT IN (SELECT originator_id FROM s) "
    "UNION ALL "
    "SELECT false, e.originator_id, e.originator_version, e.topic, e.state FROM ("
    "SELECT originator_id, originator_version FROM s "
    "UNION ALL SELECT * FROM unnest(%(known)b::uuid[], %(versions)b::bigint[])"
    ") AS w(originator_id, after_version) "
    "CROSS JOIN LATERAL (SELECT originator_id, originator_version, topic, state FROM {events} "
    "WHERE originator_id = w.originator_id AND originator_version > w.after_version) AS e "
    "ORDER BY 2, 1 DESC, 3"
)
#: One aggregate's: the snapshot's version is found once (an uncorrelated subquery), so
#: the events are read by one index scan from there on.
_SNAPSHOT_AND_EVENTS_OF_ONE = (
    "(SELECT true AS snapshot, originator_id, originator_version, topic, state FROM {snapshots} "
    "WHERE originator_id = %(id)s ORDER BY originator_version DESC LIMIT 1) "
    "UNION ALL "
    "(SELECT false, originator_id, originator_version, topic, state FROM {events} "
    "WHERE originator_id = %(id)s AND originator_version > COALESCE("
    "(SELECT max(originator_version) FROM {snapshots} WHERE originator_id = %(id)s), 0) "
    "ORDER BY originator_version)"
)


def _split_snapshots(rows: Sequence[DictRow]) -> tuple[list[StoredEvent], list[StoredEvent]]:
    """Rows flagged ``snapshot`` as (snapshots, events)."""
    return (
        _stored_events([r for r in rows if r["snapshot"]]),
        _stored_events([r for r in rows if not r["snapshot"]]),
    )


def _expect_ids(ids: Sequence[int], stored_events: Sequence[StoredEvent]) -> None:
    if len(ids) != len(stored_events):
        raise ProgrammingError(f"expected {len(stored_events)} notification ids, the table gave {len(ids)}")


#: The start of every statement whose rows :func:`_notifications` reads, in its columns' order.
_SELECT_NOTIFICATIONS = (
    "SELECT notification_id, originator_id, originator_version, topic, state FROM {table} "
)


def _notifications(rows: Sequence[tuple[Any, ...]]) -> list[Notification]:
    """Rows of (notification_id, originator_id, originator_version, topic, state) as notifications."""
    return [
        Notification(id=i, originator_id=o, originator_version=v, topic=t, state=bytes(s))
        for i, o, v, t, s in rows
    ]


SQLITE_FIRST_TRACKING = (
    "INSERT INTO tracking VALUES (?, ?) ON CONFLICT (application_name) DO NOTHING RETURNING notification_id"
)
SQLITE_FOLLOWING_TRACKING = (
    "UPDATE tracking SET notification_id = ? "
    "WHERE application_name = ? AND notification_id = ? AND notification_id < ? RETURNING notification_id"
)


class FollowingPostgresTracking(PostgresTrackingRecorder):
    """A tracking recorder that records a ``FollowingTracking`` only on top of the position it names.

    A plain ``Tracking`` keeps the library's upsert (the position only moves
    forward). A ``FollowingTracking`` is recorded in the one statement that
    moves the position, and only while the position is still its ``after``
    and the new one is past it; otherwise the transaction is refused
    (``IntegrityError``). Made to be a base class before the library's recorder.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        table = Identifier(self.datastore.schema, self.tracking_table_name)
        self._first_tracking_statement = SQL(
            "INSERT INTO {table} VALUES (%s, %s) ON CONFLICT (application_name) DO NOTHING "
            "RETURNING notification_id"
        ).format(table=table)
        self._following_tracking_statement = SQL(
            "UPDATE {table} SET notification_id = %s "
            "WHERE application_name = %s AND notification_id = %s AND notification_id < %s "
            "RETURNING notification_id"
        ).format(table=table)

    def _insert_tracking(self, curs: Cursor[DictRow], tracking: Tracking) -> None:
        if not isinstance(tracking, FollowingTracking) or not self.datastore.single_row_tracking:
            super()._insert_tracking(curs, tracking)
            return
        name, position = tracking.application_name, tracking.notification_id
        if tracking.after is None:
            curs.execute(self._first_tracking_statement, (name, position), prepare=True)
        else:
            after = tracking.after
            curs.execute(self._following_tracking_statement, (position, name, after, position), prepare=True)
        if curs.fetchone() is None:
            raise IntegrityError(tracking.refusal())


class FollowingSQLiteTracking(SQLiteTrackingRecorder):
    """:class:`FollowingPostgresTracking` for SQLite."""

    def _insert_tracking(self, c: SQLiteCursor, tracking: Tracking) -> None:
        if not isinstance(tracking, FollowingTracking) or not self.datastore.single_row_tracking:
            super()._insert_tracking(c, tracking)
            return
        name, position = tracking.application_name, tracking.notification_id
        if tracking.after is None:
            c.execute(SQLITE_FIRST_TRACKING, (name, position))
        else:
            c.execute(SQLITE_FOLLOWING_TRACKING, (position, name, tracking.after, position))
        if c.fetchone() is None:
            raise IntegrityError(tracking.refusal())


class KirokuPostgresRecorder(FollowingPostgresTracking, PostgresProcessRecorder):
    """PostgreSQL process recorder with the subject key table."""

    def __init__(
        self,
        datastore: PostgresDatastore,
        *,
        events_table_name: str = "stored_events",
        tracking_table_name: str = "notification_tracking",
    ) -> None:
        super().__init__(
            datastore, events_table_name=events_table_name, tracking_table_name=tracking_table_name
        )
        table = postgres_keys_table(self.datastore.schema)
        self.sql_create_statements.append(
            SQL(
                "CREATE TABLE IF NOT EXISTS {table} ("
                "subject_id uuid NOT NULL, "
                "generation integer NOT NULL, "
                "wrapped_key bytea, "
                "created_at timestamptz NOT NULL DEFAULT now(), "
                "destroyed_at timestamptz, "
                "PRIMARY KEY (subject_id, generation))"
            ).format(table=table)
        )
        events_table = Identifier(self.datastore.schema, self.events_table_name)
        self.sql_create_statements.append(
            SQL(
                "CREATE INDEX IF NOT EXISTS {index} ON {table} (notification_id) WHERE topic IN ({topics})"
            ).format(
                index=Identifier(f"{self.events_table_name}_listed_kinds"),
                table=events_table,
                topics=SQL(", ").join(Literal(topic) for topic in LISTED_TOPICS),
            )
        )
        self._copy_events_statement = SQL(
            "COPY {table} (originator_id, originator_version, topic, state) FROM STDIN (FORMAT BINARY)"
        ).format(table=events_table)
        self._insert_values_statement = SQL(
            "INSERT INTO {table} (originator_id, originator_version, topic, state) VALUES "
        ).format(table=events_table)
        self._lock_and_notify_statement = SQL(
            "SET LOCAL lock_timeout = '{timeout}s'; LOCK TABLE {table} IN EXCLUSIVE MODE; NOTIFY {channel}"
        ).format(
            timeout=self.datastore.lock_timeout,
            table=events_table,
            channel=Identifier(self.channel_name),
        )
        self._ids_after_statement = SQL(
            "SELECT notification_id FROM {table} WHERE notification_id > %s ORDER BY notification_id"
        ).format(table=events_table)
        self._max_tracking_ids_statement = SQL(
            "SELECT application_name, max(notification_id) AS position FROM {table} "
            "WHERE application_name = ANY(%s) GROUP BY application_name"
        ).format(table=Identifier(self.datastore.schema, self.tracking_table_name))
        self._events_of_statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {table} "
            "WHERE originator_id = ANY(%b::uuid[]) ORDER BY originator_id, originator_version"
        ).format(table=events_table)
        self._events_of_topics_statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {table} "
            "WHERE originator_id = ANY(%b::uuid[]) AND topic = ANY(%s) "
            "ORDER BY originator_id, originator_version"
        ).format(table=events_table)
        # Aggregates read whole by id (as above), and those known up to a version by one
        # index scan each (LATERAL), whatever the planner knows of the table: a plain join
        # was planned as a merge join over the whole primary key on a table not yet
        # analysed (25 ms at 75,000 events, growing with the table).
        self._events_after_statement = SQL(
            "SELECT originator_id, originator_version, topic, state FROM {table} "
            "WHERE originator_id = ANY(%b::uuid[]) "
            "UNION ALL "
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM unnest(%b::uuid[], %b::bigint[]) AS w(originator_id, after_version) "
            "CROSS JOIN LATERAL (SELECT originator_id, originator_version, topic, state FROM {table} "
            "WHERE originator_id = w.originator_id AND originator_version > w.after_version) AS e "
            "ORDER BY 1, 2"
        ).format(table=events_table)
        between = _SELECT_NOTIFICATIONS + "WHERE notification_id BETWEEN %s AND %s"
        self._between_statement = SQL(between + " ORDER BY notification_id").format(table=events_table)
        self._snapshot_statements: dict[tuple[str, str], Composed] = {}
        self._between_of_kinds_statement = SQL(
            between + f" AND {event_type_sql('topic')} = ANY(%s) ORDER BY notification_id"
        ).format(table=events_table)
        self.shred_statement = SQL(
            "INSERT INTO {table} (subject_id, generation, wrapped_key, destroyed_at) "
            "VALUES (%s, %s, NULL, now()) "
            "ON CONFLICT (subject_id, generation) DO UPDATE "
            "SET wrapped_key = NULL, destroyed_at = COALESCE({table}.destroyed_at, now())"
        ).format(table=table)

    def events_of(
        self, ids: Sequence[UUID], after: Sequence[int] | None = None, *, topics: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        """Every event of these aggregates in one query, ordered by aggregate and version.

        ``after``, if given, holds a version for each id: only that aggregate's
        later events are read (for an aggregate already known up to there).
        ``topics``, if given: only the events of those topics (not with ``after``).
        """
        if not ids:
            return []
        if topics is not None:
            if after is not None:
                raise ValueError("events of some topics are read whole, not after a version")
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(self._events_of_topics_statement, (list(ids), list(topics)), prepare=True)
                return _stored_events(curs.fetchall())
        if after is not None:
            fresh = [i for i, version in zip(ids, after, strict=True) if not version]
            known = [(i, version) for i, version in zip(ids, after, strict=True) if version]
            if known:
                return self._events_after(fresh, known)
        # One statement, no transaction around it: one round trip (not BEGIN, SELECT, ROLLBACK).
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._events_of_statement, (list(ids),), prepare=True)
            return _stored_events(curs.fetchall())

    def notifications_of_topic(self, topic: str, start: int, limit: int) -> Sequence[Notification]:
        """The events of one topic from notification id ``start`` on, at most ``limit``, in order.

        A topic of ``LISTED_TOPICS`` is read through its partial index (the topic
        is written into the statement, so the planner sees that the index holds
        it); another is read as ``select_notifications`` reads it.
        """
        if topic not in LISTED_TOPICS:
            found: Sequence[Notification] = self.select_notifications(start, limit, topics=[topic])
            return found
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            curs.execute(self.of_topic_statement(topic), (start, limit))
            return _notifications(curs.fetchall())

    def of_topic_statement(self, topic: str) -> Composed:
        """:meth:`notifications_of_topic`'s statement (parameters: the first id, the limit)."""
        return SQL(
            _SELECT_NOTIFICATIONS
            + "WHERE topic = {topic} AND notification_id >= %s ORDER BY notification_id LIMIT %s"
        ).format(table=Identifier(self.datastore.schema, self.events_table_name), topic=Literal(topic))

    def _events_after(self, fresh: list[UUID], known: list[tuple[UUID, int]]) -> list[StoredEvent]:
        """All events of ``fresh``, and those after the given version of ``known``, in one statement."""
        with self.datastore.transaction(commit=False) as curs:
            # The per-aggregate scans are estimated high on a table not yet analysed, and
            # compiling the statement (JIT) then took longer than running it.
            curs.execute("SET LOCAL jit = off")
            curs.execute(
                self._events_after_statement,
                (fresh, [i for i, _ in known], [v for _, v in known]),
                prepare=True,
            )
            return _stored_events(curs.fetchall())

    def max_tracking_ids(self, application_names: Sequence[str]) -> dict[str, int]:
        """``max_tracking_id`` of each of these names that has a tracking record, in one statement."""
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._max_tracking_ids_statement, (list(application_names),), prepare=True)
            return {row["application_name"]: row["position"] for row in curs.fetchall()}

    def snapshots_and_events_of(
        self, snapshots_table: str, ids: Sequence[UUID], after: Sequence[int] | None = None
    ) -> tuple[list[StoredEvent], list[StoredEvent]]:
        """The latest snapshot of each id that has one, and the events after it, in one statement.

        An id with a version in ``after`` (an aggregate known up to there) has
        no snapshot looked up: only its events after that version are read.
        Events are ordered by aggregate and version.
        """
        if not ids:
            return [], []
        pairs = list(zip(ids, after, strict=True)) if after is not None else [(i, 0) for i in ids]
        fresh = [i for i, version in pairs if not version]
        known = [(i, version) for i, version in pairs if version]
        if len(fresh) == 1 and not known:
            # One aggregate (a command's or the API's read): a lighter statement, since
            # the general one took about 0.4 ms more to plan and run.
            statement = self._with_snapshots(snapshots_table, _SNAPSHOT_AND_EVENTS_OF_ONE)
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(statement, {"id": fresh[0]}, prepare=True)
                return _split_snapshots(curs.fetchall())
        statement = self._with_snapshots(snapshots_table, _SNAPSHOTS_AND_EVENTS_OF)
        # Named, so that the ids, used twice, are sent once.
        params = {"fresh": fresh, "known": [i for i, _ in known], "versions": [v for _, v in known]}
        if len(ids) <= _FEW_READS:
            with self.datastore.get_connection() as conn, conn.cursor() as curs:
                curs.execute(statement, params, prepare=True)
                return _split_snapshots(curs.fetchall())
        with self.datastore.transaction(commit=False) as curs:
            # As in _events_after: estimates of the per-aggregate scans made PostgreSQL
            # compile the statement (JIT), which took longer than running it.
            curs.execute("SET LOCAL jit = off")
            curs.execute(statement, params, prepare=True)
            return _split_snapshots(curs.fetchall())

    def _with_snapshots(self, snapshots_table: str, text: str) -> Composed:
        """``text`` with the snapshots and events tables named (made once per table and text)."""
        statement = self._snapshot_statements.get((snapshots_table, text))
        if statement is None:
            statement = self._snapshot_statements[snapshots_table, text] = SQL(text).format(
                snapshots=Identifier(self.datastore.schema, snapshots_table),
                events=Identifier(self.datastore.schema, self.events_table_name),
            )
        return statement

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def notifications_between(
        self, first: int, last: int, event_types: Collection[str] | None = None
    ) -> list[Notification]:
        """The notifications ``first`` to ``last``; of these kinds (``Aggregate.Event``) only, if given.

        The database leaves out the other kinds, so they are neither sent nor
        turned into objects here.
        """
        with self.datastore.get_connection() as conn, conn.cursor(row_factory=tuple_row) as curs:
            if event_types is None:
                curs.execute(self._between_statement, (first, last), prepare=True)
            else:
                curs.execute(self._between_of_kinds_statement, (first, last, list(event_types)), prepare=True)
            return _notifications(curs.fetchall())

    @retry((InterfaceError, OperationalError), max_attempts=10, wait=0.2)
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        """Saves events (with the tracking record and any key to shred) in one transaction.

        Unlike the library's insert this sends no pipeline (psycopg's pipeline
        can hang on a statement of several megabytes: psycopg/psycopg#685) and
        writes a batch's events with a binary ``COPY`` (a few events with one
        ``INSERT``) instead of an array of composite values that psycopg
        builds in Python. The table is locked first, as the library does, so
        notification ids follow commit order; the ids this transaction got are
        read back in the events' order.
        """
        ids: list[int] = []
        if 0 < len(stored_events) <= _FEW_EVENTS and not kwargs.get("tracking") and not kwargs.get("shred"):
            return self._insert_few_in_one_round_trip(stored_events)
        with self.datastore.transaction(commit=True) as curs:
            self._insert_events(curs, stored_events, **kwargs)
            if not stored_events:
                return ids
            curs.execute(self._lock_and_notify_statement)  # one round trip, no parameters
            if len(stored_events) <= _FEW_EVENTS:
                ids = self._insert_few(curs, stored_events)
            else:
                ids = self._copy_many(curs, stored_events)
            _expect_ids(ids, stored_events)  # inside the transaction: a mismatch rolls it back
        return ids

    def _insert_few(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> list[int]:
        # A few events (an API command): one INSERT, whose RETURNING gives the ids in row order.
        values = ", ".join(["(%s, %s, %s, %s)"] * len(stored_events))
        curs.execute(
            self._insert_values_statement + SQL(values) + SQL(" RETURNING notification_id"),
            [v for e in stored_events for v in (e.originator_id, e.originator_version, e.topic, e.state)],
        )
        return [row["notification_id"] for row in curs.fetchall()]

    def _insert_few_in_one_round_trip(self, stored_events: Sequence[StoredEvent]) -> list[int]:
        """A few events and nothing else (an API command, an access record): one round trip.

        BEGIN, the lock, NOTIFY, the INSERT and COMMIT go as one simple query,
        values as literals quoted by psycopg: four round trips fewer than a
        transaction of separate statements, and the table lock is held for no
        round trip to this process. If a statement fails, the rest are not run,
        and the transaction is rolled back here before the connection goes back
        to the pool.
        """
        statement = self._one_round_trip(stored_events)
        ids: list[int] = []
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            try:
                curs.execute(statement)
            except psycopg.Error:
                # The statements after the failed one did not run: end the transaction here
                # (a version conflict raises IntegrityError, as the library's insert does).
                with contextlib.suppress(psycopg.Error):
                    conn.execute("ROLLBACK")
                raise
            while True:  # a result per statement; the INSERT's has the ids
                if curs.description is not None and curs.description[0].name == "notification_id":
                    ids = [row["notification_id"] for row in curs.fetchall()]
                if not curs.nextset():
                    break
        _expect_ids(ids, stored_events)
        return ids

    def _one_round_trip(self, stored_events: Sequence[StoredEvent]) -> Composed:
        """BEGIN, the lock, NOTIFY, the INSERT of these events returning their ids, COMMIT."""
        rows = SQL(", ").join(
            SQL("({}, {}, {}, {})").format(
                Literal(e.originator_id), Literal(e.originator_version), Literal(e.topic), Literal(e.state)
            )
            for e in stored_events
        )
        return SQL("BEGIN; {lock}; {insert}{rows} RETURNING notification_id; COMMIT").format(
            lock=self._lock_and_notify_statement, insert=self._insert_values_statement, rows=rows
        )

    async def connect_async(self) -> psycopg.AsyncConnection[Any]:
        """An asyncio connection to the store's database, for :meth:`insert_async` (autocommit)."""
        given = self.datastore.pool.kwargs
        kwargs = given() if callable(given) else given or {}
        return await psycopg.AsyncConnection.connect(
            dbname=kwargs["dbname"],
            host=kwargs["host"],
            port=kwargs["port"],
            user=kwargs["user"],
            password=kwargs["password"],
            connect_timeout=max(1, round(self.datastore.pool.timeout)),
            autocommit=True,
            application_name=ASYNC_APPLICATION_NAME,
            **{key: kwargs[key] for key in KEEPALIVE_PARAMETERS if key in kwargs},
        )

    async def insert_async(
        self, conn: psycopg.AsyncConnection[Any], stored_events: Sequence[StoredEvent]
    ) -> list[int]:
        """Inserts these events in one round trip on an asyncio connection; their notification ids.

        As :meth:`insert_events` does for a few events with nothing else (no
        tracking record, no key to shred): for an asyncio server's access
        records, whose loop serves other requests meanwhile. Raises what
        psycopg raises: a version conflict ``psycopg.IntegrityError``, a lost
        connection ``psycopg.OperationalError``.
        """
        if not stored_events:
            return []
        statement = self._one_round_trip(stored_events)
        ids: list[int] = []
        async with conn.cursor(row_factory=tuple_row) as curs:
            try:
                await curs.execute(statement)
            except psycopg.Error:
                with contextlib.suppress(psycopg.Error):
                    await conn.execute("ROLLBACK")
                raise
            while True:
                if curs.description is not None and curs.description[0].name == "notification_id":
                    ids = [row[0] for row in await curs.fetchall()]
                if not curs.nextset():
                    break
        _expect_ids(ids, stored_events)
        return ids

    def _copy_many(self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent]) -> list[int]:
        curs.execute(self.max_notification_id_statement)
        row = curs.fetchone()
        before = (row["max"] if row else None) or 0
        with curs.copy(self._copy_events_statement) as copy:
            copy.set_types(["uuid", "int8", "text", "bytea"])
            for event in stored_events:
                copy.write_row((event.originator_id, event.originator_version, event.topic, event.state))
        curs.execute(self._ids_after_statement, (before,))
        return [r["notification_id"] for r in curs.fetchall()]

    def _insert_events(
        self, curs: Cursor[DictRow], stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> None:
        shred: Sequence[tuple[UUID, int]] = kwargs.get("shred") or ()
        for subject_id, generation in shred:
            curs.execute(self.shred_statement, (subject_id, generation), prepare=True)
        super()._insert_events(curs, stored_events, **kwargs)


SQLITE_KEYS_DDL = (
    f"CREATE TABLE IF NOT EXISTS {KEYS_TABLE} ("
    "subject_id TEXT NOT NULL, "
    "generation INTEGER NOT NULL, "
    "wrapped_key BLOB, "
    "created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), "
    "destroyed_at TEXT, "
    "PRIMARY KEY (subject_id, generation))"
)
SQLITE_SHRED = (
    f"INSERT INTO {KEYS_TABLE} (subject_id, generation, wrapped_key, destroyed_at) "
    "VALUES (?, ?, NULL, strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) "
    "ON CONFLICT (subject_id, generation) DO UPDATE "
    f"SET wrapped_key = NULL, destroyed_at = COALESCE({KEYS_TABLE}.destroyed_at, excluded.destroyed_at)"
)


def _sqlite_events_of(
    c: SQLiteCursor, table: str, ids: Sequence[UUID], topics: Sequence[str] | None = None
) -> Iterator[StoredEvent]:
    """The rows of these aggregates in a SQLite events table, by aggregate and version (of ``topics``)."""
    of_topics = "" if topics is None else f" AND topic IN ({','.join('?' * len(topics))})"
    for start in range(0, len(ids), 500):
        chunk = [i.hex for i in ids[start : start + 500]]
        marks = ",".join("?" * len(chunk))
        c.execute(
            "SELECT originator_id, originator_version, topic, state "
            f"FROM {table} WHERE originator_id IN ({marks}){of_topics} "
            "ORDER BY originator_id, originator_version",
            [*chunk, *(topics or ())],
        )
        for row in c.fetchall():
            yield StoredEvent(
                originator_id=UUID(row["originator_id"]),
                originator_version=row["originator_version"],
                topic=row["topic"],
                state=bytes(row["state"]),
            )


class KirokuSQLiteRecorder(FollowingSQLiteTracking, SQLiteProcessRecorder):
    """SQLite process recorder with the subject key table."""

    def __init__(self, datastore: SQLiteDatastore, *, events_table_name: str = "stored_events") -> None:
        super().__init__(datastore, events_table_name=events_table_name)

    def construct_create_table_statements(self) -> list[str]:
        return [*super().construct_create_table_statements(), SQLITE_KEYS_DDL]

    def notifications_between(
        self, first: int, last: int, event_types: Collection[str] | None = None
    ) -> list[Notification]:
        """The notifications ``first`` to ``last``; of these kinds (``Aggregate.Event``) only, if given."""
        found = self.select_notifications(start=first, limit=last - first + 1, stop=last)
        if event_types is None:
            return list(found)
        return [n for n in found if event_type_of(n.topic) in event_types]

    def events_of(
        self, ids: Sequence[UUID], after: Sequence[int] | None = None, *, topics: Sequence[str] | None = None
    ) -> list[StoredEvent]:
        """Every event of these aggregates, ordered by aggregate and version (later than ``after``'s).

        ``topics``, if given: only the events of those topics (not with ``after``).
        """
        if topics is not None and after is not None:
            raise ValueError("events of some topics are read whole, not after a version")
        with self.datastore.transaction(commit=False) as c:
            events = list(_sqlite_events_of(c, self.events_table_name, ids, topics))
        if after is not None:
            known: dict[UUID | str, int] = dict(zip(ids, after, strict=True))
            events = [e for e in events if e.originator_version > known[e.originator_id]]
        return events

    def _insert_events(
        self, c: SQLiteCursor, stored_events: Sequence[StoredEvent], **kwargs: Any
    ) -> Sequence[int] | None:
        shred: Sequence[tuple[UUID, int]] = kwargs.get("shred") or ()
        for subject_id, generation in shred:
            c.execute(SQLITE_SHRED, (subject_id.hex, generation))
        return super()._insert_events(c, stored_events, **kwargs)


class KirokuSQLiteSnapshotRecorder(SQLiteAggregateRecorder):
    """The snapshots table (the library's), read for many aggregates at once."""

    def latest_of(self, ids: Sequence[UUID]) -> list[StoredEvent]:
        """The latest snapshot of each of these aggregates that has one."""
        latest: dict[UUID | str, StoredEvent] = {}
        with self.datastore.transaction(commit=False) as c:
            for snapshot in _sqlite_events_of(c, self.events_table_name, ids):
                latest[snapshot.originator_id] = snapshot  # ordered by version: the last one stays
        return list(latest.values())
