"""Certificate records as they stand now: information after corrections, status, recipients."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from projections.sql import Table, Writer, id_text, json_text, utc_text
from projections.view import Notified, View


class Certificates(View):
    name = "certificates"
    schema = 1
    indexes_applying_reads = frozenset()
    event_types = frozenset(
        {
            "CertificateRecord.Collected",
            "CertificateRecord.Corrected",
            "CertificateRecord.Issued",
            "CertificateRecord.ProvisionNoted",
            "CertificateRecord.Revoked",
        }
    )
    tables = (
        Table(
            "certificates",
            [
                ("record_id", "text"),
                ("record_ref", "text"),
                ("source_system", "text"),
                ("channel", "text"),
                ("policy_version", "text"),
                ("purposes", "text"),
                ("common_name", "text"),
                ("sans", "text"),
                ("serial", "text"),
                ("validation", "text"),
                ("organisation", "text"),
                ("account_id", "text"),
                ("collected_at", "text"),
                ("not_before", "text"),
                ("not_after", "text"),
                ("revoked_at", "text"),
                ("revocation_reason", "text"),
                ("status", "text"),
                ("corrections", "int"),
                ("notification_id", "int"),
            ],
            ["record_id"],
            indexes=[["common_name"], ["serial"], ["account_id"]],
        ),
        Table(
            "recipients",
            [("record_id", "text"), ("provision_id", "text"), ("recipient_id", "text"), ("category", "text")],
            ["record_id", "provision_id"],
        ),
    )

    def __init__(self) -> None:
        # Each record's count of corrections as this page has left it. A correction
        # needs the count so far, and reading it from the table writes every row the
        # page holds first: a bulk write per correction instead of one per page.
        self._corrections: dict[UUID, int] = {}

    def prepare(self, page: Sequence[Notified]) -> None:  # noqa: ARG002 - a new page starts afresh
        # Forgotten with each page: one view object may apply the pages of two
        # generations in turn (the live one and a rebuild's), or a page again.
        self._corrections = {}

    def apply(self, notified: Notified, rows: Writer) -> None:
        event: Any = notified.event
        kind = notified.event_type
        record_id = id_text(event.originator_id)
        key = {"record_id": record_id}
        if kind == "CertificateRecord.Collected":
            self._corrections[event.originator_id] = 0
            rows.insert(
                "certificates",
                {
                    "record_id": record_id,
                    "record_ref": event.record_ref,
                    "source_system": event.cause.source_system,
                    "channel": event.channel,
                    "policy_version": event.policy_version,
                    "purposes": json_text(event.purposes),
                    "common_name": event.common_name,
                    "sans": json_text(event.sans),
                    "serial": event.serial,
                    "validation": event.validation,
                    "organisation": json_text(event.organisation) if event.organisation else None,
                    "account_id": id_text(event.account_id),
                    "collected_at": utc_text(event.cause.occurred_at),
                    "not_before": None,
                    "not_after": None,
                    "revoked_at": None,
                    "revocation_reason": None,
                    "status": "collected",
                    "corrections": 0,
                    "notification_id": notified.notification_id,
                },
            )
        elif kind == "CertificateRecord.Issued":
            rows.update(
                "certificates",
                key,
                {
                    "serial": event.serial,
                    "not_before": utc_text(event.not_before),
                    "not_after": utc_text(event.not_after),
                    "status": "issued",
                    "notification_id": notified.notification_id,
                },
            )
        elif kind == "CertificateRecord.Corrected":
            corrections = self._corrections.get(event.originator_id)
            if corrections is None:
                current = rows.select_one("certificates", key)
                assert current is not None, f"correction of unknown record {record_id}"
                corrections = int(current["corrections"])
            corrections = self._corrections[event.originator_id] = corrections + 1
            changes: dict[str, Any] = {
                "corrections": corrections,
                "notification_id": notified.notification_id,
            }
            for field, value in event.certificate_changes.items():
                changes[field] = (
                    value if field == "common_name" else json_text(value) if value is not None else None
                )
            rows.update("certificates", key, changes)
        elif kind == "CertificateRecord.Revoked":
            rows.update(
                "certificates",
                key,
                {
                    "revoked_at": utc_text(event.revoked_at),
                    "revocation_reason": event.reason,
                    "status": "revoked",
                    "notification_id": notified.notification_id,
                },
            )
        elif kind == "CertificateRecord.ProvisionNoted":
            rows.insert(
                "recipients",
                {
                    "record_id": record_id,
                    "provision_id": id_text(event.provision_id),
                    "recipient_id": event.recipient_id,
                    "category": event.category,
                },
            )
