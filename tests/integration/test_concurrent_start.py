"""Processes that start together on a new schema (the API's workers) create its tables once, safely."""

from __future__ import annotations

import threading

from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from projections.service import Projections
from tests.conftest import postgres_settings


def test_several_starts_at_once_on_a_new_schema_all_succeed(postgres_url: str, postgres_schema: str) -> None:
    settings = postgres_settings(postgres_url, postgres_schema)
    starting = threading.Barrier(6)
    failures: list[BaseException] = []
    ledgers: list[Ledger] = []

    def start() -> None:
        starting.wait()
        try:
            ledger = build_ledger(settings)
            ledgers.append(ledger)
            Projections(ledger)  # creates the view tables too
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    try:
        assert failures == []
        assert len(ledgers) == 6
    finally:
        for ledger in ledgers:
            ledger.close()
