"""``python -m bench rebuild --events N``: rebuilding every view against reading the events."""

from __future__ import annotations

import time
from typing import Any

from bench.common import Ceiling, fresh_ledger, result_line, say, seed, settle
from kiroku.rebuild import rebuild_in_processes
from kiroku.runtime import tune_gc_for_batches
from kiroku.settings import Settings
from projections.service import Projections


def read_all(projections: Projections, page: int) -> int:
    """The ceiling: the same events read from the store and turned into domain events, nothing applied."""
    ledger = projections.ledger
    count, after = 0, 0
    while True:
        notifications = ledger.recorder.select_notifications(start=after + 1, limit=page)
        for n in notifications:
            ledger.mapper.to_domain_event(n)
        count += len(notifications)
        if len(notifications) < page:
            return count
        after = notifications[-1].id


def read_rate(projections: Projections, page: int) -> float:
    """Events per second ``read_all`` reads and decodes."""
    started = time.monotonic()
    return read_all(projections, page) / (time.monotonic() - started)


def run(events: int, processes: int = 2) -> dict[str, Any]:
    env: dict[str, str] = {}
    with fresh_ledger(env) as ledger:
        say(f"seeding at least {events} events (not timed)")
        stored = seed(ledger, events)
        say("VACUUM ANALYZE (not timed)")
        settle(ledger)  # otherwise autovacuum starts on the new rows in the middle of the timing
        projections = Projections(ledger, page_size=2000)
        tune_gc_for_batches()  # as `kiroku projections rebuild` does, for the ceiling and kiroku alike
        # The events read and decoded, before the rebuilds and after them.
        top = Ceiling(2, lambda: read_rate(projections, 2000), "events")
        top.time()
        say("rebuilding every view in one pass over the events, in one process (kiroku projections rebuild)")
        started = time.monotonic()
        projections.rebuild_views()
        rate = stored / (time.monotonic() - started)
        say(f"  all views, one process: {rate:,.0f} events/s")
        say(f"rebuilding every view in {processes} processes (kiroku projections rebuild --processes)")
        started = time.monotonic()
        rebuild_in_processes(Settings.from_env(env), projections, list(projections.views), processes)
        in_processes = stored / (time.monotonic() - started)  # every view rebuilt from all the events
        say(f"  all views, {processes} processes: {in_processes:,.0f} events/s")
        per_view = {}
        for name in projections.views:
            view_started = time.monotonic()
            projections.rebuild(name)
            per_view[name] = round(stored / (time.monotonic() - view_started), 1)
            say(f"  {name} alone: {per_view[name]:,.0f} events/s")
        top.time()
    return {
        "bench": "rebuild",
        "events": stored,
        "events_per_s": round(rate, 1),
        **top.figures(),
        "ratio": round(rate / top.rate, 3),
        "processes": processes,
        "processes_events_per_s": round(in_processes, 1),
        "processes_ratio": round(in_processes / top.rate, 3),
        "per_view_events_per_s": per_view,
    }


def main(events: int, processes: int = 2) -> None:
    result_line(run(events, processes))
