"""domain.creation.create makes what the library's Aggregate._create makes, for every aggregate kiroku has."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate

import domain
from domain.cause import Cause
from domain.creation import create
from domain.personal import Sealed
from tests.helpers import T0, cause

_BASE_FIELDS = {"originator_id", "originator_version", "timestamp", "originator_topic"}


def _created_events() -> Iterator[tuple[type[Aggregate], type[Aggregate.Created]]]:
    """Every aggregate class in ``domain`` and each created event it defines (found, not listed)."""
    for module_info in pkgutil.walk_packages(domain.__path__, "domain."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            is_aggregate = isinstance(value, type) and issubclass(value, Aggregate)
            if not is_aggregate or value.__module__ != module.__name__:
                continue
            for name, event_class in vars(value).items():
                # "Created" itself is the library's default, which kiroku's aggregates do not use.
                is_created = isinstance(event_class, type) and issubclass(event_class, Aggregate.Created)
                if is_created and name != "Created":
                    yield value, event_class


class Tally(Aggregate):
    """Not kiroku's: a created event with an ``apply`` and an ``__init__`` that takes the id."""

    class Opened(Aggregate.Created):
        start: int
        cause: Cause

        def apply(self, aggregate: Any) -> None:
            aggregate.doubled = self.start * 2

    def __init__(self, id: UUID, start: int) -> None:
        self.own_id = id
        self.start = start


CREATED = sorted(_created_events(), key=lambda pair: pair[1].__qualname__)


def _sample(annotation: str) -> Any:
    """A value of a field's declared type, with content, so that ``__init__`` and ``apply`` have work."""
    if annotation.endswith(" | None"):
        return _sample(annotation.removesuffix(" | None"))
    subject_id = UUID("0f0e0d0c-0b0a-4908-8706-050403020100")
    samples: dict[str, Any] = {
        "str": "P1",
        "bool": True,
        "int": 2,
        "UUID": subject_id,
        "datetime": T0 + timedelta(days=30),
        "Cause": cause(),
        "list[str]": ["P1", "P3"],
        "list[UUID]": [subject_id, uuid4()],
        "list[Sealed]": [
            Sealed.restored(subject_id, 1, "email", b"sealed"),
            Sealed.restored(uuid4(), 2, "name", b"x"),
        ],
        "dict[str, str]": {"name": "Example KK", "P1": "purpose"},
        "dict[str, Any]": {"kind": "designated-operator", "name": "Example KK"},
        "list[dict[str, Any]]": [{"kind": "email", "subject_id": str(subject_id)}],
    }
    if annotation not in samples:
        raise AssertionError(f"no sample for a field of type {annotation}: add one")
    return samples[annotation]


def _fields(event_class: type[Aggregate.Created]) -> dict[str, Any]:
    fields = dataclasses.fields(event_class)
    return {f.name: _sample(str(f.type)) for f in fields if f.name not in _BASE_FIELDS}


def _state(aggregate: Aggregate) -> dict[str, Any]:
    return {name: value for name, value in vars(aggregate).items() if name != "_pending_events"}


def test_every_aggregate_of_kiroku_is_covered() -> None:
    names = {cls.__name__ for cls, _ in CREATED}
    assert names >= {
        "AccessRecord",
        "AcmeAccount",
        "CertificateRecord",
        "DataSubject",
        "DisclosureRequest",
        "PolicyCatalogue",
        "Provision",
        "UpstreamReceipt",
    }


@pytest.mark.parametrize(
    ("cls", "event_class"), [*CREATED, (Tally, Tally.Opened)], ids=lambda v: getattr(v, "__qualname__", "")
)
def test_create_makes_the_event_and_the_state_the_library_makes(
    cls: type[Aggregate], event_class: type[Aggregate.Created]
) -> None:
    aggregate_id = uuid4()
    fields = _fields(event_class)
    ours = create(cls, event_class, aggregate_id, timestamp=T0, **fields)
    theirs = cls._create(event_class, id=aggregate_id, timestamp=T0, **fields)

    assert type(ours) is cls
    assert ours.pending_events == theirs.pending_events
    assert len(ours.pending_events) == 1
    assert _state(ours) == _state(theirs)
    # Read back from its event by the library, as the store reads it, the aggregate is the same.
    replayed = ours.pending_events[0].mutate(None)
    assert replayed is not None
    assert _state(replayed) == _state(ours)


def test_create_runs_the_created_events_apply_and_gives_init_the_id_when_it_asks() -> None:
    aggregate_id = uuid4()
    tally = create(Tally, Tally.Opened, aggregate_id, start=21, cause=cause())
    assert (getattr(tally, "doubled", None), tally.own_id, tally.start) == (42, aggregate_id, 21)


def test_create_stamps_the_event_with_the_current_time_when_none_is_given() -> None:
    cls, event_class = CREATED[0]
    before = event_class.create_timestamp()
    made = create(cls, event_class, uuid4(), **_fields(event_class))
    (event,) = made.pending_events
    assert before <= event.timestamp <= event_class.create_timestamp()
    assert made.created_on == made.modified_on == event.timestamp
    assert made.version == 1


def test_create_refuses_an_id_that_is_not_a_uuid() -> None:
    cls, event_class = CREATED[0]
    with pytest.raises(TypeError, match="aggregate id is a UUID"):
        create(cls, event_class, str(uuid4()), **_fields(event_class))  # type: ignore[arg-type]
