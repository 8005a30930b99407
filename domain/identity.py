"""Deterministic, pseudonymous ids for data subjects and records.

A data subject's id is derived from a normalised natural key (the e-mail
address, or an identifier the upstream system gives) through a keyed hash
(HMAC-SHA256), so two collections naming the same person land on one subject
while the id alone reveals nothing about the person to anyone without the key.
"""

from __future__ import annotations

import functools
import hashlib
import operator
import re
import unicodedata
from dataclasses import dataclass
from uuid import UUID, SafeUUID

from domain.errors import InvalidCommand
from domain.quickinit import quick_init

#: The sort key that puts UUIDs in the order of their text (``key=str``) without writing
#: the text: the canonical text is the 128-bit number in fixed-width hex.
uuid_order = operator.attrgetter("int")

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


@quick_init
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


_IPAD = bytes(b ^ 0x36 for b in range(256))
_OPAD = bytes(b ^ 0x5C for b in range(256))


class KeyedHash:
    """HMAC-SHA256 under one key, as ``hmac.digest(key, message, "sha256")`` gives it.

    The key's two padded blocks are hashed once; each message then costs two
    copies of those states. ``hmac.digest`` sets the key up again on every
    call, which with OpenSSL 3 costs more than hashing a short message (4.1
    against 1.6 µs for 400 bytes here), and ingest hashes a few per message.
    """

    __slots__ = ("_inner", "_outer")

    def __init__(self, key: bytes) -> None:
        if len(key) > 64:  # longer than SHA-256's block: HMAC hashes the key first
            key = hashlib.sha256(key).digest()
        block = key.ljust(64, b"\x00")
        self._inner = hashlib.sha256(block.translate(_IPAD))
        self._outer = hashlib.sha256(block.translate(_OPAD))

    def digest(self, message: bytes) -> bytes:
        inner = self._inner.copy()
        inner.update(message)
        outer = self._outer.copy()
        outer.update(inner.digest())
        return outer.digest()


@functools.lru_cache(maxsize=16)
def keyed_hash(secret: bytes) -> KeyedHash:
    """The :class:`KeyedHash` of a secret, made once (a process has one or two secrets)."""
    return KeyedHash(secret)


def _uuid_of_digest(digest: bytes, version: int) -> UUID:
    """``UUID(bytes=digest[:16], version=version)``, without ``UUID.__init__``'s checks.

    ``UUID.__init__`` takes most of the time of making a deterministic id,
    checking arguments this module has just made itself. The version and the
    RFC 4122 variant are set as it sets them.
    """
    value = int.from_bytes(digest[:16], "big")
    value = (value & ~(0xF000 << 64)) | (version << 76)
    value = (value & ~(0xC000 << 48)) | (0x8000 << 48)
    made = object.__new__(UUID)
    object.__setattr__(made, "int", value)
    object.__setattr__(made, "is_safe", SafeUUID.unknown)
    return made


def subject_id_for(key: SubjectKey, secret: bytes) -> UUID:
    """The subject's id: the first 128 bits of HMAC-SHA256 over the key, as a UUIDv8."""
    if len(secret) < 16:
        raise ValueError("the subject-id secret must be at least 16 bytes")
    message = b"kiroku.subject\x00" + key.kind.encode() + b"\x00" + key.value.encode()
    return _uuid_of_digest(keyed_hash(secret).digest(message), 8)  # version 8: custom


def blind_index(value: str, secret: bytes, purpose: str) -> str:
    """A keyed hash of a normalised value, for lookups without storing the value."""
    normalised = " ".join(unicodedata.normalize("NFKC", value).casefold().split())
    message = purpose.encode() + b"\x00" + normalised.encode()
    return keyed_hash(secret).digest(message).hex()


#: Ids made, by their parts: the same ids come up again and again in a batch (a message's
#: prefetch and its command make each one, and a batch's records, accounts and receipts
#: recur). Only ids of valid parts are kept; emptied when full.
_IDS: dict[tuple[str, ...], UUID] = {}
_MAX_IDS = 65536


def deterministic_id(*parts: str) -> UUID:
    """A uuid5 in kiroku's namespace for non-personal natural keys (record refs, upstream ids)."""
    try:
        return _IDS[parts]
    except (KeyError, TypeError):  # TypeError: an unhashable part, refused below
        pass
    for part in parts:
        if not isinstance(part, str) or not part:
            raise InvalidCommand("an id part must be a non-empty string")
    made = _uuid5("\x00".join(parts))
    if len(_IDS) >= _MAX_IDS:
        _IDS.clear()
    _IDS[parts] = made
    return made


_NAMESPACE_BYTES = KIROKU_NAMESPACE.bytes


def _uuid5(name: str) -> UUID:
    """``uuid.uuid5(KIROKU_NAMESPACE, name)``, made without ``UUID.__init__``'s checks."""
    return _uuid_of_digest(hashlib.sha1(_NAMESPACE_BYTES + name.encode()).digest(), 5)  # noqa: S324 - uuid5 is SHA-1 by definition
