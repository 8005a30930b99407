"""kafka-python's slow-step warnings, summed up in a kiroku process."""

from __future__ import annotations

import logging

import pytest

from kiroku.runtime import SlowNetworkSteps, quiet_slow_network_steps

SLOW = (
    "Task %r ran for %.3fs (>%.3fs threshold). It is blocking the event loop -- likely a tight sync loop "
    "inside a coroutine. Other pollers will time out."
)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@pytest.fixture
def clock() -> list[float]:
    return [1000.0]


@pytest.fixture
def logged(clock: list[float]) -> tuple[logging.Logger, _Collect]:
    logger = logging.getLogger("tests.kafka.net.selector")
    logger.propagate = False
    logger.filters.clear()
    logger.handlers.clear()
    collect = _Collect()
    logger.addHandler(collect)
    logger.addFilter(SlowNetworkSteps(every_s=600, clock=lambda: clock[0]))
    return logger, collect


def test_the_first_passes_then_one_line_per_interval_counts_them(
    logged: tuple[logging.Logger, _Collect], clock: list[float]
) -> None:
    logger, collect = logged
    logger.warning(SLOW, "task-1", 0.114, 0.1)
    for n in range(5):
        clock[0] += 60
        logger.warning(SLOW, f"task-{n + 2}", 0.15, 0.1)
    assert len(collect.lines) == 1
    assert "ran for 0.114s" in collect.lines[0] and "harmless while polls succeed" in collect.lines[0]
    clock[0] += 400  # 700 s after the first
    logger.warning(SLOW, "task-7", 0.2, 0.1)
    assert len(collect.lines) == 2
    assert collect.lines[1].startswith(
        "kafka-python's network thread was held up more than its threshold 6 times"
    )
    assert "ran for 0.200s" in collect.lines[1]


def test_other_records_of_the_logger_pass_as_they_are(logged: tuple[logging.Logger, _Collect]) -> None:
    logger, collect = logged
    logger.warning(SLOW, "task-1", 0.114, 0.1)
    logger.warning("Task %s left RUNNING after step; demoting to UNSCHEDULED", "task-2")
    logger.error("Unhandled exception in task %s:", "task-3")
    assert collect.lines[1:] == [
        "Task task-2 left RUNNING after step; demoting to UNSCHEDULED",
        "Unhandled exception in task task-3:",
    ]


def test_it_is_installed_once_however_often_the_command_starts() -> None:
    first = quiet_slow_network_steps()
    assert quiet_slow_network_steps() is first
    installed = logging.getLogger("kafka.net.selector").filters
    assert [f for f in installed if isinstance(f, SlowNetworkSteps)] == [first]
