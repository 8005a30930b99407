"""§3, §12: the versioned policy catalogue."""

from __future__ import annotations

from datetime import timedelta

import pytest

from domain.errors import InvalidCommand, PolicyViolation
from domain.policy import PolicyCatalogue
from tests.helpers import ALL_CHANNELS, ALL_PURPOSES, T0, cause


def published() -> PolicyCatalogue:
    return PolicyCatalogue.publish(
        version="v1",
        effective_from=T0,
        announced_at=T0 - timedelta(days=30),
        purposes=ALL_PURPOSES,
        channels=["C1", "C3"],
        cause=cause(),
    )


def test_version_in_force_at_a_past_moment() -> None:
    catalogue = published()
    catalogue.revise(
        version="v2",
        effective_from=T0 + timedelta(days=100),
        announced_at=T0 + timedelta(days=70),
        purposes=ALL_PURPOSES,
        channels=ALL_CHANNELS,
        justification=None,
        cause=cause(),
    )
    assert catalogue.version_at(T0 - timedelta(seconds=1)) is None
    v1 = catalogue.version_at(T0 + timedelta(days=99))
    v2 = catalogue.version_at(T0 + timedelta(days=100))
    assert v1 is not None and v1.version == "v1" and "C2" not in v1.channels
    assert v2 is not None and v2.version == "v2" and "C2" in v2.channels


def test_a_purpose_change_needs_a_justification_of_relatedness() -> None:
    catalogue = published()
    changed = dict(ALL_PURPOSES, P5="research with partners")
    with pytest.raises(PolicyViolation) as refused:
        catalogue.revise(
            version="v2",
            effective_from=T0 + timedelta(days=10),
            announced_at=T0,
            purposes=changed,
            channels=ALL_CHANNELS,
            justification=None,
            cause=cause(),
        )
    assert refused.value.clause == "§3"
    assert catalogue.pending_events[-1].__class__ is PolicyCatalogue.Published
    catalogue.revise(
        version="v2",
        effective_from=T0 + timedelta(days=10),
        announced_at=T0,
        purposes=changed,
        channels=ALL_CHANNELS,
        justification="partners do service research (P5)",
        cause=cause(),
    )
    assert catalogue.versions[-1].justification == "partners do service research (P5)"


def test_a_revision_must_take_effect_after_the_latest_version() -> None:
    catalogue = published()
    with pytest.raises(PolicyViolation, match="after the latest version"):
        catalogue.revise(
            version="v0",
            effective_from=T0 - timedelta(days=1),
            announced_at=T0 - timedelta(days=2),
            purposes=ALL_PURPOSES,
            channels=ALL_CHANNELS,
            justification=None,
            cause=cause(),
        )


def test_a_revision_is_announced_before_it_takes_effect() -> None:
    catalogue = published()
    with pytest.raises(PolicyViolation, match="announced before") as refused:
        catalogue.revise(
            version="v2",
            effective_from=T0 + timedelta(days=5),
            announced_at=T0 + timedelta(days=6),
            purposes=ALL_PURPOSES,
            channels=ALL_CHANNELS,
            justification=None,
            cause=cause(),
        )
    assert refused.value.clause == "§12"


def test_a_version_label_is_used_once() -> None:
    catalogue = published()
    with pytest.raises(PolicyViolation, match="already exists"):
        catalogue.revise(
            version="v1",
            effective_from=T0 + timedelta(days=5),
            announced_at=T0,
            purposes=ALL_PURPOSES,
            channels=ALL_CHANNELS,
            justification=None,
            cause=cause(),
        )


@pytest.mark.parametrize(
    ("purposes", "channels", "message"),
    [
        ({}, ["C1"], "at least one purpose"),
        ({"P9": "x"}, ["C1"], "unknown purpose code"),
        ({"P1": " "}, ["C1"], "needs a description"),
        ({"P1": "x"}, [], "at least one channel"),
        ({"P1": "x"}, ["C7"], "unknown channel code"),
    ],
)
def test_a_malformed_catalogue_is_refused(
    purposes: dict[str, str], channels: list[str], message: str
) -> None:
    with pytest.raises(InvalidCommand, match=message):
        PolicyCatalogue.publish(
            version="v1",
            effective_from=T0,
            announced_at=T0,
            purposes=purposes,
            channels=channels,
            cause=cause(),
        )


def test_times_must_carry_a_time_zone() -> None:
    with pytest.raises(InvalidCommand, match="time zone"):
        PolicyCatalogue.publish(
            version="v1",
            effective_from=T0.replace(tzinfo=None),
            announced_at=T0,
            purposes=ALL_PURPOSES,
            channels=ALL_CHANNELS,
            cause=cause(),
        )
