"""A consumer that crashes (``os._exit``) right after the broker has taken a batch's dead letters.

Run as ``python -m tests.integration.crash_after_dead_letters BOOTSTRAP`` with the store's settings
in the environment: the process ends before the batch commits, as a crash there would end it.
"""

from __future__ import annotations

import os
import sys

from consumers.ingest import DeadLetter, Ingest
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from tests.integration.kafka_support import settings_for

#: The exit code that says the process crashed where it was meant to.
CRASHED = 17


class CrashesAfterItsDeadLetters(Ingest):
    def _send_dead_letters(self, dead: list[DeadLetter]) -> None:
        super()._send_dead_letters(dead)
        if dead:
            os._exit(CRASHED)


if __name__ == "__main__":
    ledger = build_ledger(Settings.from_env(dict(os.environ)))
    CrashesAfterItsDeadLetters(ledger, settings_for(sys.argv[1])).run()
    sys.exit(1)  # it ran out without dead letters to crash after
