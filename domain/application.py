"""The certificate-information ledger: kiroku's application (service layer).

Commands take plain values and a :class:`~domain.cause.Cause`, check the
policy through the aggregates, seal personal values under the subject's key and
record every resulting event in one transaction, together with an
:class:`~domain.receipt.UpstreamReceipt` when the command came from an upstream
event, so that replaying it changes nothing. See :mod:`domain.service`.
"""

from __future__ import annotations

from domain.service.acme import AcmeCommands
from domain.service.base import Batch, ConcurrencyConflict
from domain.service.requests import DISCLOSURE_DUE_DAYS, ISSUANCE_RECORD_RETENTION_YEARS, RequestCommands

__all__ = [
    "DISCLOSURE_DUE_DAYS",
    "ISSUANCE_RECORD_RETENTION_YEARS",
    "Batch",
    "ConcurrencyConflict",
    "Ledger",
]


class Ledger(AcmeCommands, RequestCommands):
    """Records collection, correction, provision, stop, disclosure and erasure."""

    name = "kiroku"  # the event store's table names (kiroku_events, kiroku_tracking)
