"""``python -m bench ingest-phases --events N``: where ingest's time goes, without the broker.

Runs the work of the consumer's batches (``Ingest._record``) on N synthetic
messages in batches of 2,000, into a fresh PostgreSQL store with durable
commits, and times each step: decoding the Avro bodies, reading what the
batch's commands will read (``prefetch``), the commands (``apply``), turning
the batch's events into stored events (``encode``) and writing them with the
tracking record in one transaction (``insert``). CPU time is this process's
only; the database's is not in it. The garbage collector is set as
``kiroku consume`` sets it. A tool for profiling, not one of issue 6's three
benchmarks: it leaves the broker and kafka-python out.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from bench.common import fresh_ledger, result_line, say
from consumers.contract import Contract
from consumers.synthetic import Traffic
from consumers.translate import Position, apply, prefetch
from domain.application import Ledger
from domain.tracking import FollowingTracking
from kiroku.runtime import tune_gc_for_batches

BATCH = 2000
PHASES = ("decode", "prefetch", "apply", "encode", "insert")


class _Clock:
    """CPU and wall time spent in each phase."""

    def __init__(self) -> None:
        self.cpu = dict.fromkeys(PHASES, 0.0)
        self.wall = dict.fromkeys(PHASES, 0.0)

    def timed(self, phase: str, step: Callable[[], Any]) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        result = step()
        self.cpu[phase] += time.process_time() - cpu
        self.wall[phase] += time.perf_counter() - wall
        return result


def _one_batch(ledger: Ledger, contract: Contract, chunk: list[Any], first: int, clock: _Clock) -> None:
    """One batch, as ``Ingest._record`` applies it, each step timed (all of them are called at once)."""
    decoded = clock.timed("decode", lambda: [contract.decode(m.value) for m in chunk])
    with ledger.batch() as batch:
        clock.timed("prefetch", lambda: prefetch(ledger, decoded))

        def commands() -> None:
            for offset, (message, content) in enumerate(zip(chunk, decoded, strict=True), first):
                apply(ledger, content, Position(message.topic, 0, offset), message.topic.split(".")[0])

        clock.timed("apply", commands)
        # Batch.commit, in its two timed steps.
        stored = clock.timed("encode", batch.stored_events)
        tracking = FollowingTracking("bench:0", first + len(chunk) - 1, first - 1 if first else None)
        clock.timed("insert", lambda: batch.save(stored, tracking))


def run(events: int) -> dict[str, Any]:
    contract = Contract.load()
    messages = [m for m, _ in zip(Traffic(contract, seed=7).messages(events), range(events), strict=False)]
    tune_gc_for_batches()
    clock = _Clock()
    with fresh_ledger() as ledger:
        say(f"{len(messages)} messages in batches of {BATCH} (publishing and the broker left out)")
        cpu_started, wall_started = time.process_time(), time.perf_counter()
        for start in range(0, len(messages), BATCH):
            _one_batch(ledger, contract, messages[start : start + BATCH], start, clock)
        cpu = time.process_time() - cpu_started
        wall = time.perf_counter() - wall_started
        stored_events = ledger.recorder.max_notification_id() or 0
    count = len(messages)
    per_message = {phase: round(clock.cpu[phase] / count * 1e6, 1) for phase in PHASES}
    waited = {phase: round((clock.wall[phase] - clock.cpu[phase]) / count * 1e6, 1) for phase in PHASES}
    say(f"  {count / wall:,.0f} messages/s; CPU per message (µs): {per_message}")
    return {
        "bench": "ingest-phases",
        "events": count,
        "stored_events": stored_events,
        "messages_per_s": round(count / wall, 1),
        "cpu_us_per_message": round(cpu / count * 1e6, 1),
        "phases_cpu_us_per_message": per_message,
        "phases_waiting_us_per_message": waited,
    }


def main(events: int) -> None:
    result_line(run(events))
