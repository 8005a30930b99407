"""The audit trail: one row per event, never updated, without personal values (§8, §10).

Each row says when the event happened upstream and when it was recorded, what
it was, who or what caused it (actor, source system, upstream event id,
correlation id, Kafka position), the policy version in force when it
happened and the clause it rests on. ``audit_subjects`` says which data
subjects each event concerns, by pseudonymous id only.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from projections.sql import Table, Writer, id_text, utc_text
from projections.view import Notified, View

FIXED_CLAUSES = {
    "PolicyCatalogue.Published": "§12",
    "CertificateRecord.Collected": "§5",
    "CertificateRecord.Issued": "§5",
    "CertificateRecord.Corrected": "§6",
    "CertificateRecord.Revoked": "§2 (P3)",
    "AcmeAccount.Registered": "§5",
    "AcmeAccount.ContactsChanged": "§6",
    "AcmeAccount.CertificateLinked": "§5",
    "AcmeAccount.Deactivated": "§2 (P3)",
    "DataSubject.Registered": "§5",
    "DataSubject.AppearedOn": "§5",
    "DataSubject.StopRequested": "§11",
    "DataSubject.StopDecided": "§11",
    "DataSubject.ErasureRequested": "APPI Art. 35",
    "DataSubject.Erased": "APPI Art. 35",
    "AccessRecord.Recorded": "§8, §10",
}


def clause_of(notified: Notified) -> str | None:
    event, kind = notified.event, notified.event_type
    if kind in FIXED_CLAUSES:
        return FIXED_CLAUSES[kind]
    if kind == "PolicyCatalogue.Revised":
        return "§3, §12" if event.justification else "§12"
    if kind == "Provision.Recorded":
        basis = f"§{event.category}" + (f" ({event.legal_ground})" if event.legal_ground else "")
        return f"{basis}; APPI Art. 29" if event.record_required else basis
    if kind in {"DataSubject.ProvisionNoted", "CertificateRecord.ProvisionNoted"}:
        return f"§{event.category}"
    if kind.startswith("DisclosureRequest."):
        return "§7"
    return None


def subjects_of(notified: Notified) -> set[UUID]:
    event, kind = notified.event, notified.event_type
    found: set[UUID] = set()
    if kind.startswith("DataSubject."):
        found = {event.originator_id}
    elif kind in {"CertificateRecord.Collected", "AcmeAccount.Registered"}:
        found = {s.subject_id for s in event.items}
    elif kind == "CertificateRecord.Corrected":
        found = {s.subject_id for s in event.personal_changes}
    elif kind == "AcmeAccount.ContactsChanged":
        found = {s.subject_id for s in event.added} | set(event.removed)
    elif kind == "Provision.Recorded":
        found = {i["subject_id"] for i in event.items if i["subject_id"]}
    elif kind == "DisclosureRequest.Received":
        found = {event.subject_id}
    elif kind == "AccessRecord.Recorded":
        found = set(event.subject_ids)
    return found


def record_of(notified: Notified) -> UUID | None:
    event, kind = notified.event, notified.event_type
    if kind.startswith("CertificateRecord."):
        return event.originator_id  # type: ignore[no-any-return]
    if kind == "Provision.Recorded":
        return event.certificate_record_id  # type: ignore[no-any-return]
    if kind == "AcmeAccount.CertificateLinked":
        return event.certificate_record_id  # type: ignore[no-any-return]
    return None


class AuditTrail(View):
    name = "audit_trail"
    schema = 1
    tables = (
        Table(
            "events",
            [
                ("notification_id", "int"),
                ("event_type", "text"),
                ("aggregate_id", "text"),
                ("occurred_at", "text"),
                ("recorded_at", "text"),
                ("actor", "text"),
                ("source_system", "text"),
                ("upstream_event_id", "text"),
                ("correlation_id", "text"),
                ("kafka_position", "text"),
                ("policy_version", "text"),
                ("clause", "text"),
                ("certificate_record_id", "text"),
            ],
            ["notification_id"],
            indexes=[
                ["occurred_at"],
                ["event_type", "notification_id"],
                ["actor", "notification_id"],
                ["certificate_record_id", "notification_id"],
            ],
        ),
        Table(
            "event_subjects",
            [("subject_id", "text"), ("notification_id", "int")],
            ["subject_id", "notification_id"],
        ),
        Table("disclosures", [("request_id", "text"), ("subject_id", "text")], ["request_id"]),
        Table("policy", [("version", "text"), ("effective_from", "text")], ["version"]),
    )

    def __init__(self) -> None:
        self._policy: list[dict[str, Any]] | None = None

    def prepare(self, page: Sequence[Notified]) -> None:  # noqa: ARG002 - the page needs nothing read ahead
        self._policy = None  # read again in each page's transaction

    def _policy_rows(self, rows: Writer) -> list[dict[str, Any]]:
        if self._policy is None:
            self._policy = rows.select("policy", {})
        return self._policy

    def _policy_version(self, notified: Notified, occurred_at: str | None, rows: Writer) -> str | None:
        event = notified.event
        if hasattr(event, "policy_version"):
            return str(event.policy_version)
        if occurred_at is None:
            return None
        in_force = [r for r in self._policy_rows(rows) if r["effective_from"] <= occurred_at]
        return max(in_force, key=lambda r: r["effective_from"])["version"] if in_force else None

    def apply(self, notified: Notified, rows: Writer) -> None:
        event: Any = notified.event
        kind = notified.event_type
        if kind in {"PolicyCatalogue.Published", "PolicyCatalogue.Revised"}:
            rows.insert(
                "policy", {"version": event.version, "effective_from": utc_text(event.effective_from)}
            )
            self._policy = None  # read again, with this version
        subjects = subjects_of(notified)
        if kind.startswith("DisclosureRequest."):
            if kind == "DisclosureRequest.Received":
                rows.insert(
                    "disclosures",
                    {"request_id": id_text(event.originator_id), "subject_id": id_text(event.subject_id)},
                )
            else:
                known = rows.select_one("disclosures", {"request_id": id_text(event.originator_id)})
                if known is not None:
                    subjects.add(UUID(known["subject_id"]))
        cause = getattr(event, "cause", None)
        occurred_at = utc_text(cause.occurred_at) if cause is not None else None
        rows.insert(
            "events",
            {
                "notification_id": notified.notification_id,
                "event_type": kind,
                "aggregate_id": id_text(event.originator_id),
                "occurred_at": occurred_at,
                "recorded_at": utc_text(event.timestamp),
                "actor": cause.actor if cause else None,
                "source_system": cause.source_system if cause else None,
                "upstream_event_id": cause.upstream_event_id if cause else None,
                "correlation_id": cause.correlation_id if cause else None,
                "kafka_position": cause.kafka_position if cause else None,
                "policy_version": self._policy_version(notified, occurred_at, rows),
                "clause": clause_of(notified),
                "certificate_record_id": id_text(record_of(notified)),
            },
        )
        for subject_id in sorted(subjects, key=str):
            rows.insert(
                "event_subjects",
                {"subject_id": id_text(subject_id), "notification_id": notified.notification_id},
            )
