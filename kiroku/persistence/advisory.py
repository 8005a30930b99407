"""The keys of kiroku's PostgreSQL advisory locks.

A key is 64 bits of a BLAKE2b digest of what the lock is for (the schema
among it), as a signed ``bigint``: two different locks share a key with a
chance of one in 2^64 a pair. (Until session 21 the keys were CRC-32s, one
in 2^32 a pair: two runners whose locks collided would wait on each other.)
"""

from __future__ import annotations

import hashlib


def advisory_key(*parts: str) -> int:
    """The advisory lock key of these parts (joined with ``:``), a signed 64-bit integer."""
    digest = hashlib.blake2b(":".join(parts).encode(), digest_size=8, person=b"kiroku-lock").digest()
    return int.from_bytes(digest, "big", signed=True)
