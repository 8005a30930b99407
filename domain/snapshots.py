"""Snapshots of aggregates with long histories, so a first read need not replay every event.

A snapshot holds an aggregate's state at one version; reading the aggregate
then means the snapshot plus the events stored after it. Snapshots are
derived data: they can be deleted at any time, and a snapshot this code
cannot read (an aggregate class whose state changed shape since, see
``SNAPSHOT_FORMAT``) is ignored and the events are read instead.

The state is written as plain JSON values with a one-key tag for every
other kind of value, so that it comes back with the same types: a tuple as
a tuple, a set as a set, a dictionary with tuple keys as one, a UUID, a
moment with its zone, bytes, enumerations and the domain's dataclasses
(sealed values, causes, stop requests). Lists of UUIDs, the long part of a
long history's state (an account's certificates, a person's records), are
written as one string of hex digits. Sealed values stay sealed: a snapshot
holds nothing an event does not.
"""

from __future__ import annotations

import base64
import dataclasses
from datetime import date, datetime
from enum import Enum
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, Snapshot
from eventsourcing.utils import get_topic, resolve_topic

from domain.quickinit import quick_init

#: Written into every snapshot. Raise it when an aggregate's attributes change
#: (a new one, a renamed one, another type): snapshots of another format are
#: ignored, so no aggregate is ever made from a state its class no longer has.
# 2: an ACME account counts its certificates; 3: a data subject its records and provisions.
SNAPSHOT_FORMAT = 3

_FORMAT_KEY = "~format"
_BASE_ATTRIBUTES = ("_id", "_version", "_pending_events")
#: Classes a snapshot may name: kiroku's own domain, nothing else.
_TRUSTED_MODULE = "domain."


class SnapshotStateError(ValueError):
    """A state that cannot be written to a snapshot, or a snapshot that cannot be read back."""


def _uuid_run(values: list[Any] | set[Any] | frozenset[Any]) -> str | None:
    """The values as one string of hex digits, if every one is a UUID (and there is one)."""
    if not values:
        return None
    for value in values:
        if type(value) is not UUID:
            return None
    return "".join([value.hex for value in values])


def _uuids(run: str) -> list[UUID]:
    if len(run) % 32:
        raise SnapshotStateError("a run of UUIDs has a length that is not a multiple of 32")
    return [UUID(hex=run[i : i + 32]) for i in range(0, len(run), 32)]


def _trusted(topic: str) -> Any:
    if not isinstance(topic, str) or not topic.startswith(_TRUSTED_MODULE):
        raise SnapshotStateError("a snapshot names a class outside kiroku's domain")
    return resolve_topic(topic)


def plain(value: Any) -> Any:  # noqa: PLR0911, PLR0912 - one return per kind of value
    """``value`` as JSON values, tagged so that :func:`restored` gives back the same types."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind is list:
        run = _uuid_run(value)
        return {"U": run} if run is not None else [plain(v) for v in value]
    if kind is tuple:
        return {"t": [plain(v) for v in value]}
    if kind is set or kind is frozenset:
        run = _uuid_run(value)
        if run is not None:
            return {"S" if kind is set else "FS": run}
        return {"s" if kind is set else "fs": [plain(v) for v in value]}
    if kind is dict:
        return {"d": [[plain(k), plain(v)] for k, v in value.items()]}
    if kind is UUID:
        return {"u": value.hex}
    if kind is datetime:
        return {"dt": value.isoformat()}
    if kind is date:
        return {"da": value.isoformat()}
    if kind is bytes:
        return {"b": base64.b64encode(value).decode("ascii")}
    if isinstance(value, Enum):
        return {"e": [get_topic(kind), plain(value.value)]}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        topic = get_topic(kind)
        if not topic.startswith(_TRUSTED_MODULE):
            raise SnapshotStateError(f"cannot snapshot a value of type {kind.__name__}")
        return {"c": [topic, {name: plain(v) for name, v in vars(value).items()}]}
    raise SnapshotStateError(f"cannot snapshot a value of type {kind.__name__}")


def restored(value: Any) -> Any:  # noqa: PLR0911, PLR0912 - one return per tag
    """The value :func:`plain` was given."""
    if type(value) is list:
        return [restored(v) for v in value]
    if type(value) is not dict:
        return value
    if len(value) != 1:
        raise SnapshotStateError("a snapshot value has an unknown form")
    ((tag, body),) = value.items()
    if tag == "U":
        return _uuids(body)
    if tag == "t":
        return tuple(restored(v) for v in body)
    if tag == "S":
        return set(_uuids(body))
    if tag == "FS":
        return frozenset(_uuids(body))
    if tag == "s":
        return {restored(v) for v in body}
    if tag == "fs":
        return frozenset(restored(v) for v in body)
    if tag == "d":
        return {restored(k): restored(v) for k, v in body}
    if tag == "u":
        return UUID(hex=body)
    if tag == "dt":
        return datetime.fromisoformat(body)
    if tag == "da":
        return date.fromisoformat(body)
    if tag == "b":
        return base64.b64decode(body)
    if tag == "e":
        topic, member = body
        return _trusted(topic)(restored(member))
    if tag == "c":
        topic, fields = body
        cls = _trusted(topic)
        if not isinstance(cls, type) or not dataclasses.is_dataclass(cls):
            raise SnapshotStateError("a snapshot names a class that is not a dataclass")
        instance = object.__new__(cls)
        # As it was, field by field, without running __init__ again (frozen ones too).
        instance.__dict__.update({name: restored(v) for name, v in fields.items()})
        return instance
    raise SnapshotStateError("a snapshot value has an unknown tag")


@quick_init
class KirokuSnapshot(Snapshot):
    """An aggregate's state at a version, written with :func:`plain`."""

    @classmethod
    def take(cls, aggregate: Any) -> KirokuSnapshot:
        """The aggregate as it is now (its pending events must have been saved)."""
        if not isinstance(aggregate, Aggregate):
            raise SnapshotStateError("only aggregates are snapshotted")
        if aggregate.pending_events:
            raise SnapshotStateError("an aggregate with unsaved events is not snapshotted")
        state = {name: plain(v) for name, v in vars(aggregate).items() if name not in _BASE_ATTRIBUTES}
        state[_FORMAT_KEY] = SNAPSHOT_FORMAT
        return cls(
            originator_id=aggregate.id,
            originator_version=aggregate.version,
            timestamp=cls.create_timestamp(),
            topic=get_topic(type(aggregate)),
            state=state,
        )

    @property
    def readable(self) -> bool:
        """Written in this code's format (else it is ignored and the events are read)."""
        return isinstance(self.state, dict) and self.state.get(_FORMAT_KEY) == SNAPSHOT_FORMAT

    def mutate(self, _: Any) -> Any:
        """The aggregate at the snapshot's version."""
        if not self.readable:
            raise SnapshotStateError("a snapshot of another format")
        cls = _trusted(self.topic)
        state = {name: restored(v) for name, v in self.state.items() if name != _FORMAT_KEY}
        state["_id"] = self.originator_id
        state["_version"] = self.originator_version
        state["_pending_events"] = []
        aggregate = object.__new__(cls)
        object.__setattr__(aggregate, "__dict__", state)
        return aggregate
