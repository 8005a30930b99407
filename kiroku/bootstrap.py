"""The one place that wires kiroku together from its settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from domain.application import Ledger
from kiroku.persistence.ddl_lock import ddl_lock, ddl_lock_key
from kiroku.persistence.keyring import keyring_for
from kiroku.settings import Settings


class StoreUnavailable(Exception):
    """Raised when the event store's database cannot be reached or prepared."""


def _connect_arguments(settings: Settings) -> dict[str, Any]:
    db = settings.database
    return {
        "host": db.host,
        "port": db.port,
        "dbname": db.dbname,
        "user": db.user,
        "password": db.password,
        "connect_timeout": 5,
    }


def _prepare_postgres(settings: Settings) -> None:
    db = settings.database
    try:
        with psycopg.connect(**_connect_arguments(settings), autocommit=True) as conn:
            if db.schema:
                # Under the schema's table-creation lock: CREATE SCHEMA IF NOT EXISTS races too.
                conn.execute("SELECT pg_advisory_lock(%s)", (ddl_lock_key(db.schema),))
                try:
                    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db.schema)))
                finally:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (ddl_lock_key(db.schema),))
    except psycopg.OperationalError as exc:
        raise StoreUnavailable(f"cannot reach {db.describe()}: {exc.__class__.__name__}") from exc


def build_ledger(settings: Settings, *, clock: Callable[[], datetime] | None = None) -> Ledger:
    """A :class:`Ledger` on the configured event store, tables created if missing."""
    if settings.database.backend == "postgres":
        _prepare_postgres(settings)
    else:
        assert settings.database.sqlite_path is not None
        settings.database.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    master_key = settings.master_key

    def ledger() -> Ledger:
        return Ledger(
            settings.database.eventsourcing_env(),
            keyring_factory=lambda recorder: keyring_for(recorder, master_key),
            subject_id_secret=settings.pseudonym_key,
            clock=clock or (lambda: datetime.now(UTC)),
        )

    if settings.database.backend != "postgres":
        return ledger()
    # Creating the tables: one process at a time (the API's workers start together).
    with ddl_lock(_connect_arguments(settings), settings.database.schema or "public"):
        return ledger()
