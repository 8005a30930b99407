"""A small, shared way to declare view tables and write rows on PostgreSQL and SQLite.

Views write through a :class:`Writer` bound to one transaction; it speaks the
backend's parameter style. Column types are few on purpose: ``text`` (ids,
JSON, and times as fixed-width UTC strings, so they sort), ``int`` and
``bool``. Table and column names are constants of the view definitions, never
input; values are always bound parameters.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


#: Times already written out: every view writes the same event's times (a dict keyed
#: by datetime hashes and compares in C, cheaper than formatting again).
_UTC_TEXTS: dict[datetime, str] = {}
_UTC_TEXTS_MAX = 50_000


def utc_text(moment: datetime | None) -> str | None:
    """A time as a fixed-width UTC string (``TIME_FORMAT``), so text order is time order."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    text = _UTC_TEXTS.get(moment)
    if text is None:
        # isoformat is several times faster than strftime; the text is the same.
        text = moment.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
        if len(_UTC_TEXTS) >= _UTC_TEXTS_MAX:
            _UTC_TEXTS.clear()
        _UTC_TEXTS[moment] = text
    return text


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def id_text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Rows:
    """One column of the rows of a table that match, for a condition ``(column, "in_any", [Rows, ...])``."""

    table: str
    column: str
    where: Mapping[str, Any]
    conditions: Sequence[tuple[str, str, Any]] = ()


@dataclass(frozen=True)
class Table:
    """A view table: columns (name, type), primary key and extra indexes."""

    name: str
    columns: Sequence[tuple[str, str]]
    primary_key: Sequence[str]
    indexes: Sequence[Sequence[str]] = field(default_factory=tuple)


class Dialect(Protocol):
    name: str
    placeholder: str
    types: Mapping[str, str]

    def insert_many(self, cursor: Any, table: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
        """Inserts rows, in order, in as few round trips as the backend allows."""

    def upsert_many(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        rows: list[list[Any]],
        *,
        kinds: Sequence[str],
        key: Sequence[str],
    ) -> None:
        """Inserts or updates rows, in order (for one key, the last row wins); ``kinds``: the column types."""

    def delete_many(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        matches: list[list[Any]],
        *,
        kinds: Sequence[str],
    ) -> None:
        """Deletes the rows whose ``columns`` equal one of the ``matches`` (NULL matches nothing)."""

    def update_many(
        self,
        cursor: Any,
        table: str,
        key: Sequence[str],
        columns: Sequence[str],
        rows: list[list[Any]],
        *,
        kinds: Sequence[str],
    ) -> None:
        """Sets ``columns`` of the row each of ``rows`` names: its ``key`` values, then the new ones."""


def _upsert_statement(table: str, columns: Sequence[str], key: Sequence[str], source: str) -> str:
    """``source`` is ``VALUES (...)`` or a ``SELECT`` giving the columns in order."""
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in key) or (
        f"{key[0]} = excluded.{key[0]}"
    )
    return (
        f"INSERT INTO {table} ({', '.join(columns)}) {source} "
        f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}"
    )


class PostgresDialect:
    name = "postgres"
    placeholder = "%s"
    types: Mapping[str, str] = {"text": "text", "int": "bigint", "bool": "boolean"}

    def insert_many(self, cursor: Any, table: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
        # COPY: one statement and a stream of rows, each written by psycopg's C code.
        with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def upsert_many(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        rows: list[list[Any]],
        *,
        kinds: Sequence[str],
        key: Sequence[str],
    ) -> None:
        # One statement may not touch a row twice: keep each key's last row, in first-seen order.
        positions = [columns.index(k) for k in key]
        last: dict[tuple[Any, ...], list[Any]] = {}
        for row in rows:
            last[tuple(row[i] for i in positions)] = row
        statement = _upsert_statement(table, columns, key, f"SELECT * FROM {self._unnest(kinds)}")
        cursor.execute(statement, self._arrays(list(last.values()), len(columns)))

    def delete_many(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        matches: list[list[Any]],
        *,
        kinds: Sequence[str],
    ) -> None:
        cursor.execute(
            f"DELETE FROM {table} WHERE ({', '.join(columns)}) IN (SELECT * FROM {self._unnest(kinds)})",
            self._arrays(matches, len(columns)),
        )

    def update_many(
        self,
        cursor: Any,
        table: str,
        key: Sequence[str],
        columns: Sequence[str],
        rows: list[list[Any]],
        *,
        kinds: Sequence[str],
    ) -> None:
        names = [*key, *columns]
        sets = ", ".join(f"{c} = v.{c}" for c in columns)
        match = " AND ".join(f"t.{k} = v.{k}" for k in key)
        source = f"{self._unnest(kinds)} AS v ({', '.join(names)})"
        cursor.execute(
            f"UPDATE {table} AS t SET {sets} FROM {source} WHERE {match}", self._arrays(rows, len(names))
        )

    # The rows go as one array per column, unnested by the server: a short statement
    # whatever the number of rows, parsed and planned once (psycopg caches and prepares
    # it). A multi-row VALUES list was parsed again by psycopg for every page.
    def _unnest(self, kinds: Sequence[str]) -> str:
        return f"unnest({', '.join(f'%b::{self.types[k]}[]' for k in kinds)})"

    @staticmethod
    def _arrays(rows: list[list[Any]], width: int) -> list[list[Any]]:
        return [list(column) for column in zip(*rows, strict=True)] if rows else [[] for _ in range(width)]


class SQLiteDialect:
    name = "sqlite"
    placeholder = "?"
    types: Mapping[str, str] = {"text": "TEXT", "int": "INTEGER", "bool": "INTEGER"}

    def insert_many(self, cursor: Any, table: str, columns: Sequence[str], rows: list[list[Any]]) -> None:
        marks = ", ".join("?" * len(columns))
        cursor.executemany(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)

    def upsert_many(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        rows: list[list[Any]],
        *,
        kinds: Sequence[str],  # noqa: ARG002 - SQLite binds each row; it needs no types
        key: Sequence[str],
    ) -> None:
        marks = f"VALUES ({', '.join('?' * len(columns))})"
        cursor.executemany(_upsert_statement(table, columns, key, marks), rows)

    def delete_many(
        self,
        cursor: Any,
        table: str,
        columns: Sequence[str],
        matches: list[list[Any]],
        *,
        kinds: Sequence[str],  # noqa: ARG002 - SQLite binds each row; it needs no types
    ) -> None:
        condition = " AND ".join(f"{column} = ?" for column in columns)
        cursor.executemany(f"DELETE FROM {table} WHERE {condition}", matches)

    def update_many(
        self,
        cursor: Any,
        table: str,
        key: Sequence[str],
        columns: Sequence[str],
        rows: list[list[Any]],
        *,
        kinds: Sequence[str],  # noqa: ARG002 - SQLite binds each row; it needs no types
    ) -> None:
        sets = ", ".join(f"{c} = ?" for c in columns)
        condition = " AND ".join(f"{k} = ?" for k in key)
        width = len(key)
        cursor.executemany(
            f"UPDATE {table} SET {sets} WHERE {condition}", [[*r[width:], *r[:width]] for r in rows]
        )


def create_statements(table: Table, full_name: str, bare_name: str, dialect: Dialect) -> list[str]:
    """DDL for a table; ``bare_name`` (unqualified) names its indexes, which live in its schema."""
    columns = ", ".join(f"{name} {dialect.types[kind]}" for name, kind in table.columns)
    statements = [
        f"CREATE TABLE IF NOT EXISTS {full_name} ({columns}, PRIMARY KEY ({', '.join(table.primary_key)}))"
    ]
    for number, index in enumerate(table.indexes):
        statements.append(
            f"CREATE INDEX IF NOT EXISTS {bare_name}_i{number} ON {full_name} ({', '.join(index)})"
        )
    return statements


class Cursor(Protocol):
    def execute(self, statement: Any, params: Any = ...) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Any: ...


@dataclass
class _Pending:
    """Rows waiting to be written to one table with one statement shape."""

    action: str  # "insert", "upsert" or "delete" (rows are then the values of ``columns`` to match)
    columns: tuple[str, ...]
    key: tuple[str, ...]
    rows: list[list[Any]] = field(default_factory=list)
    #: Held inserted rows by primary key, made when an update first looks for one.
    by_key: dict[tuple[Any, ...], list[Any]] | None = None
    key_columns: tuple[int, ...] = ()

    def held(self, primary_key: Sequence[str], where: Mapping[str, Any]) -> list[Any] | None:
        """The held row with this primary key, if any."""
        if self.by_key is None:
            self.key_columns = tuple(self.columns.index(k) for k in primary_key)
            self.by_key = {tuple(row[i] for i in self.key_columns): row for row in self.rows}
        return self.by_key.get(tuple(where[k] for k in primary_key))

    def append(self, row: list[Any]) -> None:
        self.rows.append(row)
        if self.by_key is not None:
            self.by_key[tuple(row[i] for i in self.key_columns)] = row


@dataclass
class _ByKey:
    """Whole-row upserts and deletes of one table by its primary key: the last one of each key.

    Rows of different keys do not touch each other, so the held deletes and
    upserts are written in two statements whatever their order. A later upsert
    or delete of a key replaces the one held for it: an upsert writes every
    column, so it leaves the row as a delete and an insert would.
    """

    key: tuple[str, ...]
    columns: tuple[str, ...] | None = None  # the upserts' columns, once one is held
    last: dict[tuple[Any, ...], list[Any] | None] = field(default_factory=dict)  # None: deleted


class Writer:
    """Row operations on the tables of one view generation, inside one transaction.

    A buffered writer (``buffered=True``) holds inserts, upserts, deletes and
    updates of rows named by primary key back and writes them table by table
    in bulk: before any read or other update (so each sees every write before
    it), when a table's next operation has another shape, and at
    :meth:`flush`, which the owner calls before the transaction commits. Each
    row's operations keep their order; those of different rows are
    independent of each other.
    """

    def __init__(
        self,
        cursor: Cursor,
        dialect: Dialect,
        names: Mapping[str, str],
        *,
        buffered: bool = False,
        tables: Sequence[Table] = (),
    ) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self.names = names
        self.buffered = buffered
        self.primary_keys = {t.name: t.primary_key for t in tables}
        self.kinds = {t.name: dict(t.columns) for t in tables}
        self._pending: dict[str, _Pending | _ByKey] = {}
        #: Held updates of rows named by primary key: table -> key -> changes.
        self._updates: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = {}

    def _marks(self, count: int) -> str:
        return ", ".join([self.dialect.placeholder] * count)

    def _where(self, where: Mapping[str, Any]) -> tuple[str, list[Any]]:
        """``where`` as an SQL condition and its parameters, after every held row is written."""
        self.flush()
        return self._equalities(where)

    def _equalities(self, where: Mapping[str, Any]) -> tuple[str, list[Any]]:
        clauses = [f"{column} = {self.dialect.placeholder}" for column in where]
        return " AND ".join(clauses) or "1 = 1", list(where.values())

    def _buffer(self, table: str, row: Mapping[str, Any], action: str, key: Sequence[str]) -> None:
        primary_key = self.primary_keys.get(table) or ()
        updated = self._updates.get(table)
        if updated:  # held updates come after the table's held rows: keep each row's order
            named = bool(primary_key) and all(k in row for k in primary_key)
            if not named or tuple(row[k] for k in primary_key) in updated:
                self._flush_table(table)
        pending = self._pending.get(table)
        if (
            action != "insert"
            and primary_key
            and self._whole_row_by_key(table, row, action, key, primary_key)
        ):
            columns = tuple(row) if action == "upsert" else None
            if not isinstance(pending, _ByKey) or (columns and pending.columns not in {None, columns}):
                if pending is not None:
                    self._write_held(table, pending)
                pending = self._pending[table] = _ByKey(tuple(primary_key))
            if columns:
                pending.columns = columns
            pending.last[tuple(row[k] for k in primary_key)] = list(row.values()) if columns else None
            return
        columns, keys = tuple(row), tuple(key)
        if pending is not None and (
            isinstance(pending, _ByKey)
            or (pending.action, pending.columns, pending.key) != (action, columns, keys)
        ):
            self._write_held(table, pending)
            pending = None
        if pending is None:
            pending = self._pending[table] = _Pending(action, columns, keys)
        pending.append(list(row.values()))

    def _kinds(self, table: str, columns: Sequence[str]) -> list[str]:
        """The declared types of these columns, which bulk statements bind arrays of."""
        return [self.kinds[table][c] for c in columns]

    def _whole_row_by_key(
        self, table: str, row: Mapping[str, Any], action: str, key: Sequence[str], primary_key: Sequence[str]
    ) -> bool:
        """An upsert of every column on the primary key, or a delete that names just the primary key."""
        if action == "upsert":
            return set(key) == set(primary_key) and len(row) == len(self.kinds[table])
        return len(row) == len(primary_key) and set(row) == set(primary_key)

    def _flush_table(self, table: str) -> None:
        """Writes a table's held rows, then its held updates."""
        pending = self._pending.get(table)
        if pending is not None:
            self._write_held(table, pending)
        updated = self._updates.pop(table, None)
        if updated:
            by_columns: dict[tuple[str, ...], list[list[Any]]] = {}
            for values, changes in updated.items():
                columns = tuple(sorted(changes))
                by_columns.setdefault(columns, []).append([*values, *(changes[c] for c in columns)])
            key = tuple(self.primary_keys[table])
            for columns, rows in by_columns.items():
                kinds = self._kinds(table, (*key, *columns))
                self.dialect.update_many(self.cursor, self.names[table], key, columns, rows, kinds=kinds)

    def _write_held(self, table: str, pending: _Pending | _ByKey) -> None:
        del self._pending[table]
        name = self.names[table]
        if isinstance(pending, _ByKey):
            gone = [list(key) for key, row in pending.last.items() if row is None]
            kept = [row for row in pending.last.values() if row is not None]
            if gone:
                kinds = self._kinds(table, pending.key)
                self.dialect.delete_many(self.cursor, name, pending.key, gone, kinds=kinds)
            if kept:
                assert pending.columns is not None
                kinds = self._kinds(table, pending.columns)
                self.dialect.upsert_many(
                    self.cursor, name, pending.columns, kept, kinds=kinds, key=pending.key
                )
            return
        kinds = self._kinds(table, pending.columns) if pending.action != "insert" else []
        if pending.action == "upsert":
            self.dialect.upsert_many(
                self.cursor, name, pending.columns, pending.rows, kinds=kinds, key=pending.key
            )
        elif pending.action == "delete":
            self.dialect.delete_many(self.cursor, name, pending.columns, pending.rows, kinds=kinds)
        else:
            self.dialect.insert_many(self.cursor, name, pending.columns, pending.rows)

    def flush(self) -> None:
        """Writes every held row and update."""
        for table in [*self._pending, *(t for t in self._updates if t not in self._pending)]:
            self._flush_table(table)

    def insert(self, table: str, row: Mapping[str, Any]) -> None:
        if self.buffered:
            self._buffer(table, row, "insert", ())
            return
        columns = ", ".join(row)
        self.cursor.execute(
            f"INSERT INTO {self.names[table]} ({columns}) VALUES ({self._marks(len(row))})",
            list(row.values()),
        )

    def upsert(self, table: str, row: Mapping[str, Any], key: Sequence[str]) -> None:
        if self.buffered:
            self._buffer(table, row, "upsert", key)
            return
        self.cursor.execute(
            _upsert_statement(self.names[table], tuple(row), key, f"VALUES ({self._marks(len(row))})"),
            list(row.values()),
        )

    def update(self, table: str, where: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        if self.buffered and self._hold_update(table, where, changes):
            return
        sets = ", ".join(f"{column} = {self.dialect.placeholder}" for column in changes)
        condition, params = self._where(where)
        self.cursor.execute(
            f"UPDATE {self.names[table]} SET {sets} WHERE {condition}", [*changes.values(), *params]
        )

    def _hold_update(self, table: str, where: Mapping[str, Any], changes: Mapping[str, Any]) -> bool:
        """Holds an update of one row named by its primary key; False if ``where`` is not that.

        A whole row held for that key (an insert, or an upsert of every column)
        is changed in place, so it is written as the update leaves it; a held
        delete leaves nothing to change. Otherwise the update waits until the
        table's held rows are written, and later changes of the same row join it.
        """
        key = self.primary_keys.get(table)
        if not key or set(where) != set(key):
            return False
        values = tuple(where[k] for k in key)
        pending = self._pending.get(table)
        row: list[Any] | None = None
        columns: Sequence[str] = ()
        if isinstance(pending, _ByKey) and changes and values in pending.last:
            row, columns = pending.last[values], pending.columns or ()
            if row is None:
                return True
        elif (
            isinstance(pending, _Pending)
            and pending.action == "insert"
            and set(changes) <= set(pending.columns)
        ):
            row, columns = pending.held(key, where), pending.columns
        if row is not None:
            for column, value in changes.items():
                row[columns.index(column)] = value
            return True
        if not changes:
            return False
        self._updates.setdefault(table, {}).setdefault(values, {}).update(changes)
        return True

    def delete(self, table: str, where: Mapping[str, Any]) -> None:
        if self.buffered and where:
            self._buffer(table, where, "delete", ())
            return
        condition, params = self._where(where)
        self.cursor.execute(f"DELETE FROM {self.names[table]} WHERE {condition}", params)

    def select(
        self,
        table: str,
        where: Mapping[str, Any],
        order_by: str | None = None,
        *,
        conditions: Sequence[tuple[str, str, Any]] = (),
        limit: int | None = None,
    ) -> list[dict[str, Any]]:
        """Rows matching ``where`` (equality) and ``conditions`` (column, operator, value).

        Operators are ``< <= > >=`` and ``in`` (a list). Columns and operators come
        from code, values are bound.
        """
        self.flush()
        query = self.select_statement(table, where, order_by, conditions=conditions, limit=limit)
        if query is None:
            return []
        self.cursor.execute(*query)
        return [dict(row) for row in self.cursor.fetchall()]

    def select_statement(
        self,
        table: str,
        where: Mapping[str, Any],
        order_by: str | None = None,
        *,
        conditions: Sequence[tuple[str, str, Any]] = (),
        limit: int | None = None,
    ) -> tuple[str, list[Any]] | None:
        """The statement and parameters :meth:`select` runs; None when it can match no row.

        A condition is ``(column, operator, value)``: ``in`` a list of values,
        a comparison (``<``, ``<=``, ``>``, ``>=``), or ``in_any`` a list of
        :class:`Rows`: the column's value is in the rows one of them names.
        """
        found = self._conditions(where, conditions)
        if found is None:
            return None
        condition, params = found
        order = f" ORDER BY {order_by}" if order_by else ""
        bounded = f" LIMIT {int(limit)}" if limit is not None else ""
        return f"SELECT * FROM {self.names[table]} WHERE {condition}{order}{bounded}", params

    def _conditions(
        self, where: Mapping[str, Any], conditions: Sequence[tuple[str, str, Any]]
    ) -> tuple[str, list[Any]] | None:
        condition, params = self._equalities(where)
        clauses = [condition]
        for column, operator, value in conditions:
            if operator == "in":
                values = list(value)
                if not values:
                    return None
                clauses.append(f"{column} IN ({self._marks(len(values))})")
                params.extend(values)
            elif operator == "in_any":
                # One IN over a UNION of the sets, not an OR of INs: PostgreSQL plans
                # the OR as a scan of the whole table, the UNION as look-ups by key.
                selects = []
                for rows in value:
                    assert isinstance(rows, Rows)
                    inner = self._conditions(rows.where, rows.conditions)
                    if inner is not None:
                        name = self.names[rows.table]
                        selects.append(f"SELECT {rows.column} FROM {name} WHERE {inner[0]}")
                        params.extend(inner[1])
                if not selects:
                    return None
                clauses.append(f"{column} IN ({' UNION '.join(selects)})")
            elif operator in {"<", "<=", ">", ">="}:
                clauses.append(f"{column} {operator} {self.dialect.placeholder}")
                params.append(value)
            else:
                raise ValueError(f"unsupported operator {operator!r}")
        return " AND ".join(clauses), params

    def select_one(self, table: str, where: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = self.select(table, where)
        return rows[0] if rows else None
