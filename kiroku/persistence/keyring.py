"""Per-subject data keys in the event store's database, wrapped under a master key.

A data key is 256 random bits, stored encrypted (AES-256-GCM) under the
deployment's master key and bound to its subject and generation. Destroying a
key sets the wrapped key to NULL (see :mod:`kiroku.persistence.recorders`);
nothing can recreate it, so every value sealed under it is unreadable for good.
Keys are not cached across calls: a key destroyed by another process is gone
for this one at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from psycopg.sql import SQL

from domain.errors import PersonalDataErased
from kiroku.persistence.recorders import (
    KEYS_TABLE,
    KirokuPostgresRecorder,
    KirokuSQLiteRecorder,
    postgres_keys_table,
)

_NONCE = 12


class KeyStoreError(Exception):
    """Raised when a stored key cannot be unwrapped (wrong master key or tampering)."""


class _Wrapper:
    def __init__(self, master_key: bytes) -> None:
        if len(master_key) != 32:
            raise ValueError("the master key must be 32 bytes")
        self._aes = AESGCM(master_key)

    @staticmethod
    def _aad(subject_id: UUID, generation: int) -> bytes:
        return b"kiroku.key" + subject_id.bytes + generation.to_bytes(4, "big")

    def wrap(self, subject_id: UUID, generation: int, key: bytes) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._aes.encrypt(nonce, key, self._aad(subject_id, generation))

    def unwrap(self, subject_id: UUID, generation: int, wrapped: bytes) -> bytes:
        try:
            return self._aes.decrypt(wrapped[:_NONCE], wrapped[_NONCE:], self._aad(subject_id, generation))
        except InvalidTag:
            raise KeyStoreError(
                f"key of subject {subject_id} (generation {generation}) cannot be unwrapped: "
                "wrong master key or tampered key table"
            ) from None


class PostgresKeyRing:
    """Keys in ``kiroku_subject_keys`` on PostgreSQL."""

    def __init__(self, datastore: PostgresDatastore, master_key: bytes) -> None:
        self.datastore = datastore
        self.wrapper = _Wrapper(master_key)
        table = postgres_keys_table(datastore.schema)
        self._select_one = SQL(
            "SELECT wrapped_key, destroyed_at FROM {t} WHERE subject_id = %s AND generation = %s"
        ).format(t=table)
        self._insert = SQL(
            "INSERT INTO {t} (subject_id, generation, wrapped_key) VALUES (%s, %s, %s) "
            "ON CONFLICT (subject_id, generation) DO NOTHING"
        ).format(t=table)
        self._select_many = SQL(
            "SELECT subject_id, generation, wrapped_key FROM {t} WHERE subject_id = ANY(%s)"
        ).format(t=table)

    def key_for(self, subject_id: UUID, generation: int) -> bytes:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._select_one, (subject_id, generation))
            row = curs.fetchone()
            if row is None:
                key = AESGCM.generate_key(256)
                curs.execute(
                    self._insert, (subject_id, generation, self.wrapper.wrap(subject_id, generation, key))
                )
                curs.execute(self._select_one, (subject_id, generation))
                row = curs.fetchone()
        assert row is not None
        if row["wrapped_key"] is None:
            raise PersonalDataErased(f"the key of subject {subject_id} generation {generation} was destroyed")
        return self.wrapper.unwrap(subject_id, generation, bytes(row["wrapped_key"]))

    def keys_for(self, pairs: Iterable[tuple[UUID, int]]) -> Mapping[tuple[UUID, int], bytes | None]:
        wanted = set(pairs)
        if not wanted:
            return {}
        with self.datastore.transaction(commit=False) as curs:
            curs.execute(self._select_many, (sorted({s for s, _ in wanted}, key=str),))
            rows = curs.fetchall()
        found: dict[tuple[UUID, int], bytes | None] = dict.fromkeys(wanted)
        for row in rows:
            pair = (row["subject_id"], row["generation"])
            if pair in wanted and row["wrapped_key"] is not None:
                found[pair] = self.wrapper.unwrap(pair[0], pair[1], bytes(row["wrapped_key"]))
        return found


class SQLiteKeyRing:
    """Keys in ``kiroku_subject_keys`` on SQLite."""

    def __init__(self, datastore: SQLiteDatastore, master_key: bytes) -> None:
        self.datastore = datastore
        self.wrapper = _Wrapper(master_key)

    def key_for(self, subject_id: UUID, generation: int) -> bytes:
        select = f"SELECT wrapped_key, destroyed_at FROM {KEYS_TABLE} WHERE subject_id = ? AND generation = ?"
        with self.datastore.transaction(commit=True) as c:
            c.execute(select, (subject_id.hex, generation))
            row = c.fetchone()
            if row is None:
                key = AESGCM.generate_key(256)
                c.execute(
                    f"INSERT INTO {KEYS_TABLE} (subject_id, generation, wrapped_key) VALUES (?, ?, ?) "
                    "ON CONFLICT (subject_id, generation) DO NOTHING",
                    (subject_id.hex, generation, self.wrapper.wrap(subject_id, generation, key)),
                )
                c.execute(select, (subject_id.hex, generation))
                row = c.fetchone()
        assert row is not None
        if row["wrapped_key"] is None:
            raise PersonalDataErased(f"the key of subject {subject_id} generation {generation} was destroyed")
        return self.wrapper.unwrap(subject_id, generation, bytes(row["wrapped_key"]))

    def keys_for(self, pairs: Iterable[tuple[UUID, int]]) -> Mapping[tuple[UUID, int], bytes | None]:
        wanted = set(pairs)
        found: dict[tuple[UUID, int], bytes | None] = dict.fromkeys(wanted)
        if not wanted:
            return found
        subjects = sorted({s.hex for s, _ in wanted})
        marks = ",".join("?" * len(subjects))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT subject_id, generation, wrapped_key FROM {KEYS_TABLE} WHERE subject_id IN ({marks})",
                subjects,
            )
            rows = c.fetchall()
        for row in rows:
            pair = (UUID(row["subject_id"]), int(row["generation"]))
            if pair in wanted and row["wrapped_key"] is not None:
                found[pair] = self.wrapper.unwrap(pair[0], pair[1], bytes(row["wrapped_key"]))
        return found


def keyring_for(recorder: ApplicationRecorder, master_key: bytes) -> PostgresKeyRing | SQLiteKeyRing:
    """The key ring that lives beside the given recorder's events."""
    if isinstance(recorder, KirokuPostgresRecorder):
        return PostgresKeyRing(recorder.datastore, master_key)
    if isinstance(recorder, KirokuSQLiteRecorder):
        return SQLiteKeyRing(recorder.datastore, master_key)
    raise TypeError(f"no key ring for recorder {type(recorder).__name__}")
