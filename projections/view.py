"""What a view is: its tables, and how one event changes its rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from eventsourcing.persistence import Mapper, Notification

from projections.sql import Table, Writer


@dataclass(frozen=True)
class Notified:
    """An event with where it stands in the event store's notification log.

    ``event`` is None when no view it was read for uses this kind of event: it
    was not decoded (see :func:`notified_page`).
    """

    notification_id: int
    topic: str
    event: Any
    #: ``Aggregate.Event``, from the stored topic ``module:Aggregate.Event``; every view
    #: asks for it, so it is worked out once.
    event_type: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_type", event_type_of(self.topic))


def wanted_event_types(views: Iterable[View]) -> frozenset[str] | None:
    """Every kind of event one of these views reads; None when one of them reads every event."""
    wanted: set[str] = set()
    for view in views:
        if view.event_types is None:
            return None
        wanted |= view.event_types
    return frozenset(wanted)


def notified_page(
    notifications: Sequence[Notification], mapper: Mapper[Any], wanted: Collection[str] | None
) -> list[Notified]:
    """A page of stored events for views that read ``wanted`` kinds (None: every kind).

    An event none of them reads is not decoded (its ``event`` is None), but it
    stays in the page: a view's position moves past it.
    """
    return [
        Notified(
            n.id,
            n.topic,
            mapper.to_domain_event(n) if wanted is None or event_type_of(n.topic) in wanted else None,
        )
        for n in notifications
    ]


def event_type_of(topic: str) -> str:
    """``Aggregate.Event`` from a stored topic ``module:Aggregate.Event``."""
    return topic.rsplit(":", 1)[-1]


class View(ABC):
    """A read model built from the events, in tables of its own.

    ``name`` is what readers ask for; ``schema`` is bumped whenever the tables or
    the meaning of a row change, which calls for a rebuild beside the old one.
    ``event_types`` names the kinds of event (``Aggregate.Event``) the view
    reads; only those are decoded for it and given to :meth:`apply`. None
    means every event.
    """

    name: ClassVar[str]
    schema: ClassVar[int]
    tables: ClassVar[Sequence[Table]]
    event_types: ClassVar[frozenset[str] | None] = None

    @classmethod
    def uses(cls, notified: Notified) -> bool:
        return cls.event_types is None or notified.event_type in cls.event_types

    def prepare(self, page: Sequence[Notified]) -> None:  # noqa: B027 - most views need nothing
        """Reads what applying this page needs from outside the view, before its transaction opens."""

    @abstractmethod
    def apply(self, notified: Notified, rows: Writer) -> None:
        """Changes the rows for one event. Events the view does not use are ignored."""
