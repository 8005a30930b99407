"""APPI Art. 29 records: every provision to a third party, one row each, with its items."""

from __future__ import annotations

from projections.sql import Table, Writer, id_text, json_text, utc_text
from projections.view import Notified, View


class ProvisionLedger(View):
    name = "provision_ledger"
    schema = 1
    indexes_applying_reads = frozenset()
    event_types = frozenset(
        {
            "Provision.Recorded",
        }
    )
    tables = (
        Table(
            "provisions",
            [
                ("provision_id", "text"),
                ("provided_at", "text"),
                ("category", "text"),
                ("legal_ground", "text"),
                ("recipient_id", "text"),
                ("recipient_name", "text"),
                ("country", "text"),
                ("foreign_recipient", "bool"),
                ("unspecified_many", "bool"),
                ("certificate_record_id", "text"),
                ("ct_log_id", "text"),
                ("ct_logged_at", "text"),
                ("record_required", "bool"),
                ("retention_until", "text"),
                ("items", "text"),
                ("notification_id", "int"),
            ],
            ["provision_id"],
            indexes=[["provided_at"], ["recipient_id", "provided_at"], ["category", "provided_at"]],
        ),
        Table(
            "provided_items",
            [("provision_id", "text"), ("subject_id", "text"), ("item", "text")],
            ["provision_id", "subject_id", "item"],
            indexes=[["subject_id"]],
        ),
    )

    def apply(self, notified: Notified, rows: Writer) -> None:
        if notified.event_type != "Provision.Recorded":
            return
        event = notified.event
        provision_id = id_text(event.originator_id)
        ct = event.ct_log or {}
        rows.insert(
            "provisions",
            {
                "provision_id": provision_id,
                "provided_at": utc_text(event.provided_at),
                "category": event.category,
                "legal_ground": event.legal_ground,
                "recipient_id": event.recipient["recipient_id"],
                "recipient_name": event.recipient["name"],
                "country": event.recipient["country"],
                "foreign_recipient": bool(event.foreign),
                "unspecified_many": bool(event.unspecified_many),
                "certificate_record_id": id_text(event.certificate_record_id),
                "ct_log_id": ct.get("log_id"),
                "ct_logged_at": utc_text(ct.get("logged_at")),
                "record_required": bool(event.record_required),
                "retention_until": utc_text(event.retention_until),
                "items": json_text([[id_text(i["subject_id"]), i["item"]] for i in event.items]),
                "notification_id": notified.notification_id,
            },
        )
        for item in event.items:
            rows.insert(
                "provided_items",
                {
                    "provision_id": provision_id,
                    "subject_id": id_text(item["subject_id"]) or "",
                    "item": item["item"],
                },
            )
