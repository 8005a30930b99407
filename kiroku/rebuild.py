"""``kiroku projections rebuild --processes N``: the views rebuilt by several processes at once.

One process rebuilds every view in one pass, but its Python work (decoding
events, building rows) runs on one core. With N processes the views are
shared out among them by how much work each view is; every process reads
and decodes the events for its own views. The new generations are made
first, and switched to only when every process has finished its views; a
view that stops keeps its old generation, as with one process.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from kiroku.bootstrap import build_ledger
from kiroku.runtime import tune_gc_for_batches
from kiroku.settings import Settings
from projections.service import Projections
from projections.store import Generation

#: Rough Python cost of each view per event, from the benchmark's one-view rebuilds
#: (bench/README.md). The audit trail is applied inside PostgreSQL: it costs its
#: process a thread that waits on the database, not the process's Python time.
VIEW_WEIGHTS = {
    "subjects": 6,
    "certificates": 3,
    "provision_ledger": 2,
    "requests": 1,
    "policy_versions": 1,
    "audit_trail": 1,
}


@dataclass(frozen=True)
class Stop:
    """A view that stopped in a worker process: where, and why (picklable)."""

    view: str
    notification_id: int
    event_type: str
    error: str


class RebuildStopped(Exception):
    """Raised when some views could not be rebuilt; the others were switched to."""

    def __init__(self, stops: Sequence[Stop]) -> None:
        self.stops = list(stops)
        super().__init__(
            "; ".join(
                f"view {s.view} stopped at notification {s.notification_id} ({s.event_type}): {s.error}"
                for s in self.stops
            )
        )


def share_out(names: Sequence[str], processes: int) -> list[list[str]]:
    """The views in ``processes`` groups of about equal work (heaviest first, to the lightest group)."""
    groups: list[list[str]] = [[] for _ in range(max(1, min(processes, len(names))))]
    load = [0] * len(groups)
    for name in sorted(names, key=lambda n: -VIEW_WEIGHTS.get(n, 1)):
        lightest = load.index(min(load))
        groups[lightest].append(name)
        load[lightest] += VIEW_WEIGHTS.get(name, 1)
    return groups


def _build(
    projections: Projections,
    building: dict[str, Generation],
    progress: Callable[[int, int, float], None] | None = None,
) -> list[Stop]:
    stopped = projections.build(building, progress)
    return [
        Stop(s.view, s.notified.notification_id, s.notified.event_type, type(s.error).__name__)
        for s in stopped
    ]


def _build_in_worker(settings: Settings, building: dict[str, Generation], page_size: int) -> list[Stop]:
    tune_gc_for_batches()  # a process of its own, for this rebuild only
    ledger = build_ledger(settings)
    try:
        return _build(Projections(ledger, page_size=page_size), building)
    finally:
        ledger.close()


def rebuild_in_processes(
    settings: Settings,
    projections: Projections,
    names: Sequence[str],
    processes: int,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Generation]:
    """Rebuilds ``names`` with ``processes`` processes (this one included); returns the new generations.

    Raises :class:`RebuildStopped` naming the views that stopped, after
    switching readers to every view that was rebuilt.
    """
    groups = share_out(names, processes)
    mine, *theirs = groups
    spawn = multiprocessing.get_context("spawn")
    with (
        projections.rebuilding(names) as building,
        ProcessPoolExecutor(max_workers=max(1, len(theirs)), mp_context=spawn) as pool,
    ):
        futures = [
            pool.submit(_build_in_worker, settings, {n: building[n] for n in group}, projections.page_size)
            for group in theirs
        ]
        stops = _build(projections, {n: building[n] for n in mine}, progress)
        for future in futures:
            stops += future.result()
        stopped = {s.view for s in stops}
        for name, generation in building.items():
            if name not in stopped:
                projections.store.activate(projections.view(name), generation)
    if stops:
        raise RebuildStopped(stops)
    return {name: g for name, g in building.items() if name not in stopped}
