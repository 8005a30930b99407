"""§3, §12: the catalogue of purposes per policy version, with announcement dates."""

from __future__ import annotations

from projections.sql import Table, Writer, json_text, utc_text
from projections.view import Notified, View


class PolicyVersions(View):
    name = "policy_versions"
    schema = 1
    indexes_applying_reads = frozenset()
    event_types = frozenset(
        {
            "PolicyCatalogue.Published",
            "PolicyCatalogue.Revised",
        }
    )
    tables = (
        Table(
            "versions",
            [
                ("version", "text"),
                ("effective_from", "text"),
                ("announced_at", "text"),
                ("purposes", "text"),
                ("channels", "text"),
                ("justification", "text"),
                ("notification_id", "int"),
            ],
            ["version"],
            indexes=[["effective_from"]],
        ),
    )

    def apply(self, notified: Notified, rows: Writer) -> None:
        if notified.event_type not in {"PolicyCatalogue.Published", "PolicyCatalogue.Revised"}:
            return
        event = notified.event
        rows.insert(
            "versions",
            {
                "version": event.version,
                "effective_from": utc_text(event.effective_from),
                "announced_at": utc_text(event.announced_at),
                "purposes": json_text(event.purposes),
                "channels": json_text(event.channels),
                "justification": getattr(event, "justification", None),
                "notification_id": notified.notification_id,
            },
        )
