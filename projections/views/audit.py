"""The audit trail: one row per event, never updated, without personal values (§8, §10).

Each row says when the event happened upstream and when it was recorded, what
it was, who or what caused it (actor, source system, upstream event id,
correlation id, Kafka position), the policy version in force when it
happened and the clause it rests on. ``audit_subjects`` says which data
subjects each event concerns, by pseudonymous id only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from projections.event_sql import page as event_page
from projections.event_sql import utc, uuid
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
    # A dead letter: the rule of the policy that refused the message, if one did.
    return event.clause if kind == "UpstreamDeadLetter.Recorded" else None


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


def _elements(choices: str) -> str:
    """SQL: the elements of the JSON array a ``CASE`` picks (none for anything else)."""
    return f"jsonb_array_elements(coalesce(CASE {choices} END, '[]'::jsonb))"


_FIXED_KINDS = ", ".join(f"'{kind}'" for kind in FIXED_CLAUSES)
_FIXED = " ".join(f"WHEN '{kind}' THEN '{clause}'" for kind, clause in FIXED_CLAUSES.items())
_SEALED = _elements(
    "WHEN j.kind IN ('CertificateRecord.Collected', 'AcmeAccount.Registered') THEN j.s->'items' "
    "WHEN j.kind = 'CertificateRecord.Corrected' THEN j.s->'personal_changes' "
    "WHEN j.kind = 'AcmeAccount.ContactsChanged' THEN j.s->'added'"
)
_IDS = _elements(
    "WHEN j.kind = 'AcmeAccount.ContactsChanged' THEN j.s->'removed' "
    "WHEN j.kind = 'AccessRecord.Recorded' THEN j.s->'subject_ids'"
)
_PROVIDED = _elements("WHEN j.kind = 'Provision.Recorded' THEN j.s->'items'")
#: The kinds of event (besides ``DataSubject.*``) whose state names the subjects they concern.
_CONCERNING_KINDS = ", ".join(
    f"'{kind}'"
    for kind in (
        "CertificateRecord.Collected",
        "AcmeAccount.Registered",
        "CertificateRecord.Corrected",
        "AcmeAccount.ContactsChanged",
        "AccessRecord.Recorded",
        "Provision.Recorded",
        "DisclosureRequest.Received",
    )
)

#: The audit trail applied inside PostgreSQL: the same rows as ``AuditTrail.apply``, by
#: the same rules (``clause_of``, ``subjects_of``, ``record_of``, the policy in force),
#: as one statement per page. The parts of one statement all see the tables as they
#: were before it, so the versions and disclosures a page brings are taken from the
#: page itself, each by the events after it.
_PAGE = f"""
WITH page AS MATERIALIZED (
    SELECT j.notification_id, j.kind, j.aggregate_id,
           {utc("j.s->'cause'->'_data_'->>'occurred_at'")} AS occurred_at,
           {utc("j.s->'timestamp'->>'_data_'")} AS recorded_at,
           j.s->'cause'->'_data_'->>'actor' AS actor,
           j.s->'cause'->'_data_'->>'source_system' AS source_system,
           j.s->'cause'->'_data_'->>'upstream_event_id' AS upstream_event_id,
           j.s->'cause'->'_data_'->>'correlation_id' AS correlation_id,
           j.s->'cause'->'_data_'->>'kafka_position' AS kafka_position,
           j.s ? 'policy_version' AS names_its_policy,
           coalesce(j.s->>'policy_version', 'None') AS own_policy_version,
           CASE
               WHEN j.kind IN ({_FIXED_KINDS}) THEN CASE j.kind {_FIXED} END
               WHEN j.kind = 'PolicyCatalogue.Revised' THEN
                   CASE WHEN coalesce(j.s->>'justification', '') <> '' THEN '§3, §12' ELSE '§12' END
               WHEN j.kind = 'Provision.Recorded' THEN
                   '§' || (j.s->>'category')
                   || CASE WHEN coalesce(j.s->>'legal_ground', '') <> ''
                           THEN ' (' || (j.s->>'legal_ground') || ')' ELSE '' END
                   || CASE WHEN j.s->'record_required' = 'true'::jsonb THEN '; APPI Art. 29' ELSE '' END
               WHEN j.kind IN ('DataSubject.ProvisionNoted', 'CertificateRecord.ProvisionNoted') THEN
                   '§' || (j.s->>'category')
               WHEN j.kind LIKE 'DisclosureRequest.%%' THEN '§7'
               WHEN j.kind = 'UpstreamDeadLetter.Recorded' THEN j.s->>'clause'
           END AS clause,
           CASE
               WHEN j.kind LIKE 'CertificateRecord.%%' THEN j.aggregate_id
               WHEN j.kind IN ('Provision.Recorded', 'AcmeAccount.CertificateLinked') THEN
                   {uuid("j.s->'certificate_record_id'->>'_data_'")}
           END AS certificate_record_id,
           j.s->>'version' AS version,
           {utc("j.s->'effective_from'->>'_data_'")} AS effective_from,
           {uuid("j.s->'subject_id'->>'_data_'")} AS subject_id,
           CASE WHEN j.kind IN ({_CONCERNING_KINDS}) OR j.kind LIKE 'DataSubject.%%' THEN ARRAY(
               SELECT j.aggregate_id WHERE j.kind LIKE 'DataSubject.%%'
               UNION ALL
               SELECT {uuid("sealed->'_data_'->>'s'")} FROM {_SEALED} AS sealed
               UNION ALL
               SELECT {uuid("id->>'_data_'")} FROM {_IDS} AS id
               UNION ALL
               SELECT {uuid("item->'subject_id'->>'_data_'")} FROM {_PROVIDED} AS item
               UNION ALL
               SELECT {uuid("j.s->'subject_id'->>'_data_'")} WHERE j.kind = 'DisclosureRequest.Received'
           ) END AS subjects
    FROM ({event_page("{events}")}) AS j
),
new_versions AS (
    SELECT notification_id, version, effective_from
    FROM page WHERE kind IN ('PolicyCatalogue.Published', 'PolicyCatalogue.Revised')
),
new_disclosures AS (
    SELECT notification_id, aggregate_id AS request_id, subject_id
    FROM page WHERE kind = 'DisclosureRequest.Received'
),
versions_written AS (
    INSERT INTO {{policy}} (version, effective_from)
    SELECT version, effective_from FROM new_versions ORDER BY notification_id
),
disclosures_written AS (
    INSERT INTO {{disclosures}} (request_id, subject_id)
    SELECT request_id, subject_id FROM new_disclosures ORDER BY notification_id
),
events_written AS (
    INSERT INTO {{audit_events}} (
        notification_id, event_type, aggregate_id, occurred_at, recorded_at, actor, source_system,
        upstream_event_id, correlation_id, kafka_position, policy_version, clause, certificate_record_id
    )
    SELECT p.notification_id, p.kind, p.aggregate_id, p.occurred_at, p.recorded_at, p.actor,
           p.source_system, p.upstream_event_id, p.correlation_id, p.kafka_position,
           CASE
               WHEN p.names_its_policy THEN p.own_policy_version
               WHEN p.occurred_at IS NULL THEN NULL
               ELSE (
                   SELECT v.version FROM (
                       SELECT version, effective_from FROM {{policy}}
                       UNION ALL
                       SELECT version, effective_from FROM new_versions AS n
                       WHERE n.notification_id <= p.notification_id
                   ) AS v
                   WHERE v.effective_from <= p.occurred_at
                   ORDER BY v.effective_from DESC LIMIT 1
               )
           END,
           p.clause, p.certificate_record_id
    FROM page AS p
)
INSERT INTO {{event_subjects}} (subject_id, notification_id)
SELECT DISTINCT concerned.subject_id, p.notification_id
FROM page AS p
CROSS JOIN LATERAL (
    SELECT unnest(p.subjects)
    UNION ALL
    SELECT d.subject_id FROM (
        SELECT request_id, subject_id FROM {{disclosures}}
        UNION ALL
        SELECT request_id, subject_id FROM new_disclosures AS n WHERE n.notification_id < p.notification_id
    ) AS d
    WHERE p.kind LIKE 'DisclosureRequest.%%' AND p.kind <> 'DisclosureRequest.Received'
      AND d.request_id = p.aggregate_id
) AS concerned (subject_id)
WHERE concerned.subject_id IS NOT NULL
"""


class AuditTrail(View):
    name = "audit_trail"
    schema = 1
    in_database = frozenset({"postgres"})
    indexes_applying_reads = frozenset()
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

    def database_page(self, names: Mapping[str, str], events: str) -> str:
        return _PAGE.format(
            events=events,
            policy=names["policy"],
            disclosures=names["disclosures"],
            audit_events=names["events"],
            event_subjects=names["event_subjects"],
        )

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
        # The same rules are written in SQL for PostgreSQL (``_PAGE``): change both together.
        # test_a_view_given_only_its_kinds_of_event_builds_what_every_event_builds compares them.
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
