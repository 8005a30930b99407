"""Process-wide settings for kiroku's long-running batch processes."""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections.abc import Callable

#: Allocations between young-generation collections. CPython's default (700) is
#: made for small programs; a batch of 2,000 messages makes hundreds of thousands
#: of objects, most of which live until the batch is written, so the collector
#: ran hundreds of times per batch and promoted nearly everything it looked at.
YOUNG_GENERATION_THRESHOLD = 50_000


def tune_gc_for_batches() -> None:
    """Fewer, larger garbage collections, and what start-up made left out of them.

    Measured on ingest (bench/README.md): about a fifth of its CPU went to the
    collector with the defaults. A rebuild of the views (pages of 2,000
    decoded events) took about a quarter less CPU in its busiest process.
    Memory is still reclaimed: objects without cycles are freed at once as
    always, cycles a little later.
    """
    gc.collect()
    gc.freeze()  # the modules, schemas and settings loaded so far are not scanned again
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, old)


class SlowNetworkSteps(logging.Filter):
    """kafka-python's "Task ... ran for 0.1xx s ... blocking the event loop" warnings, summed up.

    kafka-python 3.0's network thread warns whenever one of its steps takes more
    than 0.1 s of wall time. In a kiroku process the batch work holds the
    interpreter for such stretches, so on a busy machine the warning comes in
    normal operation and says something alarming ("Other pollers will time
    out") that is not so. The first one passes, with a word on what it means;
    after it, one line every ``every_s`` seconds says how many there were.
    Every other record of the logger passes as it is.
    """

    MARK = "blocking the event loop"

    def __init__(self, every_s: float = 600.0, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.every_s, self.clock = every_s, clock
        self._lock = threading.Lock()
        self._held_back = 0
        self._last: float | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        if self.MARK not in record.getMessage():
            return True
        with self._lock:
            now = self.clock()
            if self._last is not None and now - self._last < self.every_s:
                self._held_back += 1
                return False
            first, held_back, self._held_back, self._last = self._last is None, self._held_back, 0, now
        if first:
            record.msg = (
                f"{record.getMessage()} (in kiroku: the batch work held the interpreter; harmless while "
                f"polls succeed; further ones are counted every {self.every_s:g} s)"
            )
        else:
            record.msg = (
                f"kafka-python's network thread was held up more than its threshold {held_back + 1} times "
                f"in the last {self.every_s:g} s (the batch work holds the interpreter); the last: "
                f"{record.getMessage()}"
            )
        record.args = ()
        return True


def quiet_slow_network_steps(every_s: float = 600.0) -> SlowNetworkSteps:
    """Installs :class:`SlowNetworkSteps` on kafka-python's network logger, once per process."""
    logger = logging.getLogger("kafka.net.selector")
    for installed in logger.filters:
        if isinstance(installed, SlowNetworkSteps):
            return installed
    summed = SlowNetworkSteps(every_s)
    logger.addFilter(summed)
    return summed
