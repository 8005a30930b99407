"""A position that the store records only on top of the one its writer started from."""

from __future__ import annotations

from dataclasses import dataclass

from eventsourcing.persistence import Tracking

from domain.quickinit import quick_init


@quick_init
@dataclass(frozen=True)
class FollowingTracking(Tracking):
    """``Tracking`` recorded only while the stream's position is still ``after`` (None: nothing yet).

    A writer reads a stream's position, does its work and records the new
    position with it in one transaction. The store refuses the transaction
    (``IntegrityError``) when the position is no longer ``after``, or when
    ``notification_id`` is not past it: another writer moved it meanwhile (a
    consumer that lost its partition to another), or the batch is stale. So a
    stream's positions form one chain, each batch on top of the one before.
    """

    after: int | None = None

    def refusal(self) -> str:
        """What the store says when it refuses this record (names and offsets only)."""
        started = "nothing recorded" if self.after is None else f"position {self.after}"
        return (
            f"{self.application_name}: not recorded up to {self.notification_id}: the batch started "
            f"from {started}, and the stream's position is no longer that, or the batch is not past it"
        )
