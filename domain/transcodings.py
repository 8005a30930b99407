"""How kiroku's value objects are stored inside events (JSON)."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from datetime import datetime
from json.encoder import c_make_encoder, encode_basestring  # type: ignore[attr-defined]
from typing import Any
from uuid import UUID

from eventsourcing.persistence import (
    DatetimeAsISO,
    JSONTranscoder,
    Mapper,
    StoredEvent,
    Transcoding,
    UUIDAsHex,
)
from eventsourcing.utils import get_topic

from domain.cause import Cause
from domain.personal import Sealed


class CauseAsDict(Transcoding):
    type = Cause
    name = "kiroku.cause"

    def encode(self, obj: Any) -> dict[str, Any]:
        assert isinstance(obj, Cause)
        return {
            "actor": obj.actor,
            "source_system": obj.source_system,
            "occurred_at": obj.occurred_at.isoformat(),
            "upstream_event_id": obj.upstream_event_id,
            "correlation_id": obj.correlation_id,
            "kafka_position": obj.kafka_position,
        }

    def decode(self, data: Any) -> Cause:
        return Cause.restored(
            actor=data["actor"],
            source_system=data["source_system"],
            occurred_at=datetime.fromisoformat(data["occurred_at"]),
            upstream_event_id=data.get("upstream_event_id"),
            correlation_id=data.get("correlation_id"),
            kafka_position=data.get("kafka_position"),
        )


class SealedAsDict(Transcoding):
    type = Sealed
    name = "kiroku.sealed"

    def encode(self, obj: Any) -> dict[str, Any]:
        assert isinstance(obj, Sealed)
        return {
            "s": obj.subject_id.hex,
            "g": obj.generation,
            "k": obj.kind,
            "b": base64.b64encode(obj.blob).decode("ascii"),
        }

    def decode(self, data: Any) -> Sealed:
        return Sealed.restored(UUID(data["s"]), int(data["g"]), data["k"], binascii.a2b_base64(data["b"]))


def register_kiroku_transcodings(transcoder: JSONTranscoder) -> None:
    transcoder.register(CauseAsDict())
    transcoder.register(SealedAsDict())


def _null(_: Any) -> str:
    return "null"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _optional(value: str | None) -> str:
    return "null" if value is None else encode_basestring(value)


class KirokuTranscoder(JSONTranscoder):
    """The library's JSON transcoder, with a faster way to the same bytes for an event's state.

    The library encodes each UUID, time, cause and sealed value by calling back
    from the C encoder into Python for a dict, which it then encodes: about
    three quarters of the cost of storing an event. Here the top-level values
    of the usual kinds are written as JSON text directly, with the library's
    own string escaping; anything else (lists, mappings, enums, floats, types
    of other transcodings) goes through the library's encoder as before. The
    output is byte for byte the library's (a property test compares them), so
    stored events, their readers and the SQL that reads their JSON see no
    difference.
    """

    def __init__(self) -> None:
        super().__init__()
        self._writers: dict[type, Callable[[Any], str]] | None = None
        # The library's encoder's settings, made once (its encode makes one per call).
        # No circular-reference markers: events hold no cycles, and markers shared
        # between threads could report one falsely.
        self._nested: Callable[[Any], str] = self.encoder.encode
        if c_make_encoder is not None:
            # markers, default, encoder, indent, separators, sort_keys, skipkeys, allow_nan
            made = c_make_encoder(
                None, self._encode_obj, encode_basestring, None, ":", ",", False, False, True
            )
            self._nested = lambda value: "".join(made(value, 0))
        self._keys: dict[str, str] = {}
        # The last cause written, and its text: a command's events share one cause.
        self._last_cause: tuple[Any, str] = (None, "")

    def register(self, transcoding: Transcoding) -> None:
        super().register(transcoding)
        self._writers = None

    def _writers_now(self) -> dict[type, Callable[[Any], str]]:
        writers: dict[type, Callable[[Any], str]] = {
            str: encode_basestring,
            type(None): _null,
            bool: _bool,
            int: int.__repr__,
            list: self._list,
            dict: self._dict,
        }
        # Only where the registered transcoding is the one this writes the form of.
        uuid_as = self.types.get(UUID)
        if type(uuid_as) is UUIDAsHex:
            prefix = f'{{"_type_":{encode_basestring(uuid_as.name)},"_data_":"'
            writers[UUID] = lambda value: prefix + value.hex + '"}'
        time_as = self.types.get(datetime)
        if type(time_as) is DatetimeAsISO:
            time_prefix = f'{{"_type_":{encode_basestring(time_as.name)},"_data_":'
            writers[datetime] = lambda value: time_prefix + encode_basestring(value.isoformat()) + "}"
        if type(self.types.get(Cause)) is CauseAsDict:
            writers[Cause] = self._cause
        if type(self.types.get(Sealed)) is SealedAsDict:
            writers[Sealed] = self._sealed
        self._writers = writers
        return writers

    # A list is written here when every value in it is of a kind written here (a
    # record's sealed items); a value of any other kind sends the whole of it the
    # library's way. So do its mappings and lists: the C encoder writes plain ones
    # faster than Python (a provision's items). A mapping goes through the loop
    # that writes an event's attributes (_members).

    def _list(self, values: list[Any]) -> str:
        writers = self._writers or self._writers_now()
        parts = []
        for value in values:
            kind = type(value)
            writer = None if kind is dict or kind is list else writers.get(kind)
            if writer is None:
                return self._nested(values)
            parts.append(writer(value))
        return "[" + ",".join(parts) + "]"

    def _dict(self, mapping: dict[Any, Any]) -> str:
        text = self._members(mapping, (), nested=True)
        return self._nested(mapping) if text is None else text

    def _cause(self, cause: Cause) -> str:
        last = self._last_cause  # one read: another thread may replace it meanwhile
        if last[0] is cause:
            return last[1]
        text = (
            f'{{"_type_":{encode_basestring(CauseAsDict.name)},"_data_":{{'
            f'"actor":{encode_basestring(cause.actor)},'
            f'"source_system":{encode_basestring(cause.source_system)},'
            f'"occurred_at":{encode_basestring(cause.occurred_at.isoformat())},'
            f'"upstream_event_id":{_optional(cause.upstream_event_id)},'
            f'"correlation_id":{_optional(cause.correlation_id)},'
            f'"kafka_position":{_optional(cause.kafka_position)}}}}}'
        )
        self._last_cause = (cause, text)
        return text

    def _sealed(self, sealed: Sealed) -> str:
        if type(sealed.generation) is not int:
            raise TypeError("not a plain int")
        return (
            f'{{"_type_":{encode_basestring(SealedAsDict.name)},"_data_":{{'
            f'"s":"{sealed.subject_id.hex}","g":{int.__repr__(sealed.generation)},'
            f'"k":{encode_basestring(sealed.kind)},'
            f'"b":"{base64.b64encode(sealed.blob).decode("ascii")}"}}}}'
        )

    def encode(self, obj: Any) -> bytes:
        if type(obj) is not dict:
            return super().encode(obj)
        return self._encode_state(obj, ())

    def encode_event_state(self, state: dict[str, Any]) -> bytes:
        """``encode`` of an event's attributes less its id and version (the mapper stores those apart)."""
        return self._encode_state(state, _EVENT_IDS)

    def _encode_state(self, obj: dict[Any, Any], leave_out: tuple[str, ...]) -> bytes:
        text = self._members(obj, leave_out, nested=False)
        if text is None:
            return super().encode({k: v for k, v in obj.items() if k not in leave_out})
        return text.encode("utf8")

    def _members(self, mapping: dict[Any, Any], leave_out: tuple[str, ...], *, nested: bool) -> str | None:
        """A mapping as JSON text, each value by its writer; None for the library's way with all of it.

        An event's attributes (not ``nested``): a value without a writer goes the
        library's way alone, and the names' text is kept for next time (a few
        dozen). A mapping inside a value (``nested``): one name that is not a str
        or one value without a writer sends all of it to the C encoder, which
        writes plain mappings faster than Python.
        """
        writers = self._writers or self._writers_now()
        keys = self._keys
        parts = []
        for key, value in mapping.items():
            if key in leave_out:
                continue
            name = keys.get(key)
            if name is None:
                if type(key) is not str:
                    return None
                name = encode_basestring(key) + ":"
                if not nested and len(keys) < 1024:
                    keys[key] = name
            writer = writers.get(type(value))
            if writer is None:
                if nested:
                    return None
                parts.append(name + self._nested(value))
                continue
            try:
                parts.append(name + writer(value))
            except (TypeError, AttributeError):
                # A cause or sealed value holding something unusual: the library's way.
                parts.append(name + self._nested(value))
        return "{" + ",".join(parts) + "}"


# What the library's mapper takes out of an event's attributes into the stored event's columns.
_EVENT_IDS = ("originator_id", "originator_version")


class KirokuMapper(Mapper[UUID]):
    """The library's mapper, storing an event's attributes without copying them first.

    The library copies an event's attributes, takes out its id and version,
    encodes the rest and builds the stored event through its frozen
    dataclass's ``__init__``: 1-2 µs an event around the encoding. This writes
    the attributes less those two straight from the event, and makes the
    stored event with the same four fields. With a cipher or a compressor, or
    for an event class that is not at its first version, it is the library's
    way. A property test holds the two to equal stored events.
    """

    def __init__(self, transcoder: Any, compressor: Any = None, cipher: Any = None) -> None:
        super().__init__(transcoder, compressor=compressor, cipher=cipher)
        self._topics: dict[type, str | None] = {}

    def _topic(self, cls: type) -> str | None:
        """The class's topic, or None where the library's way is needed."""
        try:
            return self._topics[cls]
        except KeyError:
            plain = (
                isinstance(self.transcoder, KirokuTranscoder)
                and not self.compressor
                and not self.cipher
                and getattr(cls, "class_version", 1) == 1
            )
            topic = self._topics[cls] = get_topic(cls) if plain else None
            return topic

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        topic = self._topic(type(domain_event))
        if topic is None:
            return super().to_stored_event(domain_event)
        state = vars(domain_event)
        assert isinstance(self.transcoder, KirokuTranscoder)
        stored = object.__new__(StoredEvent)
        # As the frozen dataclass's __init__ sets them, in one step.
        object.__setattr__(
            stored,
            "__dict__",
            {
                "originator_id": state["originator_id"],
                "originator_version": state["originator_version"],
                "topic": topic,
                "state": self.transcoder.encode_event_state(state),
            },
        )
        return stored
