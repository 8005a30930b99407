"""§3, §12: the purposes and channels in force, as a versioned catalogue."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from eventsourcing.domain import Aggregate

from domain.cause import Cause
from domain.codes import Channel, Clause, Purpose
from domain.creation import create
from domain.errors import InvalidCommand, PolicyViolation
from domain.identity import deterministic_id
from domain.quickinit import quick_init, quicken_events

CATALOGUE_ID = deterministic_id("policy-catalogue")


@quick_init
@dataclass(frozen=True)
class PolicyVersion:
    """One version of the policy: what it allows, from when, and why it changed."""

    version: str
    effective_from: datetime
    announced_at: datetime
    purposes: Mapping[str, str]
    channels: Sequence[str]
    justification: str | None


def _check_aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise InvalidCommand(f"{name} must be a datetime with a time zone")
    return value


def _check_catalogue(
    purposes: Mapping[str, str], channels: Sequence[str]
) -> tuple[dict[str, str], list[str]]:
    if not purposes:
        raise InvalidCommand("a policy version needs at least one purpose", Clause.PURPOSES)
    checked: dict[str, str] = {}
    for code, text in purposes.items():
        try:
            Purpose(code)
        except ValueError:
            raise InvalidCommand(f"unknown purpose code {code!r} (P1-P8)", Clause.PURPOSES) from None
        if not isinstance(text, str) or not text.strip():
            raise InvalidCommand(f"purpose {code} needs a description", Clause.PURPOSES)
        checked[str(Purpose(code))] = text.strip()
    if not channels:
        raise InvalidCommand("a policy version needs at least one channel", Clause.COLLECTION)
    checked_channels: list[str] = []
    for channel in channels:
        try:
            checked_channels.append(str(Channel(channel)))
        except ValueError:
            raise InvalidCommand(f"unknown channel code {channel!r} (C1-C4)", Clause.COLLECTION) from None
    return dict(sorted(checked.items())), sorted(set(checked_channels))


@quicken_events
class PolicyCatalogue(Aggregate):
    """The policy's versions in order of taking effect; one per deployment."""

    class Published(Aggregate.Created):
        version: str
        effective_from: datetime
        announced_at: datetime
        purposes: dict[str, str]
        channels: list[str]
        cause: Cause

    class Revised(Aggregate.Event):
        version: str
        effective_from: datetime
        announced_at: datetime
        purposes: dict[str, str]
        channels: list[str]
        justification: str | None
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            assert isinstance(aggregate, PolicyCatalogue)
            aggregate.versions.append(
                PolicyVersion(
                    self.version,
                    self.effective_from,
                    self.announced_at,
                    dict(self.purposes),
                    list(self.channels),
                    self.justification,
                )
            )

    def __init__(
        self,
        version: str,
        effective_from: datetime,
        announced_at: datetime,
        purposes: dict[str, str],
        channels: list[str],
    ) -> None:
        self.versions: list[PolicyVersion] = [
            PolicyVersion(version, effective_from, announced_at, dict(purposes), list(channels), None)
        ]

    @classmethod
    def publish(
        cls,
        *,
        version: str,
        effective_from: datetime,
        announced_at: datetime,
        purposes: Mapping[str, str],
        channels: Sequence[str],
        cause: Cause,
    ) -> PolicyCatalogue:
        """The first published version; later ones are :meth:`revise`."""
        _check_version_label(version)
        _check_announcement(announced_at, effective_from)
        checked_purposes, checked_channels = _check_catalogue(purposes, channels)
        return create(
            cls,
            cls.Published,
            CATALOGUE_ID,
            version=version.strip(),
            effective_from=effective_from,
            announced_at=announced_at,
            purposes=checked_purposes,
            channels=checked_channels,
            cause=cause,
        )

    def revise(
        self,
        *,
        version: str,
        effective_from: datetime,
        announced_at: datetime,
        purposes: Mapping[str, str],
        channels: Sequence[str],
        justification: str | None,
        cause: Cause,
    ) -> None:
        """§12: a revision announced beforehand; §3: a purpose change must be justified."""
        _check_version_label(version)
        _check_announcement(announced_at, effective_from)
        if any(v.version == version.strip() for v in self.versions):
            raise PolicyViolation(f"policy version {version.strip()!r} already exists", Clause.REVISION)
        latest = self.versions[-1]
        if effective_from <= latest.effective_from:
            raise PolicyViolation(
                "a revision must take effect after the latest version "
                f"({latest.version}, effective {latest.effective_from.isoformat()})",
                Clause.REVISION,
            )
        checked_purposes, checked_channels = _check_catalogue(purposes, channels)
        if checked_purposes != dict(latest.purposes) and not (justification and justification.strip()):
            raise PolicyViolation(
                "a change of purposes needs a justification of its relatedness to the current purposes",
                Clause.PURPOSE_CHANGE,
            )
        self.trigger_event(
            self.Revised,
            version=version.strip(),
            effective_from=effective_from,
            announced_at=announced_at,
            purposes=checked_purposes,
            channels=checked_channels,
            justification=justification.strip() if justification else None,
            cause=cause,
        )

    def version_at(self, moment: datetime) -> PolicyVersion | None:
        """The version in force at ``moment`` (None before the first took effect)."""
        _check_aware("moment", moment)
        in_force = None
        for version in self.versions:
            if version.effective_from <= moment:
                in_force = version
        return in_force

    def version_named(self, name: str) -> PolicyVersion | None:
        return next((v for v in self.versions if v.version == name), None)


def _check_version_label(version: str) -> None:
    if not isinstance(version, str) or not version.strip() or len(version) > 50:
        raise InvalidCommand("a policy version needs a label of 1-50 characters", Clause.REVISION)


def _check_announcement(announced_at: datetime, effective_from: datetime) -> None:
    _check_aware("announced_at", announced_at)
    _check_aware("effective_from", effective_from)
    if announced_at > effective_from:
        raise PolicyViolation("a policy version must be announced before it takes effect", Clause.REVISION)
