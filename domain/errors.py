"""The domain's exceptions.

Every refusal names the rule it rests on (``clause``) and never contains
personal data: messages speak of items and ids, not values.
"""

from __future__ import annotations

from domain.codes import Clause


class DomainError(Exception):
    """Raised when a command breaks a rule of the domain; nothing is recorded."""

    def __init__(self, message: str, clause: Clause | None = None) -> None:
        self.clause = clause
        self.message = message
        super().__init__(f"{message} ({clause})" if clause else message)


class InvalidCommand(DomainError):
    """Raised when a command's input is malformed or incomplete."""


class PolicyViolation(DomainError):
    """Raised when a command is well-formed but the policy forbids it."""


class InvalidTransition(PolicyViolation):
    """Raised when a request or record is asked to move to a state it cannot reach."""


class LegalHoldActive(PolicyViolation):
    """Raised when erasure is asked for while a retention obligation still applies."""

    def __init__(self, message: str, holds: list[tuple[str, str]]) -> None:
        self.holds = holds
        super().__init__(message, Clause.ERASURE)


class NotFound(DomainError):
    """Raised when a command names a record, subject or request that does not exist."""


class UpstreamEventConflict(DomainError):
    """Raised when an upstream event id is reused for a different command."""


class PersonalDataErased(DomainError):
    """Raised when a command needs personal data that has been crypto-shredded."""
