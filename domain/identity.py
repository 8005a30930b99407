"""Deterministic, pseudonymous ids for data subjects and records.

A data subject's id is derived from a normalised natural key (the e-mail
address, or an identifier the upstream system gives) through a keyed hash
(HMAC-SHA256), so two collections naming the same person land on one subject
while the id alone reveals nothing about the person to anyone without the key.
"""

from __future__ import annotations

import functools
import hmac
import re
import unicodedata
from dataclasses import dataclass
from uuid import UUID, uuid5

from domain.errors import InvalidCommand

# Namespace for the non-secret deterministic ids (uuid5) of kiroku's aggregates.
KIROKU_NAMESPACE = UUID("6b3c3f0e-2f53-5a57-9d1c-6b6972756b75")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_MAX_EMAIL = 254
_MAX_IDENTIFIER = 200


def normalise_email(address: str) -> str:
    """NFKC, trimmed and lower-cased; refuses what is not an e-mail address."""
    if not isinstance(address, str):
        raise InvalidCommand("e-mail address must be a string")
    normalised = unicodedata.normalize("NFKC", address).strip().lower()
    if len(normalised) > _MAX_EMAIL or not _EMAIL.match(normalised):
        raise InvalidCommand("e-mail address is not well-formed")
    return normalised


@dataclass(frozen=True)
class SubjectKey:
    """The natural key that identifies a data subject.

    ``kind`` is ``email`` or ``upstream``; for ``upstream`` the value is
    ``<source system>:<identifier>``. Construct with :meth:`email` or
    :meth:`upstream` so the value is normalised.
    """

    kind: str
    value: str

    @classmethod
    def email(cls, address: str) -> SubjectKey:
        return cls("email", normalise_email(address))

    @classmethod
    def upstream(cls, source_system: str, identifier: str) -> SubjectKey:
        system = unicodedata.normalize("NFKC", source_system or "").strip()
        ident = unicodedata.normalize("NFKC", identifier or "").strip()
        if not system or not ident:
            raise InvalidCommand("upstream subject key needs a source system and an identifier")
        if len(ident) > _MAX_IDENTIFIER or len(system) > _MAX_IDENTIFIER:
            raise InvalidCommand("upstream subject identifier is too long")
        return cls("upstream", f"{system}:{ident}")

    def __repr__(self) -> str:
        # Never print the natural key: it is personal data.
        return f"SubjectKey(kind={self.kind!r}, value=<redacted>)"


def subject_id_for(key: SubjectKey, secret: bytes) -> UUID:
    """The subject's id: the first 128 bits of HMAC-SHA256 over the key, as a UUIDv8."""
    if len(secret) < 16:
        raise ValueError("the subject-id secret must be at least 16 bytes")
    message = b"kiroku.subject\x00" + key.kind.encode() + b"\x00" + key.value.encode()
    digest = bytearray(hmac.digest(secret, message, "sha256")[:16])
    digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    return UUID(bytes=bytes(digest))


def blind_index(value: str, secret: bytes, purpose: str) -> str:
    """A keyed hash of a normalised value, for lookups without storing the value."""
    normalised = " ".join(unicodedata.normalize("NFKC", value).casefold().split())
    message = purpose.encode() + b"\x00" + normalised.encode()
    return hmac.digest(secret, message, "sha256").hex()


def deterministic_id(*parts: str) -> UUID:
    """A uuid5 in kiroku's namespace for non-personal natural keys (record refs, upstream ids)."""
    for part in parts:
        if not isinstance(part, str) or not part:
            raise InvalidCommand("an id part must be a non-empty string")
    return _uuid5("\x00".join(parts))


@functools.lru_cache(maxsize=65536)
def _uuid5(name: str) -> UUID:
    # The same ids come up again and again in a batch (its records, accounts, receipts).
    return uuid5(KIROKU_NAMESPACE, name)
