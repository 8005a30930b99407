"""Dead letters: the topic may hold one twice after a crash between its send and the commit; the
event store notes each one once."""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from consumers.contract import Contract
from consumers.synthetic import Traffic
from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.cli import main
from kiroku.settings import Settings
from tests.conftest import postgres_environ
from tests.helpers import publish_policy
from tests.integration.crash_after_dead_letters import CRASHED
from tests.integration.kafka_support import (
    handled,
    read_dead_letters,
    receipts,
    running,
    send_raw,
    settings_for,
    wait_for,
)

CONTRACT = Contract.load()
VALID = [m.value for m in Traffic(CONTRACT, seed=91).messages(40) if m.topic == "registrar.events"]


def test_a_dead_letter_sent_again_after_a_crash_is_noted_once(
    kafka: str, postgres_url: str, postgres_schema: str
) -> None:
    """A consumer process crashes between a batch's dead letters reaching the broker and the batch's
    commit; the next consumer records the batch again and sends its dead letters again."""
    environ = {**os.environ, **postgres_environ(postgres_url, postgres_schema)}
    ledger = build_ledger(Settings.from_env(environ))
    publish_policy(ledger)
    unknown_schema = b"\x00" + struct.pack(">I", 999) + VALID[1][5:]
    send_raw(kafka, "registrar.events", [VALID[0], b"not avro", VALID[1], unknown_schema, VALID[2]])

    crashed = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "tests.integration.crash_after_dead_letters", kafka],
        env=environ,
        cwd=Path(__file__).parents[2],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert crashed.returncode == CRASHED, crashed.stderr.decode()[-3000:]
    assert ledger.dead_letters() == [], "the crash came before the batch's commit"
    assert (ledger.tracked_position("registrar.events:0") or -1) < 1

    with running(ledger, settings_for(kafka)) as ingest:
        wait_for(lambda: ledger.tracked_position("registrar.events:0") == 4, what="the five messages")
    assert ingest.counters.dead_letters == 2
    # The topic holds each dead letter twice: sent before the crash, and again.
    letters = read_dead_letters(kafka, "registrar.events", expected=4)
    assert Counter(int(letter.headers["kiroku.original.offset"]) for letter in letters) == {1: 2, 3: 2}
    # The event store, once each.
    noted = ledger.dead_letters()
    assert [(d.stream, d.offset, d.error_class) for d in noted] == [
        ("registrar.events:0", 1, "UnknownFraming"),
        ("registrar.events:0", 3, "UnknownSchema"),
    ]
    assert len(receipts(ledger)) == 3
    ledger.close()


def test_the_dead_letters_command_lists_each_once(
    kafka: str, cli_store: Ledger, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["consume", "dead-letters"]) == 0
    assert capsys.readouterr().out == "no upstream message dead-lettered\n"
    send_raw(kafka, "registrar.events", [b"garbage", VALID[0]])
    send_raw(kafka, "acme.events", [VALID[3]])  # a registrar message on the ACME topic
    with running(cli_store, settings_for(kafka)) as ingest:
        wait_for(lambda: handled(ingest.counters) >= 3, what="the three messages")

    assert main(["consume", "dead-letters"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3
    assert sorted(line.split("  ", 1)[1] for line in out[:2]) == [
        "acme.events:0  offset 0  UndecodableMessage  (to acme.events.dlq)",
        "registrar.events:0  offset 0  UnknownFraming  (to registrar.events.dlq)",
    ]
    assert out[2] == "2 messages dead-lettered from 2 streams"
    assert main(["consume", "dead-letters", "--json"]) == 0
    listed: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    assert sorted(
        (d["topic"], d["partition"], d["offset"], d["error_class"], d["clause"]) for d in listed
    ) == [
        ("acme.events", 0, 0, "UndecodableMessage", None),
        ("registrar.events", 0, 0, "UnknownFraming", None),
    ]
