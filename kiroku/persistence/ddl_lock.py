"""One process at a time creates kiroku's tables in a schema.

``CREATE TABLE IF NOT EXISTS`` (and the types and functions beside it) is not
safe to run from two sessions at once: PostgreSQL can fail the second with
"tuple concurrently updated" or a duplicate key in its catalogue. Processes
that start together (the API's workers, ingest beside the view runners) take
this session-level advisory lock while they create tables.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg

from kiroku.persistence.advisory import advisory_key


def _key(schema: str) -> int:
    return advisory_key("kiroku-ddl", schema)


@contextmanager
def ddl_lock(conn: psycopg.Connection[Any], schema: str) -> Iterator[None]:
    """Holds the schema's table-creation lock on ``conn`` (an autocommit connection) for the block."""
    conn.execute("SELECT pg_advisory_lock(%s)", (_key(schema),))
    try:
        yield
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (_key(schema),))
