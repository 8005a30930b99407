"""A new aggregate from its created event, the way the library makes it, with less on the way.

The library's ``Aggregate._create`` is general: it filters its keyword
arguments for ``create_id``, checks for explicit topics, copies the arguments
twice and then, in the created event's ``mutate``, resolves the aggregate's
class from its topic and filters the event's fields for ``__base_init__`` and
for ``__init__`` by their signatures, on every call. Ingest creates about two
aggregates a message, and that generality was two thirds of each creation's
cost. :func:`create` does the same steps with what a class needs worked out
once per class; the result equals the library's: the same created event, the
same aggregate state (``tests/unit/test_creation.py`` holds every aggregate
kiroku has to that).

Reading an aggregate back from its stored events still goes through the
library's ``mutate``; that is the test of this shortcut as well.
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.domain import Aggregate, CanInitAggregate
from eventsourcing.utils import get_topic

A = TypeVar("A", bound=Aggregate)

_PLANS: dict[type[Any], tuple[str, tuple[str, ...], bool]] = {}


def _plan(cls: type[Any]) -> tuple[str, tuple[str, ...], bool]:
    """The class's topic, the names ``__init__`` takes, and whether it takes the id."""
    plan = _PLANS.get(cls)
    if plan is None:
        parameters = [
            p
            for name, p in inspect.signature(cls.__init__).parameters.items()
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]
        names = tuple(p.name for p in parameters if p.name != "id")
        plan = _PLANS[cls] = (get_topic(cls), names, len(names) != len(parameters))
    return plan


def create(cls: type[A], event_class: type[CanInitAggregate[UUID]], aggregate_id: UUID, **fields: Any) -> A:
    """A new ``cls`` with id ``aggregate_id``, made by an ``event_class`` event with these fields.

    As ``cls._create(event_class, id=aggregate_id, **fields)``: the event is the
    aggregate's first pending event, its ``__init__`` gets the fields it names,
    then the event's ``apply`` runs.
    """
    if type(aggregate_id) is not UUID:
        raise TypeError(f"an aggregate id is a UUID, not {type(aggregate_id).__name__}")
    topic, init_names, init_takes_id = _plan(cls)
    timestamp = fields.pop("timestamp", None) or event_class.create_timestamp()
    event = event_class(  # type: ignore[call-arg]
        originator_topic=topic,
        originator_id=aggregate_id,
        originator_version=cls.INITIAL_VERSION,
        timestamp=timestamp,
        **fields,
    )
    aggregate = cls.__new__(cls)
    aggregate.__base_init__(aggregate_id, cls.INITIAL_VERSION, timestamp)
    state = vars(event)
    arguments = {name: state[name] for name in init_names if name in state}
    if init_takes_id:
        arguments["id"] = aggregate_id
    aggregate.__init__(**arguments)  # type: ignore[misc]
    event.apply(aggregate)
    aggregate.pending_events.append(event)
    return aggregate
