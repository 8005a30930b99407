"""Connections of the pool the server has not cut while they sat there.

When PostgreSQL restarts, or a backend is terminated (``pg_terminate_backend``,
a proxy or a firewall closing the socket), every idle connection in a pool is
dead, and the pool does not know until a statement fails on one. Each one then
failed a request (the API answered 503) or a batch (ingest waited and tried
again), one after the other, after the database was back.

:class:`LivePostgresDatastore` looks before it hands a connection out: an idle
connection has nothing to read, so one ``select`` call (about a microsecond)
passes a healthy one. One with something to read (the server's goodbye, or a
notice) is asked with a round trip; if the server has cut it, the pool's other
idle connections are tested too (``ConnectionPool.check``: one round trip
each; the cut ones are replaced) and a fresh connection is taken. While the
database is away, that fresh connection is not to be had, and the pool's
timeout ends the wait as it did before.

A connection cut while a statement runs on it still fails that statement.

A network that goes dark (a host gone, a firewall that drops instead of
refusing) closes nothing: without help, an idle connection looks healthy and a
statement sent on it waits for ever. Every connection kiroku makes therefore
asks the kernel (:func:`keepalive`) to probe a silent peer and to give up on
data it cannot deliver, so that such a connection fails within the store's
``dead_after_s`` (``KIROKU_DATABASE_DEAD_AFTER``) and is then found cut here.
"""

from __future__ import annotations

import logging
import select
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from eventsourcing.postgres import PostgresDatastore
from psycopg_pool import ConnectionPool

log = logging.getLogger("kiroku.persistence")

#: The names of the parameters :func:`keepalive` sets.
KEEPALIVE_PARAMETERS = (
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
)


def keepalive(dead_after_s: int) -> dict[str, Any]:
    """libpq's connection parameters that end a connection to a silent server within ``dead_after_s``.

    TCP keepalive probes a connection that has been quiet for a third of the
    time, every sixth of it, three times (an idle connection, or one waiting
    for an answer to a statement the server received); ``tcp_user_timeout``
    bounds how long data sent may go unacknowledged (a statement sent into
    the dark). A server that is up answers the probes, however long its
    statements take. On a Unix socket libpq leaves them out.
    """
    if dead_after_s < 4:
        raise ValueError("dead_after_s must be at least 4 seconds")
    return {
        "keepalives": 1,
        "keepalives_idle": max(1, dead_after_s // 3),
        "keepalives_interval": max(1, dead_after_s // 6),
        "keepalives_count": 3,
        "tcp_user_timeout": dead_after_s * 1000,
    }


def was_cut(conn: psycopg.Connection[Any]) -> bool:
    """Whether the server closed this idle connection; a cut one is left broken, for the pool to discard."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    if not readable:
        return False
    try:
        ConnectionPool.check_connection(conn)
    except psycopg.Error:
        return True
    return False


class LivePostgresDatastore(PostgresDatastore):
    """A datastore whose ``get_connection`` (and so ``transaction``, and every statement of the
    library's recorders and of kiroku's) never hands out a connection the server cut while it was idle.

    The factory makes its datastore one (:func:`make_live`).
    """

    @contextmanager
    def get_connection(self) -> Iterator[psycopg.Connection[Any]]:
        for last in (False, True):
            with super().get_connection() as conn:
                if last or not was_cut(conn):
                    yield conn
                    return
            # Cut: the server restarted or terminated backends, so the other idle ones most likely are too.
            log.warning(
                "a database connection was closed by the server while idle; testing the pool's others"
            )
            self.pool.check()


def make_live(datastore: PostgresDatastore) -> LivePostgresDatastore:
    """The library's datastore, made a :class:`LivePostgresDatastore` (the same object).

    The library's factory builds its datastore itself, from the environment;
    this gives that object the one method it overrides and no new state.
    """
    if not isinstance(datastore, LivePostgresDatastore):
        datastore.__class__ = LivePostgresDatastore
    assert isinstance(datastore, LivePostgresDatastore)
    return datastore
