"""What a view is: its tables, and how one event changes its rows."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from projections.sql import Table, Writer


@dataclass(frozen=True)
class Notified:
    """An event with where it stands in the event store's notification log."""

    notification_id: int
    topic: str
    event: Any
    #: ``Aggregate.Event``, from the stored topic ``module:Aggregate.Event``; every view
    #: asks for it, so it is worked out once.
    event_type: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "event_type", self.topic.rsplit(":", 1)[-1])


class View(ABC):
    """A read model built from the events, in tables of its own.

    ``name`` is what readers ask for; ``schema`` is bumped whenever the tables or
    the meaning of a row change, which calls for a rebuild beside the old one.
    """

    name: ClassVar[str]
    schema: ClassVar[int]
    tables: ClassVar[Sequence[Table]]

    def prepare(self, page: Sequence[Notified]) -> None:  # noqa: B027 - most views need nothing
        """Reads what applying this page needs from outside the view, before its transaction opens."""

    @abstractmethod
    def apply(self, notified: Notified, rows: Writer) -> None:
        """Changes the rows for one event. Events the view does not use are ignored."""
