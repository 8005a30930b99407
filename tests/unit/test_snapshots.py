"""The snapshot codec: every value comes back with its type; nothing outside the domain is made."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from domain.cause import Cause
from domain.codes import Channel
from domain.personal import Sealed
from domain.snapshots import SNAPSHOT_FORMAT, KirokuSnapshot, SnapshotStateError, plain, restored
from domain.subject import DataSubject, StopRequest
from tests.helpers import scalar_values

ZONES = st.sampled_from([UTC, timezone(timedelta(hours=9)), timezone(timedelta(hours=-5, minutes=-30))])
MOMENTS = st.datetimes(timezones=ZONES) | st.datetimes()
SEALED = st.builds(
    Sealed,
    subject_id=st.uuids(),
    generation=st.integers(1, 5),
    kind=st.sampled_from(["email", "name", "phone"]),
    blob=st.binary(max_size=40),
)
LEAVES = (
    scalar_values(st.text())
    | MOMENTS
    | st.dates()
    | st.binary(max_size=20)
    | st.sampled_from(list(Channel))
    | SEALED
)


def _nested(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    hashable = scalar_values(st.text()) | st.tuples(st.uuids(), st.text(max_size=5))
    return st.recursive(
        leaves,
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.lists(st.uuids(), min_size=1, max_size=5)
            | st.tuples(inner, inner)
            | st.sets(hashable, max_size=4)
            | st.sets(st.uuids(), max_size=4)
            | st.frozensets(st.uuids(), max_size=3)
            | st.dictionaries(hashable, inner, max_size=4)
        ),
        max_leaves=12,
    )


def _same(a: Any, b: Any) -> None:
    """Equal, and of the same type all the way down (1 == 1.0 == True would pass plain ==)."""
    assert type(a) is type(b)
    if isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _same(x, y)
    elif isinstance(a, dict):
        assert list(a) == list(b)
        for key in a:
            _same(a[key], b[key])
    elif isinstance(a, datetime):
        assert (a, a.tzinfo and a.utcoffset()) == (b, b.tzinfo and b.utcoffset())
    elif isinstance(a, float) and a != a:  # noqa: PLR0124 - NaN is not generated, but be exact
        assert b != b  # noqa: PLR0124
    else:
        assert a == b


@settings(max_examples=300, deadline=None)
@given(_nested(LEAVES))
def test_a_value_comes_back_as_it_was_through_json(value: Any) -> None:
    text = json.dumps(plain(value))
    _same(restored(json.loads(text)), value)


def test_a_list_of_uuids_is_one_string() -> None:
    ids = [uuid4() for _ in range(3)]
    assert plain(ids) == {"U": "".join(i.hex for i in ids)}
    assert plain({ids[0]}) == {"S": ids[0].hex}
    assert plain([]) == []


def test_a_dataclass_of_the_domain_comes_back_with_its_fields() -> None:
    cause = Cause("api", "registrar", datetime(2026, 1, 1, tzinfo=UTC), "e-1", "c-1", "t:0:1")
    request = StopRequest("r-1", datetime(2026, 1, 2, tzinfo=UTC), "accepted", "because", None, [uuid4()])
    for value in (cause, request):
        back = restored(json.loads(json.dumps(plain(value))))
        assert type(back) is type(value)
        assert back == value


@pytest.mark.parametrize(
    "value",
    [object(), 1 + 2j, bytearray(b"x"), UUID],
    ids=["object", "complex", "bytearray", "a class"],
)
def test_a_value_of_another_kind_is_refused_without_showing_it(value: Any) -> None:
    with pytest.raises(SnapshotStateError) as raised:
        plain(value)
    assert repr(value) not in str(raised.value)


@pytest.mark.parametrize(
    "form",
    [
        {"c": ["builtins:dict", {}]},
        {"e": ["os:PathLike", "x"]},
        {"c": ["domain.subject:DataSubject", {}]},  # a domain class, but not a dataclass
        {"zz": 1},
        {"u": "a", "dt": "b"},
        {"U": "abc"},
    ],
    ids=["outside class", "outside enum", "not a dataclass", "unknown tag", "two tags", "short run"],
)
def test_a_form_that_was_not_written_here_is_refused(form: dict[str, Any]) -> None:
    with pytest.raises(SnapshotStateError):
        restored(form)


def _subject() -> DataSubject:
    cause = Cause("api", "registrar", datetime(2026, 1, 1, tzinfo=UTC), "e-1", None, None)
    subject = DataSubject.register(subject_id=uuid4(), key_kind="email", cause=cause)
    subject.appear_on(uuid4(), cause)
    subject.request_stop(request_id="s-1", cause=cause)
    subject.collect_events()
    return subject


def test_an_aggregate_comes_back_from_its_snapshot() -> None:
    subject = _subject()
    snapshot = KirokuSnapshot.take(subject)
    assert snapshot.readable and snapshot.originator_version == subject.version
    back = snapshot.mutate(None)
    assert type(back) is DataSubject
    assert vars(back) == vars(subject)
    assert back.records == 1 and type(back.stop_requests["s-1"]) is type(subject.stop_requests["s-1"])


def test_an_aggregate_with_unsaved_events_is_not_snapshotted() -> None:
    subject = _subject()
    subject.appear_on(uuid4(), _cause())
    with pytest.raises(SnapshotStateError):
        KirokuSnapshot.take(subject)


def _cause() -> Cause:
    return Cause("api", "registrar", datetime(2026, 1, 1, tzinfo=UTC), "e-2", None, None)


def test_a_snapshot_of_another_format_is_not_read() -> None:
    snapshot = KirokuSnapshot.take(_subject())
    old = KirokuSnapshot(
        originator_id=snapshot.originator_id,
        originator_version=snapshot.originator_version,
        timestamp=snapshot.timestamp,
        topic=snapshot.topic,
        state={**snapshot.state, "~format": SNAPSHOT_FORMAT - 1},
    )
    assert not old.readable
    with pytest.raises(SnapshotStateError):
        old.mutate(None)


def test_dates_and_zones_are_kept() -> None:
    moment = datetime(2026, 3, 4, 5, 6, 7, 891, tzinfo=timezone(timedelta(hours=9)))
    back = restored(json.loads(json.dumps(plain([moment, date(2026, 1, 2)]))))
    assert back == [moment, date(2026, 1, 2)]
    assert back[0].utcoffset() == timedelta(hours=9)
