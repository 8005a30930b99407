"""APPI Art. 29 records: every provision to a third party, one row each, with its items."""

from __future__ import annotations

from collections.abc import Mapping

from projections.event_sql import page as event_page
from projections.event_sql import utc, uuid
from projections.sql import Table, Writer, id_text, json_text, utc_text
from projections.view import Notified, View

#: The provision ledger applied inside PostgreSQL: the rows ``ProvisionLedger.apply``
#: writes, as one statement per page. ``items`` is the JSON text ``json_text`` writes
#: (no spaces): a list of [subject id or null, item] in the event's order.
_PAGE = f"""
WITH page AS MATERIALIZED ({event_page("{events}", "'Provision.Recorded'")}),
items AS (
    SELECT p.aggregate_id AS provision_id, i.n,
           {uuid("i.value->'subject_id'->>'_data_'")} AS subject_id, i.value->>'item' AS item
    FROM page AS p
    CROSS JOIN LATERAL jsonb_array_elements(p.s->'items') WITH ORDINALITY AS i (value, n)
),
provisions_written AS (
    INSERT INTO {{provisions}} (
        provision_id, provided_at, category, legal_ground, recipient_id, recipient_name, country,
        foreign_recipient, unspecified_many, certificate_record_id, ct_log_id, ct_logged_at,
        record_required, retention_until, items, notification_id
    )
    SELECT p.aggregate_id, {utc("p.s->'provided_at'->>'_data_'")}, p.s->>'category', p.s->>'legal_ground',
           p.s->'recipient'->>'recipient_id', p.s->'recipient'->>'name', p.s->'recipient'->>'country',
           coalesce((p.s->>'foreign')::boolean, false), coalesce((p.s->>'unspecified_many')::boolean, false),
           {uuid("p.s->'certificate_record_id'->>'_data_'")}, p.s->'ct_log'->>'log_id',
           {utc("p.s->'ct_log'->'logged_at'->>'_data_'")},
           coalesce((p.s->>'record_required')::boolean, false), {utc("p.s->'retention_until'->>'_data_'")},
           '[' || coalesce(listed.items, '') || ']', p.notification_id
    FROM page AS p
    LEFT JOIN (
        SELECT provision_id,
               string_agg(
                   '[' || coalesce(to_json(subject_id)::text, 'null') || ',' || to_json(item)::text || ']',
                   ',' ORDER BY n
               ) AS items
        FROM items GROUP BY provision_id
    ) AS listed ON listed.provision_id = p.aggregate_id
)
INSERT INTO {{provided_items}} (provision_id, subject_id, item)
SELECT provision_id, coalesce(subject_id, ''), item FROM items
"""


class ProvisionLedger(View):
    name = "provision_ledger"
    schema = 1
    in_database = frozenset({"postgres"})
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

    def database_page(self, names: Mapping[str, str], events: str) -> str:
        return _PAGE.format(
            events=events, provisions=names["provisions"], provided_items=names["provided_items"]
        )

    def apply(self, notified: Notified, rows: Writer) -> None:
        # The same rules are written in SQL for PostgreSQL (``_PAGE``): change both together.
        # test_a_view_given_only_its_kinds_of_event_builds_what_every_event_builds compares them.
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
