"""The arithmetic of ``kiroku consume status``: what is behind, lost, or ahead of the broker."""

from __future__ import annotations

import pytest

from consumers.ingest import place
from consumers.lag import IngestLag, PartitionLag
from domain.source import made_again
from kiroku.ingest_cli import _lag_table


def lag(recorded: int | None, start: int, end: int) -> PartitionLag:
    return PartitionLag("acme.events", 0, recorded, start, end)


# (recorded, log start, log end) -> (first to record, behind, lost, ahead)
@pytest.mark.parametrize(
    ("position", "expected"),
    [
        ((None, 0, 0), (0, 0, 0, False)),  # an empty partition, nothing recorded
        ((None, 0, 40), (0, 40, 0, False)),  # nothing recorded yet: the whole log
        ((None, 25, 40), (25, 15, 0, False)),  # nothing recorded, retention took the first 25: not lost to us
        ((39, 0, 40), (40, 0, 0, False)),  # caught up
        ((9, 0, 40), (10, 30, 0, False)),
        ((9, 25, 40), (25, 15, 15, False)),  # 10-24 removed before they were recorded
        ((39, 40, 40), (40, 0, 0, False)),  # caught up, and the log emptied by retention since
        ((99, 0, 40), (100, 0, 0, True)),  # recorded past the end: another log
    ],
)
def test_a_partitions_position_against_its_log(
    position: tuple[int | None, int, int], expected: tuple[int, int, int, bool]
) -> None:
    partition = lag(*position)
    assert (partition.first_to_record, partition.behind, partition.lost, partition.ahead) == expected
    assert partition.stream == "acme.events:0"


def test_the_whole_adds_up_the_partitions_and_names_the_troubled_ones() -> None:
    fine, losing, ahead = lag(9, 0, 40), lag(9, 25, 40), PartitionLag("registrar.events", 2, 99, 0, 40)
    whole = IngestLag((fine, losing, ahead), missing_topics=())
    assert whole.behind == 30 + 15 + 0
    assert whole.troubled == (losing, ahead)
    assert IngestLag((fine,), ()).troubled == ()


# (recorded, log start) -> (offset, stopped)
@pytest.mark.parametrize(
    ("position", "expected"),
    [
        ((None, None), (0, False)),  # nothing recorded, the log's start not known
        ((None, 0), (0, False)),
        ((None, 250), (250, False)),  # nothing recorded; retention took the log's first 250
        ((99, None), (100, False)),
        ((99, 0), (100, False)),
        ((99, 100), (100, False)),  # the next message is the log's first
        ((99, 101), (100, True)),  # offset 100 is gone before it was recorded
    ],
)
def test_where_reading_a_partition_starts(
    position: tuple[int | None, int | None], expected: tuple[int, bool]
) -> None:
    placement = place("acme.events:0", *position)
    assert (placement.offset, placement.stopped) == expected
    assert (placement.note is not None) == (
        placement.stopped or (placement.offset > 0 and position[0] is None)
    )


def test_a_stopped_partition_names_the_offsets_that_are_gone() -> None:
    note = place("acme.events:2", 99, 130).note
    assert note is not None
    assert note.startswith(
        "acme.events:2: offsets 100-129 were removed from the broker before they were recorded"
    )
    assert "LOST" in note


def test_the_table_says_how_to_go_on_for_each_troubled_partition() -> None:
    lost = PartitionLag("acme.events", 1, 9, 25, 40)
    ahead = PartitionLag("registrar.events", 0, 99, 0, 40)
    table = _lag_table(IngestLag((lost, ahead, lag(9, 0, 40)), ()), "127.0.0.1:9092", "")
    assert next(line for line in table if line.startswith("acme.events:1 ")).endswith(
        "LOST 15: the log now starts after the next message to record"
    )
    hints = [line for line in table if ": to " in line]
    assert hints == [
        "acme.events:1: to record the gap and go on: kiroku consume accept-loss --topic acme.events "
        '--partition 1 --reason "..."',
        "registrar.events:0: to start over on what the broker holds, set a new KIROKU_INGEST_EPOCH",
    ]
    assert not [line for line in _lag_table(IngestLag((lag(9, 0, 40),), ()), "b:1", "") if ": to " in line]


def test_a_partition_of_a_topic_made_again_is_troubled_whatever_its_offsets_say() -> None:
    # The new log has grown past the recorded position: by offsets alone, all is well.
    remade = PartitionLag("acme.events", 2, 9, 0, 400, remade=True)
    assert (remade.lost, remade.ahead) == (0, False)
    status = IngestLag((remade, lag(9, 0, 40)), ())
    assert status.troubled == (remade,)
    table = _lag_table(status, "b:1", "")
    assert next(line for line in table if line.startswith("acme.events:2 ")).endswith(
        "REMADE: the topic was made again since it was recorded from"
    )
    assert [line for line in table if ": to " in line] == [
        "acme.events:2: to start over on what the broker holds, set a new KIROKU_INGEST_EPOCH"
    ]


def test_a_topic_is_made_again_only_where_a_different_id_was_recorded_from() -> None:
    assert made_again("old", "new", recorded=True)
    assert not made_again("old", "new", recorded=False)  # nothing recorded: the new one is bound again
    assert not made_again("same", "same", recorded=True)
    assert not made_again(None, "new", recorded=True)  # not bound yet: bound to the topic found
