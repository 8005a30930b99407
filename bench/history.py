"""``python -m bench history --events N``: ingest when one aggregate's history grows long.

The ingest benchmark's synthetic traffic gives each account a few orders and
each person a few records. Real traffic has accounts of hosting providers
with many thousands of certificates, and an organisation's contact on every
one of its certificates. This times batches of 2,000 commands (as ingest
applies them, without the broker) that all touch one aggregate:

- ``account``: certificates issued under one ACME account (each links the
  account to a new record);
- ``person``: certificate records collected with one person's e-mail address
  (each puts the person on a new record).

It calls the ledger's commands one by one, without ingest's read-ahead
(``prefetch``), so each command reads what it needs with queries of its own
and the rates are lower than ingest's; what matters is how they change. It
prints each batch's rate as the history grows, and as its last line the
first and last batch's rates per scenario. Where a rate falls as the
history grows, a command costs more the longer the aggregate's history is.

Then, per scenario, what a long history still costs (the ``cold`` figures):
reading the aggregate whole, as the API's commands and a process's first
read do (``read_ms``, with ``history_events`` its events); one batch of one
command in a new ledger on the same store, as after a restart
(``first_batch_after_restart_ms``); and for the person, the legal holds an
erasure request checks (``legal_holds_ms``: every record they are on).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from bench.common import fresh_ledger, result_line, say
from domain.application import Ledger
from domain.cause import Cause
from domain.certificate import CertificateIdentity
from domain.commands import PersonalItemInput
from domain.identity import SubjectKey
from kiroku.bootstrap import build_ledger
from kiroku.runtime import tune_gc_for_batches
from kiroku.settings import Settings

BATCH = 2000
T0 = datetime(2026, 1, 1, tzinfo=UTC)
PERSON = SubjectKey.email("pki-admin@corp.example")


def _cause(system: str, number: int) -> Cause:
    return Cause(f"{system}-server", system, T0, f"history-{number}", None, None)


def _account_certificate(ledger: Ledger, number: int) -> None:
    name = f"h{number}.hosting.example"
    ledger.record_acme_certificate(
        order_ref=f"order-{number}",
        account_ref="hosting-provider",
        certificate=CertificateIdentity(name, [name], "DV", f"{number:x}"),
        validity=(T0, T0 + timedelta(days=90)),
        purposes=["P1"],
        cause=_cause("acme", number),
    )


def _person_record(ledger: Ledger, number: int) -> None:
    ledger.collect(
        record_ref=f"record-{number}",
        channel="C1",
        purposes=["P1"],
        certificate=CertificateIdentity(f"h{number}.corp.example", [], "OV"),
        organisation={"name": "Corp"},
        personal_items=[PersonalItemInput(PERSON, "email", "pki-admin@corp.example")],
        cause=_cause("registrar", number),
    )


def _scenario(ledger: Ledger, name: str, command: Callable[[Ledger, int], None], count: int) -> list[float]:
    rates = []
    number = 1
    while number <= count:
        size = min(BATCH, count - number + 1)
        started = time.perf_counter()
        with ledger.batch() as batch:
            for _ in range(size):
                command(ledger, number)
                number += 1
            batch.commit()
        rates.append(size / (time.perf_counter() - started))
        say(f"  {name}: history {number - 1:>7}: {rates[-1]:,.0f} commands/s")
    return rates


def _ms(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return round((time.perf_counter() - started) * 1000, 1)


def _cold(
    ledger: Ledger,
    env: dict[str, str],
    aggregate_id: Any,
    command: Callable[[Ledger, int], None],
    number: int,
) -> dict[str, Any]:
    """What reading the long history whole costs: in this ledger, and first thing in a new one."""
    aggregate = ledger._read(aggregate_id)  # the whole-history read is what is timed
    assert aggregate is not None
    figures: dict[str, Any] = {
        "history_events": aggregate.version,
        "read_ms": _ms(lambda: ledger._read(aggregate_id)),
    }
    restarted = build_ledger(Settings.from_env(env))
    try:

        def one_batch() -> None:
            with restarted.batch() as batch:
                command(restarted, number)
                batch.commit()

        figures["first_batch_after_restart_ms"] = _ms(one_batch)
    finally:
        restarted.close()
    return figures


def run(events: int) -> dict[str, Any]:
    tune_gc_for_batches()
    figures: dict[str, Any] = {"bench": "history", "events": events, "batch": BATCH}
    env: dict[str, str] = {}
    with fresh_ledger(env) as ledger:
        ledger.register_account(
            account_ref="hosting-provider",
            contacts=["noc@hosting.example"],
            purposes=["P1"],
            cause=_cause("acme", 0),
        )
        for name, command in (("account", _account_certificate), ("person", _person_record)):
            rates = _scenario(ledger, name, command, events)
            figures[name] = {"first_batch_per_s": round(rates[0], 1), "last_batch_per_s": round(rates[-1], 1)}
            aggregate_id = (
                ledger.acme_account_id("acme", "hosting-provider")
                if name == "account"
                else ledger.subject_id(PERSON)
            )
            cold = _cold(ledger, env, aggregate_id, command, events + 1)
            if name == "person":
                cold["legal_holds_ms"] = _ms(partial(ledger.legal_holds, aggregate_id))
            figures[name]["cold"] = cold
            say(f"  {name}: {cold}")
    return figures


def main(events: int) -> None:
    result_line(run(events))
