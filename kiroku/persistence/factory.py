"""The ``eventsourcing`` library's PostgreSQL factory, with connections that notice a dark network."""

from __future__ import annotations

from typing import Any

from eventsourcing.postgres import PostgresFactory

from kiroku.persistence.live import keepalive, make_live
from kiroku.settings import DEAD_AFTER_S


class KirokuPostgresFactory(PostgresFactory):
    """:class:`PostgresFactory` whose datastore never hands out a connection the server cut while it was
    idle (:class:`kiroku.persistence.live.LivePostgresDatastore`), and whose connections end within
    ``KIROKU_DATABASE_DEAD_AFTER`` seconds of silence from the server
    (:func:`kiroku.persistence.live.keepalive`).

    Every connection kiroku opens beside the pool (the view runners' locks and
    notifications, the tables' creation) is made from the pool's parameters,
    so it has them too.
    """

    DEAD_AFTER = "KIROKU_DATABASE_DEAD_AFTER"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        make_live(self.datastore)
        parameters = self.datastore.pool.kwargs
        assert isinstance(parameters, dict)
        parameters.update(keepalive(int(self.env.get(self.DEAD_AFTER) or DEAD_AFTER_S)))
