"""The CA's published policy as it stands (shared/policy): purposes and channels."""

from __future__ import annotations

from datetime import UTC, datetime

from domain.application import Ledger
from domain.cause import Cause
from domain.commands import CommandResult

PURPOSES = {
    "P1": "providing the service",
    "P2": "verifying, at application, that the user exists and that the applicant's authority is genuine",
    "P3": "managing certificate information",
    "P4": "third-party provision as §4 defines it",
    "P5": "research to improve the service or develop new services",
    "P6": "statistics (published) and academic research, only in a form that identifies no individual",
    "P7": "announcing the CA's new services",
    "P8": "other purposes for specific information that the CA announced or published beforehand",
}
CHANNELS = ["C1", "C2", "C3", "C4"]


def publish_current_policy(
    ledger: Ledger,
    *,
    actor: str,
    version: str = "current",
    effective_from: datetime = datetime(2020, 1, 1, tzinfo=UTC),
) -> CommandResult:
    """Publishes the policy above as the first version (demos, benchmarks, ``kiroku policy init``)."""
    return ledger.publish_policy(
        version=version,
        effective_from=effective_from,
        announced_at=effective_from,
        purposes=PURPOSES,
        channels=CHANNELS,
        cause=Cause(actor=actor, source_system="kiroku-cli", occurred_at=datetime.now(UTC)),
    )
