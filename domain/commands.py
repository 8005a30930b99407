"""Plain input values for the application's commands."""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

from domain.codes import PersonalItemKind
from domain.identity import SubjectKey
from domain.quickinit import quick_init


@quick_init
@dataclass(frozen=True)
class PersonalItemInput:
    """A personal value of one data subject, in the clear, on its way to being sealed."""

    subject: SubjectKey
    kind: PersonalItemKind | str
    value: str

    def __repr__(self) -> str:
        return f"PersonalItemInput(subject={self.subject!r}, kind={self.kind!s}, value=<redacted>)"


@quick_init
@dataclass(frozen=True)
class ProvidedItemInput:
    """An item provided to a third party: a subject's personal item or a certificate field."""

    item: str
    subject: SubjectKey | UUID | None = None


@quick_init
@dataclass(frozen=True)
class CommandResult:
    """What a write returns.

    ``id`` is the aggregate created or changed; ``position`` the notification id
    of the last event now recorded (a reader can wait for views to reach it);
    ``duplicate`` says the upstream event had been applied before and nothing
    changed this time.
    """

    id: UUID | None
    position: int | None
    duplicate: bool = False
