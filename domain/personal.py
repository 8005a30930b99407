"""Personal items, sealed under a per-subject key (crypto-shredding).

Events never hold a personal value in the clear: they hold a :class:`Sealed`
value, AES-256-GCM ciphertext under the key of one data subject and one key
generation, bound (as associated data) to that subject, generation and item
kind so a ciphertext cannot be moved to another subject. Erasing a subject
destroys its key; every reader then gets :data:`ERASED` instead of the value.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from domain.codes import PersonalItemKind
from domain.errors import InvalidCommand
from domain.quickinit import quick_init

_NONCE = 12
_MAX_VALUE = {
    PersonalItemKind.NAME: 300,
    PersonalItemKind.POSTAL_ADDRESS: 1000,
    PersonalItemKind.PHONE: 40,
    PersonalItemKind.EMAIL: 254,
}


@quick_init
@dataclass(frozen=True)
class Sealed:
    """A personal value encrypted under a subject's key of one generation."""

    subject_id: UUID
    generation: int
    kind: str
    blob: bytes

    def __repr__(self) -> str:
        return f"Sealed(subject_id={self.subject_id}, generation={self.generation}, kind={self.kind})"

    @classmethod
    def restored(cls, subject_id: UUID, generation: int, kind: str, blob: bytes) -> Sealed:
        """A sealed value read back from a stored event (checked when it was sealed, not again)."""
        sealed = object.__new__(cls)
        sealed.__dict__.update(subject_id=subject_id, generation=generation, kind=kind, blob=blob)
        return sealed


@quick_init
@dataclass(frozen=True)
class Erased:
    """What a reader gets in place of a personal value whose key was destroyed."""

    marker: str = "erased"

    def __str__(self) -> str:
        return "[erased]"


ERASED = Erased()
Revealed = str | Erased


class KeyRing(Protocol):
    """Port: per-subject data keys, by (subject id, generation)."""

    def key_for(self, subject_id: UUID, generation: int) -> bytes:
        """Returns the key, creating it if it does not exist; raises if it was destroyed."""

    def keys_for(self, pairs: Iterable[tuple[UUID, int]]) -> Mapping[tuple[UUID, int], bytes | None]:
        """Returns existing keys; ``None`` for a destroyed (or never created) key."""

    def prepare(self, pairs: Iterable[tuple[UUID, int]]) -> None:
        """Gets keys for sealing ready in one step, creating missing ones; never recreates a destroyed key.

        Only saves round trips: :meth:`key_for` still decides, and still raises
        for a destroyed key.
        """


def _aad(subject_id: UUID, generation: int, kind: str) -> bytes:
    return subject_id.bytes + generation.to_bytes(4, "big") + kind.encode()


def check_personal_value(kind: str, value: object) -> PersonalItemKind:
    """Validates an item kind and value; the message never contains the value."""
    try:
        item_kind = PersonalItemKind(kind)
    except ValueError:
        allowed = ", ".join(k.value for k in PersonalItemKind)
        raise InvalidCommand(f"unknown personal item kind {kind!r}; expected one of {allowed}") from None
    if not isinstance(value, str) or not value.strip():
        raise InvalidCommand(f"personal item {item_kind.value} must be a non-empty string")
    if len(value) > _MAX_VALUE[item_kind]:
        raise InvalidCommand(
            f"personal item {item_kind.value} is longer than {_MAX_VALUE[item_kind]} characters"
        )
    return item_kind


class PersonalDataCipher:
    """Seals and opens personal values with the keys of a :class:`KeyRing`."""

    def __init__(self, keys: KeyRing) -> None:
        self.keys = keys
        # The cipher of the key used last: a person's items are sealed (and opened) one
        # after another with one key, and making an AESGCM costs more than sealing a
        # short value with it. The key ring (or the caller's key read) still decides
        # each time whether there is a key. The very same key object picks the cipher
        # (the key ring hands out the one it keeps): no key material is compared.
        self._last: tuple[bytes, AESGCM] | None = None

    def _cipher(self, key: bytes) -> AESGCM:
        last = self._last
        if last is not None and last[0] is key:
            return last[1]
        cipher = AESGCM(key)
        self._last = (key, cipher)
        return cipher

    def seal(self, subject_id: UUID, generation: int, kind: str, value: str) -> Sealed:
        item_kind = check_personal_value(kind, value)
        key = self.keys.key_for(subject_id, generation)
        nonce = os.urandom(_NONCE)
        aad = _aad(subject_id, generation, item_kind)
        blob = nonce + self._cipher(key).encrypt(nonce, value.encode(), aad)
        return Sealed(subject_id, generation, item_kind.value, blob)

    def open_many(self, sealed: Iterable[Sealed]) -> list[Revealed]:
        """Opens values in order, one key lookup per distinct (subject, generation)."""
        values = list(sealed)
        keys = self.keys.keys_for({(s.subject_id, s.generation) for s in values})
        return [self._open(s, keys.get((s.subject_id, s.generation))) for s in values]

    def open(self, sealed: Sealed) -> Revealed:
        return self.open_many([sealed])[0]

    def open_with(self, sealed: Sealed, key: bytes | None) -> Revealed:
        """Opens a value with a key the caller read (``None``: destroyed, so erased)."""
        return self._open(sealed, key)

    def _open(self, sealed: Sealed, key: bytes | None) -> Revealed:
        if key is None:
            return ERASED
        nonce, body = sealed.blob[:_NONCE], sealed.blob[_NONCE:]
        try:
            plain = self._cipher(key).decrypt(
                nonce, body, _aad(sealed.subject_id, sealed.generation, sealed.kind)
            )
        except InvalidTag:
            # Tampered ciphertext (§8): a reader must not get a wrong value silently.
            raise ValueError(
                f"sealed {sealed.kind} of subject {sealed.subject_id} failed authentication"
            ) from None
        return plain.decode()
