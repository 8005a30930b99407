"""A frozen dataclass's ``__init__`` that writes the instance's dict directly.

A frozen dataclass's generated ``__init__`` sets each field with
``object.__setattr__(self, name, value)``, since its own ``__setattr__``
refuses; that call is most of the cost of making an event or a cause (a
certificate's ``Collected`` event, 16 fields: 3.3 µs, against 1.1 µs written
into the dict). Ingest makes about four events, a cause and a handful of
inputs a message. :func:`quick_init` gives a class an ``__init__`` with the
same parameters, kinds and defaults that stores the fields in the same order
(the order is the order of the stored event's JSON), then calls
``__post_init__`` as the generated one does. A class whose ``__init__`` does
more than that (a field with a default factory, an ``InitVar``, a field left
out of ``__init__``) or that has no instance dict keeps its own.

``tests/unit/test_quickinit.py`` holds every event class and frozen input of
``domain`` to the dataclass's own ``__init__``: the same signature, the same
attributes in the same order, the same errors.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from eventsourcing.domain import Aggregate, DomainEvent

T = TypeVar("T")
A = TypeVar("A", bound=Aggregate)

#: The dataclass's own ``__init__`` of each class given a quick one, for the tests.
DATACLASS_INIT: dict[type[Any], Callable[..., None]] = {}


def _can_quicken(cls: type[Any]) -> bool:
    """Whether the class's ``__init__`` is a frozen dataclass's and only stores its fields."""
    if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
        return False
    if not cls.__dictoffset__:  # slots only: there is no dict to write into
        return False
    init = cls.__dict__.get("__init__")
    if init is None or init.__code__.co_filename != "<string>":
        return False  # inherited, or written by hand: not the generated one
    fields = dataclasses.fields(cls)
    if any(f.default_factory is not dataclasses.MISSING for f in fields):
        return False
    # An InitVar is a parameter and no field; a field with init=False, the other way round.
    parameters = list(inspect.signature(init).parameters)[1:]
    return sorted(parameters) == sorted(f.name for f in fields)


def _init_source(cls: type[Any]) -> tuple[str, dict[str, Any]]:
    """The source of the quick ``__init__`` and the names its defaults come from."""
    parameters = list(inspect.signature(cls.__dict__["__init__"]).parameters.values())[1:]
    defaults: dict[str, Any] = {}
    head: list[str] = ["self"]
    keyword_only = False
    for p in parameters:
        if p.kind is p.KEYWORD_ONLY and not keyword_only:
            head.append("*")
            keyword_only = True
        if p.default is p.empty:
            head.append(p.name)
        else:
            defaults[f"_default_{p.name}"] = p.default
            head.append(f"{p.name}=_default_{p.name}")
    body = ["    _d = self.__dict__"]
    body += [f"    _d[{f.name!r}] = {f.name}" for f in dataclasses.fields(cls)]
    if hasattr(cls, "__post_init__"):
        body.append("    self.__post_init__()")
    return f"def __init__({', '.join(head)}):\n" + "\n".join(body) + "\n", defaults


def quick_init(cls: type[T]) -> type[T]:
    """Gives a frozen dataclass the quick ``__init__`` (see the module), if it can have one."""
    if cls in DATACLASS_INIT or not _can_quicken(cls):
        return cls
    original = cls.__dict__["__init__"]
    source, namespace = _init_source(cls)
    exec(source, namespace)  # noqa: S102 - the source is made above from the class's own field names
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__doc__ = original.__doc__
    init.__annotations__ = dict(original.__annotations__)
    DATACLASS_INIT[cls] = original
    cls.__init__ = init  # type: ignore[method-assign]
    return cls


def quicken_events(aggregate: type[A]) -> type[A]:
    """Gives every event class an aggregate class defines the quick ``__init__``."""
    for value in vars(aggregate).values():
        if isinstance(value, type) and issubclass(value, DomainEvent):
            quick_init(value)
    return aggregate
