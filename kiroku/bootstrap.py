"""The one place that wires kiroku together from its settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import psycopg
from psycopg import sql

from domain.application import Ledger
from kiroku.persistence.keyring import keyring_for
from kiroku.settings import Settings


class StoreUnavailable(Exception):
    """Raised when the event store's database cannot be reached or prepared."""


def _prepare_postgres(settings: Settings) -> None:
    db = settings.database
    try:
        with psycopg.connect(
            host=db.host,
            port=db.port,
            dbname=db.dbname,
            user=db.user,
            password=db.password,
            connect_timeout=5,
            autocommit=True,
        ) as conn:
            if db.schema:
                conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(db.schema)))
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
    return Ledger(
        settings.database.eventsourcing_env(),
        keyring_factory=lambda recorder: keyring_for(recorder, master_key),
        subject_id_secret=settings.pseudonym_key,
        clock=clock or (lambda: datetime.now(UTC)),
    )
