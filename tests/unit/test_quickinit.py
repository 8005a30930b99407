"""domain.quickinit gives events and frozen inputs an __init__ that does what the dataclass's does."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest
from eventsourcing.domain import Aggregate, DomainEvent

import consumers.contract
import consumers.translate
import domain
from domain.cause import Cause
from domain.errors import InvalidCommand
from domain.quickinit import DATACLASS_INIT, quick_init

T0 = datetime(2026, 4, 1, 9, 30, tzinfo=UTC)


def _domain_classes() -> Iterator[type[Any]]:
    """Every event class of every aggregate, and every frozen dataclass, defined in ``domain``."""
    for module_info in pkgutil.walk_packages(domain.__path__, "domain."):
        module = importlib.import_module(module_info.name)
        for value in vars(module).values():
            if not isinstance(value, type) or value.__module__ != module.__name__:
                continue
            if issubclass(value, Aggregate):
                yield from (
                    v for v in vars(value).values() if isinstance(v, type) and issubclass(v, DomainEvent)
                )
            elif dataclasses.is_dataclass(value) and value.__dataclass_params__.frozen:  # type: ignore[attr-defined]
                yield value


DOMAIN_CLASSES = sorted(set(_domain_classes()), key=lambda c: f"{c.__module__}.{c.__qualname__}")
QUICKENED = sorted(DATACLASS_INIT, key=lambda c: f"{c.__module__}.{c.__qualname__}")


def _value(annotation: str, name: str, n: int) -> Any:  # noqa: PLR0911 - one return per kind
    """A value for a field: of its type where a check would look, distinct from every other field's."""
    if annotation.endswith(" | None"):
        annotation = annotation.removesuffix(" | None")
    if annotation in {"str", "PersonalItemKind | str"}:
        return f"{name}-{n}"
    if annotation in {"int", "int | None"}:
        return 1000 + n
    if annotation.startswith("UUID"):
        return UUID(int=n + 1)
    if annotation == "datetime":
        return T0 + timedelta(seconds=n)
    if annotation == "bool":
        return n % 2 == 0
    if annotation == "Cause":
        return Cause(actor=f"actor-{n}", source_system="registrar", occurred_at=T0)
    if annotation.startswith(("list", "Sequence")):
        return [f"{name}-{n}"]
    if annotation.startswith(("dict", "Mapping")):
        return {"key": f"{name}-{n}"}
    return object()  # a value nothing checks: kept as it is


def _arguments(cls: type[Any]) -> dict[str, Any]:
    return {f.name: _value(str(f.type), f.name, n) for n, f in enumerate(dataclasses.fields(cls))}


def _made_by_the_dataclass(cls: type[Any], *args: Any, **kwargs: Any) -> Any:
    instance = object.__new__(cls)
    DATACLASS_INIT[cls](instance, *args, **kwargs)
    return instance


def _id(cls: Any) -> str:
    return getattr(cls, "__qualname__", "")


def test_every_event_and_frozen_value_of_the_domain_has_the_quick_init() -> None:
    assert len(DOMAIN_CLASSES) > 40
    missing = [c.__qualname__ for c in DOMAIN_CLASSES if c not in DATACLASS_INIT]
    assert missing == []
    # The consumer's per-message values too.
    assert {consumers.translate.Position, consumers.contract.Decoded} <= set(DATACLASS_INIT)


@pytest.mark.parametrize("cls", QUICKENED, ids=_id)
def test_the_quick_init_takes_what_the_dataclass_init_takes(cls: type[Any]) -> None:
    quick, original = inspect.signature(cls.__init__), inspect.signature(DATACLASS_INIT[cls])
    assert list(quick.parameters.values()) == list(original.parameters.values())
    assert cls.__init__.__qualname__ == f"{cls.__qualname__}.__init__"


@pytest.mark.parametrize("cls", QUICKENED, ids=_id)
def test_the_quick_init_stores_the_same_attributes_in_the_same_order(cls: type[Any]) -> None:
    arguments = _arguments(cls)
    ours = cls(**arguments)
    theirs = _made_by_the_dataclass(cls, **arguments)
    # The order is the stored event's JSON key order: compared as lists, not as dicts.
    assert list(vars(ours).items()) == list(vars(theirs).items())
    assert list(vars(ours)) == [f.name for f in dataclasses.fields(cls)]
    # Positionally, as far as the signature allows, and with the defaults left out.
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    positional = [arguments[p.name] for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    keywords = {p.name: arguments[p.name] for p in parameters if p.kind is p.KEYWORD_ONLY}
    assert list(vars(cls(*positional, **keywords)).items()) == list(vars(theirs).items())
    required = {p.name: arguments[p.name] for p in parameters if p.default is p.empty}
    assert list(vars(cls(**required)).items()) == list(vars(_made_by_the_dataclass(cls, **required)).items())


@pytest.mark.parametrize("cls", QUICKENED, ids=_id)
def test_the_quick_init_refuses_what_the_dataclass_init_refuses(cls: type[Any]) -> None:
    arguments = _arguments(cls)
    parameters = list(inspect.signature(cls.__init__).parameters.values())[1:]
    wrongs = [{**arguments, "no_such_field": 1}]
    wrongs += [
        {k: v for k, v in arguments.items() if k != p.name} for p in parameters if p.default is p.empty
    ][:1]
    for wrong in wrongs:
        with pytest.raises(TypeError) as ours:
            cls(**wrong)
        with pytest.raises(TypeError) as theirs:
            _made_by_the_dataclass(cls, **wrong)
        assert str(ours.value).split("() ", 1)[-1] == str(theirs.value).split("() ", 1)[-1]


def test_an_events_post_init_still_checks_its_originator_id() -> None:
    event_class = next(c for c in QUICKENED if issubclass(c, Aggregate.Created))
    arguments = {**_arguments(event_class), "originator_id": "not-a-uuid"}
    with pytest.raises(TypeError, match="non-UUID originator_id"):
        event_class(**arguments)


@pytest.mark.parametrize(
    "wrong",
    [
        {"occurred_at": datetime(2026, 4, 1, 9, 30)},  # naive: refused
        {"actor": ""},
        {"upstream_event_id": "a\x00b"},
        {"kafka_position": "x" * 201},
    ],
)
def test_a_cause_is_still_checked(wrong: dict[str, Any]) -> None:
    arguments = {"actor": "operator:a", "source_system": "registrar", "occurred_at": T0, **wrong}
    with pytest.raises(InvalidCommand) as ours:
        Cause(**arguments)
    with pytest.raises(InvalidCommand) as theirs:
        _made_by_the_dataclass(Cause, **arguments)
    assert str(ours.value) == str(theirs.value)


def test_a_frozen_value_stays_frozen() -> None:
    cause = Cause(actor="a", source_system="registrar", occurred_at=T0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cause.actor = "b"  # type: ignore[misc]


def _untouched(cls: type[Any]) -> bool:
    before = cls.__dict__.get("__init__")
    return quick_init(cls) is cls and cls.__dict__.get("__init__") is before and cls not in DATACLASS_INIT


def test_classes_whose_init_does_more_than_store_fields_keep_their_own() -> None:
    @dataclasses.dataclass(frozen=True)
    class WithFactory:
        items: list[str] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True)
    class WithInitVar:
        a: int
        b: dataclasses.InitVar[int]

        def __post_init__(self, b: int) -> None:
            object.__setattr__(self, "a", self.a + b)

    @dataclasses.dataclass(frozen=True)
    class NotInInit:
        a: int
        b: int = dataclasses.field(init=False, default=0)

    @dataclasses.dataclass(frozen=True, slots=True)
    class Slotted:
        a: int

    @dataclasses.dataclass(frozen=True)
    class HandWritten:
        a: int

        def __init__(self, a: int) -> None:
            object.__setattr__(self, "a", a * 2)

    @dataclasses.dataclass
    class NotFrozen:
        a: int

    for cls in (WithFactory, WithInitVar, NotInInit, Slotted, HandWritten, NotFrozen, int):
        assert _untouched(cls), cls.__name__
    assert WithInitVar(1, 2).a == 3
    assert HandWritten(2).a == 4
    assert WithFactory().items == []


def test_keyword_only_fields_and_defaults_are_kept() -> None:
    @quick_init
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class Keywords:
        a: int
        b: str = "b"

    assert Keywords in DATACLASS_INIT
    assert list(vars(Keywords(a=1)).items()) == [("a", 1), ("b", "b")]
    with pytest.raises(TypeError):
        Keywords(1)  # type: ignore[call-arg]
    assert inspect.signature(Keywords.__init__) == inspect.signature(DATACLASS_INIT[Keywords])
    made = uuid4()
    assert Keywords(a=2, b=str(made)) == Keywords(a=2, b=str(made))
