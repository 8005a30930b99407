"""The one place that wires kiroku together from its settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from domain.application import Ledger
from kiroku.persistence.ddl_lock import ddl_lock
from kiroku.persistence.keyring import keyring_for
from kiroku.persistence.live import keepalive
from kiroku.settings import Settings


class StoreUnavailable(Exception):
    """Raised when the event store's database cannot be reached or prepared."""


def _unreachable(settings: Settings, exc: Exception) -> StoreUnavailable:
    return StoreUnavailable(f"cannot reach {settings.database.describe()}: {exc.__class__.__name__}")


def _connect(settings: Settings) -> psycopg.Connection[Any]:
    """An autocommit connection to the store's database; StoreUnavailable if it cannot be reached."""
    db = settings.database
    try:
        return psycopg.connect(
            host=db.host,
            port=db.port,
            dbname=db.dbname,
            user=db.user,
            password=db.password,
            connect_timeout=5,
            autocommit=True,
            **keepalive(db.dead_after_s),
        )
    except psycopg.OperationalError as exc:
        raise _unreachable(settings, exc) from exc


def build_ledger(settings: Settings, *, clock: Callable[[], datetime] | None = None) -> Ledger:
    """A :class:`Ledger` on the configured event store, tables created if missing."""
    master_key = settings.master_key

    def ledger() -> Ledger:
        return Ledger(
            settings.database.eventsourcing_env(),
            keyring_factory=lambda recorder: keyring_for(recorder, master_key),
            subject_id_secret=settings.pseudonym_key,
            clock=clock or (lambda: datetime.now(UTC)),
        )

    db = settings.database
    if db.backend != "postgres":
        assert db.sqlite_path is not None
        db.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
        return ledger()
    # The schema and tables are created one process at a time (the API's workers start together).
    with _connect(settings) as conn, ddl_lock(conn, db.schema or "public"):
        if db.schema:
            try:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db.schema)))
            except psycopg.OperationalError as exc:
                raise _unreachable(settings, exc) from exc
        return ledger()
