"""What a view is: its tables, and how one event changes its rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from eventsourcing.persistence import Mapper, Notification

from kiroku.persistence.recorders import event_type_of
from projections.sql import Table, Writer

_NOT_YET: Any = object()


class Notified:
    """An event with where it stands in the event store's notification log.

    The stored event is decoded when ``event`` is first read, so an event that
    no view reads is never decoded.
    """

    __slots__ = ("_event", "_mapper", "event_type", "notification_id", "stored", "topic")

    def __init__(self, stored: Notification, mapper: Mapper[Any]) -> None:
        self.stored = stored
        self.notification_id: int = stored.id
        self.topic: str = stored.topic
        #: ``Aggregate.Event``, from the stored topic ``module:Aggregate.Event``.
        self.event_type = event_type_of(stored.topic)
        self._mapper = mapper
        self._event = _NOT_YET

    @property
    def event(self) -> Any:
        if self._event is _NOT_YET:
            self._event = self._mapper.to_domain_event(self.stored)
        return self._event


def notified_page(notifications: Sequence[Notification], mapper: Mapper[Any]) -> list[Notified]:
    return [Notified(n, mapper) for n in notifications]


class View(ABC):
    """A read model built from the events, in tables of its own.

    ``name`` is what readers ask for; ``schema`` is bumped whenever the tables or
    the meaning of a row change, which calls for a rebuild beside the old one.
    ``event_types`` names the kinds of event (``Aggregate.Event``) the view
    reads; only those are given to :meth:`apply` (and so decoded). None means
    every event.

    A view may also apply a page of events inside the database with one SQL
    statement (:meth:`database_page`) on the backends ``in_database`` names;
    there its :meth:`apply` is kept for the pages that statement cannot take.
    """

    name: ClassVar[str]
    schema: ClassVar[int]
    tables: ClassVar[Sequence[Table]]
    event_types: ClassVar[frozenset[str] | None] = None
    in_database: ClassVar[frozenset[str]] = frozenset()
    #: The indexes (table, columns...) that applying events looks rows up by, besides
    #: primary keys: a rebuild makes the others once at the end (a sort), not row by
    #: row. None: not known, so a rebuild makes every index first.
    indexes_applying_reads: ClassVar[frozenset[tuple[str, ...]] | None] = None

    def uses(self, notified: Notified) -> bool:
        return self.event_types is None or notified.event_type in self.event_types

    def database_page(self, names: Mapping[str, str], events: str) -> str:
        """The statement that applies the stored events ``%(first)s`` to ``%(last)s`` of ``events``.

        ``names`` are the generation's tables. The statement reads each event's
        state as the JSON the event store keeps. Only for backends in ``in_database``.
        """
        raise NotImplementedError(f"view {self.name} applies its events in Python only")

    def prepare(self, page: Sequence[Notified]) -> None:  # noqa: B027 - most views need nothing
        """Reads what applying this page needs from outside the view, before its transaction opens."""

    @abstractmethod
    def apply(self, notified: Notified, rows: Writer) -> None:
        """Changes the rows for one event. Events the view does not use are ignored."""
