"""The database away for a while: which errors say so, and how long to wait before trying again."""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
from collections.abc import Callable

import psycopg
import psycopg_pool
from eventsourcing.persistence import InterfaceError, OperationalError

#: Errors that mean "the store is unreachable now; try again later" (a connection
#: terminated, the server down or restarting, the pool out of connections, SQLite busy).
UNREACHABLE: tuple[type[Exception], ...] = (
    OperationalError,
    InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    psycopg_pool.PoolTimeout,
    sqlite3.OperationalError,
)


class Backoff:
    """Exponential backoff with jitter that says in ``log`` what it waits for, and wakes on stop."""

    def __init__(
        self,
        max_s: float,
        stop: threading.Event,
        log: logging.Logger,
        meanwhile: Callable[[], None] | None = None,
    ) -> None:
        self.max_s = max_s
        self.delay = 0.2
        self.waited = False
        self._stop = stop
        self._log = log
        self._meanwhile = meanwhile

    def reset(self) -> None:
        self.delay = 0.2
        self.waited = False

    def wait(self, what: str, exc: BaseException | None = None) -> None:
        """Says what it waits for and why (the error's class only: its text may hold data), then waits."""
        reason = f" ({type(exc).__name__})" if exc is not None else ""
        pause = min(self.max_s, self.delay) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not secrets
        self._log.warning("waiting for %s%s; retrying in %.1fs", what, reason, pause)
        self.waited = True
        self._stop.wait(pause)
        if self._meanwhile is not None:
            self._meanwhile()
        self.delay = min(self.max_s, self.delay * 2)
