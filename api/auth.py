"""Bearer tokens mapped to roles; the tokens are stored hashed (SHA-256), never in the clear."""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path


class Permission(StrEnum):
    READ_RECORDS = "read:records"  # certificates, audit trail, provision ledger, policy
    READ_PERSONAL = "read:personal"  # data subjects, disclosure packages
    WRITE_REQUESTS = "write:requests"  # disclosures, provisions under 4.3, stops, erasure
    WRITE_POLICY = "write:policy"  # policy revisions


ROLES: dict[str, frozenset[Permission]] = {
    "viewer": frozenset({Permission.READ_RECORDS}),
    "auditor": frozenset({Permission.READ_RECORDS, Permission.READ_PERSONAL}),
    "officer": frozenset({Permission.READ_RECORDS, Permission.READ_PERSONAL, Permission.WRITE_REQUESTS}),
    "admin": frozenset(Permission),
}


class TokenFileError(Exception):
    """Raised when the token file cannot be read or names an unknown role."""


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's name and role."""

    name: str
    role: str

    def may(self, permission: Permission) -> bool:
        return permission in ROLES[self.role]


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class TokenRegistry:
    """The operator's tokens, by hash."""

    def __init__(self, entries: dict[str, Principal]) -> None:
        self._by_hash = dict(entries)

    @classmethod
    def load(cls, path: Path) -> TokenRegistry:
        if not path.exists():
            return cls({})
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TokenFileError(f"{path}: not a readable token file ({type(exc).__name__})") from None
        entries: dict[str, Principal] = {}
        for entry in raw.get("tokens", []):
            if entry.get("role") not in ROLES:
                raise TokenFileError(
                    f"{path}: token {entry.get('name')!r} has unknown role {entry.get('role')!r}"
                )
            entries[entry["sha256"]] = Principal(entry["name"], entry["role"])
        return cls(entries)

    def principal(self, token: str) -> Principal | None:
        return self._by_hash.get(token_hash(token))

    @staticmethod
    def add(path: Path, name: str, role: str) -> str:
        """Adds a token to the file and returns it; it is shown once and stored only hashed."""
        if role not in ROLES:
            raise TokenFileError(f"unknown role {role!r}; roles are {', '.join(ROLES)}")
        token = "kiroku_" + secrets.token_urlsafe(32)
        raw = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {"tokens": []}
        raw["tokens"].append({"name": name, "role": role, "sha256": token_hash(token)})
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(raw, handle, indent=2)
        temporary.replace(path)
        return token
