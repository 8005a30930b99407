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


def utc_text(moment: datetime | None) -> str | None:
    """A time as a fixed-width UTC string, so text order is time order."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime(TIME_FORMAT)


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def id_text(value: UUID | None) -> str | None:
    return None if value is None else str(value)


@dataclass(frozen=True)
class Table:
    """A view table: columns (name, type), primary key and extra indexes."""

    name: str
    columns: Sequence[tuple[str, str]]
    primary_key: Sequence[str]
    indexes: Sequence[Sequence[str]] = field(default_factory=tuple)


class Dialect(Protocol):
    placeholder: str
    types: Mapping[str, str]


class PostgresDialect:
    placeholder = "%s"
    types: Mapping[str, str] = {"text": "text", "int": "bigint", "bool": "boolean"}


class SQLiteDialect:
    placeholder = "?"
    types: Mapping[str, str] = {"text": "TEXT", "int": "INTEGER", "bool": "INTEGER"}


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


class Writer:
    """Row operations on the tables of one view generation, inside one transaction."""

    def __init__(self, cursor: Cursor, dialect: Dialect, names: Mapping[str, str]) -> None:
        self.cursor = cursor
        self.dialect = dialect
        self.names = names

    def _marks(self, count: int) -> str:
        return ", ".join([self.dialect.placeholder] * count)

    def _where(self, where: Mapping[str, Any]) -> tuple[str, list[Any]]:
        clauses = [f"{column} = {self.dialect.placeholder}" for column in where]
        return " AND ".join(clauses) or "1 = 1", list(where.values())

    def insert(self, table: str, row: Mapping[str, Any]) -> None:
        columns = ", ".join(row)
        self.cursor.execute(
            f"INSERT INTO {self.names[table]} ({columns}) VALUES ({self._marks(len(row))})",
            list(row.values()),
        )

    def upsert(self, table: str, row: Mapping[str, Any], key: Sequence[str]) -> None:
        columns = ", ".join(row)
        updates = (
            ", ".join(f"{c} = excluded.{c}" for c in row if c not in key) or f"{key[0]} = excluded.{key[0]}"
        )
        self.cursor.execute(
            f"INSERT INTO {self.names[table]} ({columns}) VALUES ({self._marks(len(row))}) "
            f"ON CONFLICT ({', '.join(key)}) DO UPDATE SET {updates}",
            list(row.values()),
        )

    def update(self, table: str, where: Mapping[str, Any], changes: Mapping[str, Any]) -> None:
        sets = ", ".join(f"{column} = {self.dialect.placeholder}" for column in changes)
        condition, params = self._where(where)
        self.cursor.execute(
            f"UPDATE {self.names[table]} SET {sets} WHERE {condition}", [*changes.values(), *params]
        )

    def delete(self, table: str, where: Mapping[str, Any]) -> None:
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
        condition, params = self._where(where)
        clauses = [condition]
        for column, operator, value in conditions:
            if operator == "in":
                values = list(value)
                if not values:
                    return []
                clauses.append(f"{column} IN ({self._marks(len(values))})")
                params.extend(values)
            elif operator in {"<", "<=", ">", ">="}:
                clauses.append(f"{column} {operator} {self.dialect.placeholder}")
                params.append(value)
            else:
                raise ValueError(f"unsupported operator {operator!r}")
        order = f" ORDER BY {order_by}" if order_by else ""
        bounded = f" LIMIT {int(limit)}" if limit is not None else ""
        self.cursor.execute(
            f"SELECT * FROM {self.names[table]} WHERE {' AND '.join(clauses)}{order}{bounded}", params
        )
        return [dict(row) for row in self.cursor.fetchall()]

    def select_one(self, table: str, where: Mapping[str, Any]) -> dict[str, Any] | None:
        rows = self.select(table, where)
        return rows[0] if rows else None
