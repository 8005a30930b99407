"""Sealing personal values: bound to subject, generation and kind; tampering is detected (§8)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import replace
from uuid import UUID, uuid4

import pytest

from domain.errors import InvalidCommand
from domain.personal import ERASED, PersonalDataCipher


class InMemoryKeyRing:
    """A fake of the key-ring port."""

    def __init__(self) -> None:
        self.keys: dict[tuple[UUID, int], bytes | None] = {}

    def key_for(self, subject_id: UUID, generation: int) -> bytes:
        key = self.keys.setdefault((subject_id, generation), os.urandom(32))
        assert key is not None
        return key

    def keys_for(self, pairs: Iterable[tuple[UUID, int]]) -> Mapping[tuple[UUID, int], bytes | None]:
        return {pair: self.keys.get(pair) for pair in pairs}

    def prepare(self, pairs: Iterable[tuple[UUID, int]]) -> None:
        for pair in pairs:
            self.keys.setdefault(pair, os.urandom(32))


def test_a_sealed_value_opens_to_itself_and_hides_it() -> None:
    cipher = PersonalDataCipher(InMemoryKeyRing())
    sealed = cipher.seal(uuid4(), 1, "name", "山田 太郎")
    assert "山田".encode() not in sealed.blob
    assert "山田" not in repr(sealed)
    assert cipher.open(sealed) == "山田 太郎"


def test_a_destroyed_key_reads_as_erased() -> None:
    keys = InMemoryKeyRing()
    cipher = PersonalDataCipher(keys)
    subject = uuid4()
    sealed = cipher.seal(subject, 1, "email", "a@example.jp")
    keys.keys[(subject, 1)] = None
    assert cipher.open(sealed) is ERASED
    assert str(ERASED) == "[erased]"


@pytest.mark.parametrize("field", ["subject_id", "kind", "blob"])
def test_a_moved_or_tampered_value_fails_loudly(field: str) -> None:
    keys = InMemoryKeyRing()
    cipher = PersonalDataCipher(keys)
    subject, other = uuid4(), uuid4()
    sealed = cipher.seal(subject, 1, "name", "Alice")
    keys.keys[(other, 1)] = keys.keys[(subject, 1)]  # even with the same key material
    tampered = {
        "subject_id": replace(sealed, subject_id=other),
        "kind": replace(sealed, kind="email"),
        "blob": replace(sealed, blob=sealed.blob[:-1] + bytes([sealed.blob[-1] ^ 1])),
    }[field]
    with pytest.raises(ValueError, match="failed authentication") as failed:
        cipher.open(tampered)
    assert "Alice" not in str(failed.value)


@pytest.mark.parametrize(
    ("kind", "value"), [("shoe_size", "42"), ("name", ""), ("phone", "1" * 41), ("email", 7)]
)
def test_a_bad_item_is_refused_without_echoing_its_value(kind: str, value: object) -> None:
    cipher = PersonalDataCipher(InMemoryKeyRing())
    with pytest.raises(InvalidCommand) as refused:
        cipher.seal(uuid4(), 1, kind, value)  # type: ignore[arg-type]
    if isinstance(value, str) and value:
        assert value not in str(refused.value)


def test_values_of_several_subjects_sealed_in_turn_each_open_with_their_own_key() -> None:
    keys = InMemoryKeyRing()
    cipher = PersonalDataCipher(keys)
    subjects = [uuid4() for _ in range(3)]
    turns = [0, 0, 1, 0, 2, 2, 1, 0, 1, 1]  # runs of one subject and changes between them
    sealed = [cipher.seal(subjects[s], 1, "email", f"p{n}@example.jp") for n, s in enumerate(turns)]
    # Opened by a cipher of its own: each value was sealed under its own subject's key.
    reader = PersonalDataCipher(keys)
    assert [reader.open(s) for s in sealed] == [f"p{n}@example.jp" for n in range(len(turns))]
    assert [s.subject_id for s in sealed] == [subjects[s] for s in turns]
    # And a generation is a key of its own.
    newer = cipher.seal(subjects[0], 2, "email", "new@example.jp")
    keys.keys[(subjects[0], 1)] = None
    assert reader.open(newer) == "new@example.jp"
    assert reader.open(sealed[0]) is ERASED


class ShreddingKeyRing(InMemoryKeyRing):
    """Refuses a destroyed key, as the real key ring does."""

    def key_for(self, subject_id: UUID, generation: int) -> bytes:
        if (subject_id, generation) in self.keys and self.keys[(subject_id, generation)] is None:
            raise InvalidCommand("the subject's key was destroyed")
        return super().key_for(subject_id, generation)


def test_a_destroyed_key_seals_nothing_more_even_right_after_it_sealed() -> None:
    keys = ShreddingKeyRing()
    cipher = PersonalDataCipher(keys)
    subject = uuid4()
    cipher.seal(subject, 1, "name", "Alice")
    keys.keys[(subject, 1)] = None
    with pytest.raises(InvalidCommand, match="destroyed"):
        cipher.seal(subject, 1, "email", "alice@example.jp")
