"""Random bytes and mutated messages through the real consumer path: it never stops, and counts add up."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consumers.contract import Contract
from consumers.synthetic import Traffic
from domain.application import Ledger
from tests.integration.kafka_support import handled, running, send_raw, settings_for, wait_for

CONTRACT = Contract.load()
VALID = [m.value for m in Traffic(CONTRACT, seed=51).messages(60) if m.topic == "registrar.events"]


@st.composite
def mutated(draw: Any) -> bytes:
    """A valid message with a few bytes flipped, cut, or inserted."""
    data = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(1, 4))):
        position = draw(st.integers(0, len(data) - 1))
        action = draw(st.sampled_from(["flip", "cut", "insert"]))
        if action == "flip":
            data[position] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del data[position:]
            if not data:
                data = bytearray(b"\x00")
        else:
            data[position:position] = draw(st.binary(min_size=1, max_size=8))
    return bytes(data)


messages = st.one_of(st.binary(min_size=0, max_size=300), mutated(), st.sampled_from(VALID))


@pytest.mark.slow
def test_random_and_mutated_messages_never_stop_the_consumer(kafka: str, pg_ledger: Ledger) -> None:
    with running(pg_ledger, settings_for(kafka)) as ingest:
        send_raw(kafka, "registrar.events", [VALID[0]])
        wait_for(lambda: handled(ingest.counters) >= 1, what="the consumer to start")
        thread_alive = []

        @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck))
        @given(st.lists(messages, min_size=1, max_size=25))
        def feed(batch: list[bytes]) -> None:
            before = handled(ingest.counters)
            consumed_before = ingest.counters.consumed
            send_raw(kafka, "registrar.events", batch)
            wait_for(lambda: handled(ingest.counters) >= before + len(batch), timeout=60, what="the batch")
            counters = ingest.counters
            assert counters.consumed - consumed_before == len(batch)
            assert counters.consumed == counters.recorded + counters.duplicates + counters.dead_letters
            thread_alive.append(ingest.stop_event.is_set() is False)

        feed()
    assert all(thread_alive)
    assert ingest.counters.dead_letters > 0 and ingest.counters.recorded > 0
    # The event store notes each dead letter once, with its offset: as many as were counted.
    noted = pg_ledger.dead_letters()
    assert len(noted) == len({d.offset for d in noted}) == ingest.counters.dead_letters
