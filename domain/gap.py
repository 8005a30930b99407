"""Upstream messages the ledger will never hold, and the person who accepted that.

An upstream stream (for ingest: a Kafka topic partition) is recorded in order,
its position kept beside the events. When the messages after the recorded
position are gone from upstream before they were recorded (retention removed
them while ingest was stopped or behind), ingest stops that stream rather
than skip them. A person who has looked (and, where it matters, asked the
upstream system to publish again what it can) accepts the gap: the ledger
records which positions are missing, why, and who decided, and the stream's
position moves past them in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.creation import create
from domain.identity import deterministic_id
from domain.quickinit import quick_init, quicken_events

#: The longest reason a person may give (characters).
MAX_REASON = 2000

#: What a reason must not hold, since every reader sees it and an erasure cannot remove it:
#: the kinds of a person's data that can be told from their form.
_PERSONAL_FORMS = (
    ("an e-mail address", re.compile(r"[^\s@<>()\[\]]+@[^\s@<>()\[\]]+\.[^\s@<>()\[\]]+")),
    ("an IPv4 address", re.compile(r"(?<![\d.])(?:\d{1,3}\.){3}\d{1,3}(?![\d.])")),
    # Eight groups of hex digits, or fewer with "::" (not a time such as 12:30:45).
    (
        "an IPv6 address",
        re.compile(
            r"(?i)(?<![\w:.])(?=[0-9a-f:]*::|(?:[0-9a-f]{1,4}:){4})(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])"
        ),
    ),
    # A telephone number: a country code or a trunk 0, then two more groups (03-1234-5678,
    # +81 90 1234 5678, (03) 1234 5678); not offsets (1200-1450) or dates (2026-12-03).
    (
        "a telephone number",
        re.compile(
            r"(?<![\w+])(?:\+\d{1,3}[ .-]?\(?\d{1,4}\)?|\(?0\d{1,4}\)?)"  # country code, or trunk 0
            r"[ .-]?\d{1,4}[ .-]\d{3,4}(?!\w)"
        ),
    ),
)


def personal_form_in(text: str) -> str | None:
    """The kind of personal data ``text`` seems to hold, by its form (None: none seen).

    Names and the like cannot be told from their form; the README asks for
    none. The finding is named, never repeated.
    """
    for kind, form in _PERSONAL_FORMS:
        if form.search(text):
            return kind
    return None


def gap_id(stream: str, first_missing: int) -> UUID:
    return deterministic_id("upstream-gap", stream, str(first_missing))


@quick_init
@dataclass(frozen=True)
class AcceptedGap:
    """An accepted gap as a listing shows it: what is missing, why, who accepted it and when."""

    gap_id: UUID
    stream: str
    first_missing: int
    last_missing: int
    reason: str
    actor: str
    source_system: str
    accepted_at: datetime
    notification_id: int

    @property
    def missing(self) -> int:
        return self.last_missing - self.first_missing + 1

    def as_dict(self) -> dict[str, Any]:
        """The gap as JSON values (`kiroku consume gaps --json`, ``GET /upstream-gaps``)."""
        return {
            "gap_id": str(self.gap_id),
            "stream": self.stream,
            "first_missing": self.first_missing,
            "last_missing": self.last_missing,
            "missing": self.missing,
            "reason": self.reason,
            "actor": self.actor,
            "source_system": self.source_system,
            "accepted_at": self.accepted_at.isoformat(),
            "notification_id": self.notification_id,
        }


@quicken_events
class UpstreamGap(Aggregate):
    """Positions ``first_missing`` to ``last_missing`` of an upstream stream, never recorded."""

    class Accepted(Aggregate.Created):
        stream: str
        first_missing: int
        last_missing: int
        reason: str
        cause: Cause

    def __init__(self, stream: str, first_missing: int, last_missing: int, reason: str) -> None:
        self.stream = stream
        self.first_missing = first_missing
        self.last_missing = last_missing
        self.reason = reason

    @property
    def missing(self) -> int:
        return self.last_missing - self.first_missing + 1

    @classmethod
    def accepted(
        cls, *, stream: str, first_missing: int, last_missing: int, reason: str, cause: Cause
    ) -> UpstreamGap:
        return create(
            cls,
            cls.Accepted,
            gap_id(stream, first_missing),
            stream=stream,
            first_missing=first_missing,
            last_missing=last_missing,
            reason=reason,
            cause=cause,
        )
