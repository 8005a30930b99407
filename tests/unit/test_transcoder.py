"""kiroku's transcoder writes exactly the bytes the library's JSON transcoder writes.

Stored events are read back by the library's decoder and by SQL over their
JSON text (projections/event_sql.py), so a faster encoder is only acceptable
if nothing can tell the difference.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.compressor import ZlibCompressor
from eventsourcing.persistence import (
    DatetimeAsISO,
    DecimalAsStr,
    JSONTranscoder,
    Mapper,
    UUIDAsHex,
)
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.cause import Cause
from domain.codes import Channel, Purpose
from domain.personal import Sealed
from domain.subject import DataSubject
from domain.transcodings import KirokuMapper, KirokuTranscoder, register_kiroku_transcodings
from tests.helpers import scalar_values


def _made(cls: type[JSONTranscoder]) -> JSONTranscoder:
    transcoder = cls()
    for transcoding in (UUIDAsHex(), DecimalAsStr(), DatetimeAsISO()):
        transcoder.register(transcoding)
    register_kiroku_transcodings(transcoder)
    return transcoder


LIBRARY = _made(JSONTranscoder)
KIROKU = _made(KirokuTranscoder)

texts = st.text(max_size=30)
optional_texts = st.none() | texts
zones = st.none() | st.builds(
    lambda minutes: timezone(timedelta(minutes=minutes)), st.integers(-14 * 60, 14 * 60)
)
times = st.datetimes(timezones=zones)
causes = st.builds(
    Cause.restored,
    actor=texts,
    source_system=texts,
    occurred_at=times,
    upstream_event_id=optional_texts,
    correlation_id=optional_texts,
    kafka_position=optional_texts,
)
sealed = st.builds(Sealed.restored, st.uuids(), st.integers(0, 2**40), texts, st.binary(max_size=40))
leaves = (
    scalar_values(texts)
    | times
    | st.decimals(allow_nan=False, allow_infinity=False)
    | causes
    | sealed
    | st.sampled_from(list(Purpose) + list(Channel))
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(texts, inner, max_size=4)
        | st.dictionaries(st.integers(), inner, max_size=3)
    ),
    max_leaves=12,
)
states = st.dictionaries(texts, values, max_size=8)


@settings(max_examples=600, deadline=None)
@given(states)
def test_any_state_is_written_as_the_library_writes_it(state: dict[str, Any]) -> None:
    assert KIROKU.encode(state) == LIBRARY.encode(state)


@given(st.lists(texts, max_size=5), st.dictionaries(texts, optional_texts, max_size=4))
def test_lists_of_text_and_mappings_of_text_take_the_short_way_to_the_same_bytes(
    names: list[str], mapping: dict[str, str | None]
) -> None:
    state = {"names": names, "mapping": mapping, "mixed": [*names, 1], "nested": {"m": mapping}}
    assert KIROKU.encode(state) == LIBRARY.encode(state)


@given(st.lists(sealed, max_size=5), times, st.uuids(), optional_texts)
def test_sealed_items_and_mappings_of_times_and_ids_take_the_short_way_to_the_same_bytes(
    items: list[Sealed], at: datetime, subject_id: UUID, text: str | None
) -> None:
    state = {
        "items": items,
        "ct_log": {"log_id": text, "logged_at": at},
        "provided": [{"item": "name", "subject_id": subject_id}, {"item": "sans", "subject_id": None}],
        "changes": {"subject": {"id": subject_id, "at": at}, "items": items},
        "mixed": [*items, at, subject_id, text, [text]],
    }
    assert KIROKU.encode(state) == LIBRARY.encode(state)


def _event(cls: type[Any], originator_id: UUID, version: int, state: dict[str, Any]) -> Any:
    """An event of ``cls`` with these attributes, made as the library's mapper makes one it reads."""
    event = object.__new__(cls)
    # The ids last: a generated state may hold keys of the same names (Hypothesis tries the
    # code's own string constants), and an event's ids are its own.
    attributes = {**state, "originator_id": originator_id, "originator_version": version}
    object.__setattr__(event, "__dict__", attributes)
    return event


@settings(max_examples=300, deadline=None)
@given(states, st.uuids(), st.integers(1, 2**40))
def test_an_event_is_stored_as_the_librarys_mapper_stores_it(
    state: dict[str, Any], originator_id: UUID, version: int
) -> None:
    event = _event(DataSubject.AppearedOn, originator_id, version, state)
    ours = KirokuMapper(transcoder=KIROKU).to_stored_event(event)
    assert ours == Mapper(transcoder=LIBRARY).to_stored_event(event)
    assert (ours.originator_id, ours.originator_version) == (originator_id, version)


def test_with_a_compressor_or_an_upcast_event_class_the_mapper_goes_the_librarys_way() -> None:
    state = {"record_id": UUID(int=7), "purposes": ["P1"], "at": datetime(2026, 1, 1, tzinfo=UTC)}
    event = _event(DataSubject.AppearedOn, UUID(int=1), 3, state)
    compressed = KirokuMapper(transcoder=KIROKU, compressor=ZlibCompressor()).to_stored_event(event)
    assert compressed == Mapper(transcoder=LIBRARY, compressor=ZlibCompressor()).to_stored_event(event)

    class Upcast:  # an event class at its second version: the library adds the version to the state
        class_version = 2

    upcast = _event(Upcast, UUID(int=1), 3, state)
    stored = KirokuMapper(transcoder=KIROKU).to_stored_event(upcast)
    assert stored == Mapper(transcoder=LIBRARY).to_stored_event(upcast)
    assert b'"class_version":2' in stored.state


def test_the_events_of_one_command_share_their_cause_text_and_another_cause_gets_its_own() -> None:
    first = Cause("ingest", "acme", datetime(2026, 1, 1, tzinfo=UTC), "e-1", "c-1", "acme.events/0/1")
    second = Cause("ingest", "acme", datetime(2026, 1, 1, tzinfo=UTC), "e-2", None, None)
    for cause in (first, first, second, first):
        state = {"originator_topic": "x", "cause": cause, "at": datetime(2026, 1, 2, tzinfo=UTC)}
        assert KIROKU.encode(state) == LIBRARY.encode(state)


def test_unusual_values_inside_a_cause_or_sealed_value_go_the_librarys_way() -> None:
    odd_cause = Cause.restored(
        actor="a",
        source_system="s",
        occurred_at=datetime(2026, 1, 1, tzinfo=UTC),
        upstream_event_id=7,  # type: ignore[arg-type]  # not a str: written as the library writes it
        correlation_id=None,
        kafka_position=None,
    )
    odd_sealed = Sealed.restored(UUID(int=1), True, "name", b"x")
    for state in ({"cause": odd_cause}, {"sealed": odd_sealed}, {"amount": Decimal("1.5")}, {1: "key"}):
        assert KIROKU.encode(state) == LIBRARY.encode(state)


def test_what_is_written_is_read_back_by_the_librarys_decoder() -> None:
    cause = Cause("ingest", "acme", datetime(2026, 1, 1, 9, tzinfo=UTC), "e-1", None, "acme.events/0/1")
    state = {
        "cause": cause,
        "subject_id": UUID(int=42),
        "name": Sealed.restored(UUID(int=42), 1, "name", b"\x00\x01sealed"),
        "purposes": ["P1", "P2"],
        "recipient": {"recipient_id": "ct:argon", "country": None},
        "timestamp": datetime(2026, 1, 1, 9, 0, 0, 123456, tzinfo=UTC),
    }
    back = LIBRARY.decode(KIROKU.encode(state))
    assert back["cause"] == cause
    assert back["subject_id"] == UUID(int=42)
    assert back["name"].blob == b"\x00\x01sealed"
    assert back["purposes"] == ["P1", "P2"]
    assert back["recipient"] == {"recipient_id": "ct:argon", "country": None}
    assert back["timestamp"] == state["timestamp"]
