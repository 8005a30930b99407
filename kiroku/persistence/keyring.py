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
import threading
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.persistence import ApplicationRecorder
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.sqlite import SQLiteDatastore
from psycopg.sql import SQL

from domain.errors import PersonalDataErased
from domain.identity import uuid_order
from kiroku.persistence.recorders import (
    KEYS_TABLE,
    KirokuPostgresRecorder,
    KirokuSQLiteRecorder,
    postgres_keys_table,
)

_NONCE = 12
_SEALING_CACHE = 50_000


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


class _KeyTable(ABC):
    """The key ring's logic; subclasses say how to read and write the table."""

    def __init__(self, master_key: bytes) -> None:
        self.wrapper = _Wrapper(master_key)
        # Keys used to seal, kept to seal again. Never used to open: a key destroyed
        # by another process must stop every reader at once. Sealing under a key
        # destroyed meanwhile only makes that value unreadable, as erased.
        self._sealing: OrderedDict[tuple[UUID, int], bytes] = OrderedDict()
        self._sealing_lock = threading.Lock()

    @abstractmethod
    def _fetch_or_insert(self, subject_id: UUID, generation: int, wrapped: bytes) -> bytes | None:
        """Inserts ``wrapped`` unless a row exists; returns the row's wrapped key (None if destroyed)."""

    @abstractmethod
    def _fetch_or_insert_many(
        self, candidates: list[tuple[UUID, int, bytes]]
    ) -> list[tuple[UUID, int, bytes | None]]:
        """Inserts each candidate unless its row exists; returns the rows of these pairs."""

    @abstractmethod
    def _fetch_many(self, subject_ids: list[UUID]) -> list[tuple[UUID, int, bytes | None]]:
        """Every (subject, generation, wrapped key) row of these subjects."""

    def key_for(self, subject_id: UUID, generation: int) -> bytes:
        pair = (subject_id, generation)
        with self._sealing_lock:
            cached = self._sealing.get(pair)
            if cached is not None:
                self._sealing.move_to_end(pair)
                return cached
        candidate = self.wrapper.wrap(subject_id, generation, AESGCM.generate_key(256))
        wrapped = self._fetch_or_insert(subject_id, generation, candidate)
        if wrapped is None:
            raise PersonalDataErased(f"the key of subject {subject_id} generation {generation} was destroyed")
        key = self.wrapper.unwrap(subject_id, generation, wrapped)
        with self._sealing_lock:
            self._sealing[pair] = key
            while len(self._sealing) > _SEALING_CACHE:
                self._sealing.popitem(last=False)
        return key

    def prepare(self, pairs: Iterable[tuple[UUID, int]]) -> None:
        with self._sealing_lock:
            # In a stable order, so two writers preparing overlapping keys cannot deadlock.
            missing = sorted(
                {p for p in pairs if p not in self._sealing}, key=lambda p: (uuid_order(p[0]), p[1])
            )
        if not missing:
            return
        candidates = [(s, g, self.wrapper.wrap(s, g, AESGCM.generate_key(256))) for s, g in missing]
        rows = self._fetch_or_insert_many(candidates)
        ready = {(s, g): self.wrapper.unwrap(s, g, wrapped) for s, g, wrapped in rows if wrapped is not None}
        with self._sealing_lock:
            for pair in missing:
                key = ready.get(pair)
                if key is not None:  # a destroyed key stays destroyed; key_for says so
                    self._sealing[pair] = key
            while len(self._sealing) > _SEALING_CACHE:
                self._sealing.popitem(last=False)

    def keys_for(self, pairs: Iterable[tuple[UUID, int]]) -> Mapping[tuple[UUID, int], bytes | None]:
        wanted = set(pairs)
        found: dict[tuple[UUID, int], bytes | None] = dict.fromkeys(wanted)
        if not wanted:
            return found
        subject_ids = sorted({s for s, _ in wanted}, key=uuid_order)
        for subject_id, generation, wrapped in self._fetch_many(subject_ids):
            if (subject_id, generation) in wanted and wrapped is not None:
                found[(subject_id, generation)] = self.wrapper.unwrap(subject_id, generation, wrapped)
        return found


class PostgresKeyRing(_KeyTable):
    """Keys in ``kiroku_subject_keys`` on PostgreSQL."""

    def __init__(self, datastore: PostgresDatastore, master_key: bytes) -> None:
        super().__init__(master_key)
        self.datastore = datastore
        table = postgres_keys_table(datastore.schema)
        self._select_one = SQL(
            "SELECT wrapped_key FROM {t} WHERE subject_id = %s AND generation = %s"
        ).format(t=table)
        self._insert = SQL(
            "INSERT INTO {t} (subject_id, generation, wrapped_key) VALUES (%s, %s, %s) "
            "ON CONFLICT (subject_id, generation) DO NOTHING"
        ).format(t=table)
        # Every candidate in one statement (in the order given, so that two writers
        # inserting overlapping keys take their row locks in one order).
        self._insert_many = SQL(
            "INSERT INTO {t} (subject_id, generation, wrapped_key) "
            "SELECT * FROM unnest(%b::uuid[], %b::integer[], %b::bytea[]) "
            "ON CONFLICT (subject_id, generation) DO NOTHING"
        ).format(t=table)
        self._select_many = SQL(
            "SELECT subject_id, generation, wrapped_key FROM {t} WHERE subject_id = ANY(%b::uuid[])"
        ).format(t=table)
        self._select_pairs = SQL(
            "SELECT k.subject_id, k.generation, k.wrapped_key FROM {t} k "
            "JOIN unnest(%b::uuid[], %b::integer[]) AS w(subject_id, generation) "
            "USING (subject_id, generation)"
        ).format(t=table)

    def _fetch_or_insert(self, subject_id: UUID, generation: int, wrapped: bytes) -> bytes | None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._insert, (subject_id, generation, wrapped))
            # Read committed: this sees our row, or the row of whoever inserted first.
            curs.execute(self._select_one, (subject_id, generation))
            row = curs.fetchone()
        assert row is not None
        return None if row["wrapped_key"] is None else bytes(row["wrapped_key"])

    def _fetch_or_insert_many(
        self, candidates: list[tuple[UUID, int, bytes]]
    ) -> list[tuple[UUID, int, bytes | None]]:
        ids = [c[0] for c in candidates]
        generations = [c[1] for c in candidates]
        with self.datastore.transaction(commit=True) as curs:
            curs.execute(self._insert_many, (ids, generations, [c[2] for c in candidates]))
            # A statement of its own (read committed): it sees the rows of whoever inserted first.
            curs.execute(self._select_pairs, (ids, generations))
            rows = curs.fetchall()
        return [
            (r["subject_id"], r["generation"], None if r["wrapped_key"] is None else bytes(r["wrapped_key"]))
            for r in rows
        ]

    def _fetch_many(self, subject_ids: list[UUID]) -> list[tuple[UUID, int, bytes | None]]:
        # One statement, no transaction around it: one round trip for every reader.
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(self._select_many, (subject_ids,))
            rows = curs.fetchall()
        return [
            (r["subject_id"], r["generation"], None if r["wrapped_key"] is None else bytes(r["wrapped_key"]))
            for r in rows
        ]


class SQLiteKeyRing(_KeyTable):
    """Keys in ``kiroku_subject_keys`` on SQLite."""

    def __init__(self, datastore: SQLiteDatastore, master_key: bytes) -> None:
        super().__init__(master_key)
        self.datastore = datastore

    def _fetch_or_insert(self, subject_id: UUID, generation: int, wrapped: bytes) -> bytes | None:
        with self.datastore.transaction(commit=True) as c:
            c.execute(
                f"INSERT INTO {KEYS_TABLE} (subject_id, generation, wrapped_key) VALUES (?, ?, ?) "
                "ON CONFLICT (subject_id, generation) DO NOTHING",
                (subject_id.hex, generation, wrapped),
            )
            c.execute(
                f"SELECT wrapped_key FROM {KEYS_TABLE} WHERE subject_id = ? AND generation = ?",
                (subject_id.hex, generation),
            )
            row = c.fetchone()
        assert row is not None
        return None if row["wrapped_key"] is None else bytes(row["wrapped_key"])

    def _fetch_or_insert_many(
        self, candidates: list[tuple[UUID, int, bytes]]
    ) -> list[tuple[UUID, int, bytes | None]]:
        rows: list[tuple[UUID, int, bytes | None]] = []
        with self.datastore.transaction(commit=True) as c:
            c.executemany(
                f"INSERT INTO {KEYS_TABLE} (subject_id, generation, wrapped_key) VALUES (?, ?, ?) "
                "ON CONFLICT (subject_id, generation) DO NOTHING",
                [(s.hex, g, w) for s, g, w in candidates],
            )
            for subject_id, generation, _ in candidates:
                c.execute(
                    f"SELECT wrapped_key FROM {KEYS_TABLE} WHERE subject_id = ? AND generation = ?",
                    (subject_id.hex, generation),
                )
                row = c.fetchone()
                wrapped = None if row is None or row["wrapped_key"] is None else bytes(row["wrapped_key"])
                rows.append((subject_id, generation, wrapped))
        return rows

    def _fetch_many(self, subject_ids: list[UUID]) -> list[tuple[UUID, int, bytes | None]]:
        marks = ",".join("?" * len(subject_ids))
        with self.datastore.transaction(commit=False) as c:
            c.execute(
                f"SELECT subject_id, generation, wrapped_key FROM {KEYS_TABLE} WHERE subject_id IN ({marks})",
                [s.hex for s in subject_ids],
            )
            rows = c.fetchall()
        return [
            (
                UUID(r["subject_id"]),
                int(r["generation"]),
                None if r["wrapped_key"] is None else bytes(r["wrapped_key"]),
            )
            for r in rows
        ]


def keyring_for(recorder: ApplicationRecorder, master_key: bytes) -> PostgresKeyRing | SQLiteKeyRing:
    """The key ring that lives beside the given recorder's events."""
    if isinstance(recorder, KirokuPostgresRecorder):
        return PostgresKeyRing(recorder.datastore, master_key)
    if isinstance(recorder, KirokuSQLiteRecorder):
        return SQLiteKeyRing(recorder.datastore, master_key)
    raise TypeError(f"no key ring for recorder {type(recorder).__name__}")
