"""Builders shared by the tests: causes, policy versions, sealed values."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

from hypothesis import strategies as st

from domain.application import Ledger
from domain.cause import Cause
from domain.personal import Sealed
from domain.policy import PolicyVersion

#: The checkout the tests run from.
ROOT = Path(__file__).resolve().parents[1]
T0 = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
ALL_PURPOSES = {f"P{i}": f"purpose {i}" for i in range(1, 9)}
ALL_CHANNELS = ["C1", "C2", "C3", "C4"]


def cause(
    at: datetime = T0,
    *,
    source: str = "registrar",
    upstream: str | None = None,
    actor: str = "tester",
) -> Cause:
    return Cause(
        actor=actor,
        source_system=source,
        occurred_at=at,
        upstream_event_id=upstream,
        correlation_id="corr-" + uuid4().hex[:8],
    )


def publish_policy(ledger: Ledger, *, channels: list[str] | None = None) -> None:
    """Publishes a policy with every purpose and channel, in force since a year before T0."""
    ledger.publish_policy(
        version="v1",
        effective_from=T0 - timedelta(days=365),
        announced_at=T0 - timedelta(days=400),
        purposes=ALL_PURPOSES,
        channels=channels or ALL_CHANNELS,
        cause=cause(T0 - timedelta(days=400)),
    )


def fresh_upstream_id() -> str:
    return "evt-" + uuid4().hex


def policy_version(
    channels: list[str] | None = None, purposes: dict[str, str] | None = None
) -> PolicyVersion:
    return PolicyVersion(
        version="v-test",
        effective_from=T0 - timedelta(days=365),
        announced_at=T0 - timedelta(days=400),
        purposes=purposes or ALL_PURPOSES,
        channels=channels or ALL_CHANNELS,
        justification=None,
    )


def sealed(subject_id: UUID | None = None, kind: str = "name") -> Sealed:
    return Sealed(subject_id or uuid4(), 1, kind, os.urandom(28))


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


def scalar_values(texts: st.SearchStrategy[str]) -> st.SearchStrategy[Any]:
    """None, booleans, integers, finite floats, the given texts and UUIDs: values any JSON form meets."""
    return st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts | st.uuids()
