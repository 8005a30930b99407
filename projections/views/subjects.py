"""Data subjects: their current items, records, stop and erasure state, legal holds, look-ups.

Personal values are kept only as they are in the events: sealed under the
subject's key. Look-up by e-mail address or name goes through a blind index
(a keyed hash computed by opening the sealed value), never the plain value.
When a subject is erased, their sealed items and look-up rows are deleted;
a rebuild after that cannot recreate them, because the key is gone.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.application import ISSUANCE_RECORD_RETENTION_YEARS, Ledger
from domain.personal import Revealed, Sealed
from domain.provision import add_years
from projections.sql import Table, Writer, id_text, utc_text
from projections.view import Notified, View

LOOKUP_KINDS = ("email", "name")


ISSUANCE_HOLD_REASON = "CA issuance record retention"


class Subjects(View):
    """Written without reading: every event's rows follow from the event alone (but erasure).

    Holds under APPI Art. 29 are rows of ``holds``. Holds for CA issuance
    records are not copied to every subject: ``record_holds`` keeps each issued
    record's retention deadline, and a reader joins it with the records a
    subject's items are on, directly or through an ACME account
    (:meth:`projections.service.Projections.subject`).
    """

    name = "subjects"
    schema = 2
    indexes_applying_reads = frozenset({("lookup", "subject_id")})
    event_types = frozenset(
        {
            "AcmeAccount.CertificateLinked",
            "AcmeAccount.ContactsChanged",
            "AcmeAccount.Registered",
            "CertificateRecord.Collected",
            "CertificateRecord.Corrected",
            "CertificateRecord.Issued",
            "DataSubject.AppearedOn",
            "DataSubject.Erased",
            "DataSubject.ErasureRequested",
            "DataSubject.ProvisionNoted",
            "DataSubject.Registered",
            "DataSubject.StopDecided",
        }
    )
    tables = (
        Table(
            "subjects",
            [
                ("subject_id", "text"),
                ("key_kind", "text"),
                ("key_generation", "int"),
                ("provision_stopped", "bool"),
                ("erasure_state", "text"),
                ("erased_at", "text"),
                ("registered_at", "text"),
                ("notification_id", "int"),
            ],
            ["subject_id"],
        ),
        Table(
            "items",
            [
                ("subject_id", "text"),
                ("record_id", "text"),
                ("item", "text"),
                ("generation", "int"),
                ("sealed", "text"),
                ("updated_at", "text"),
            ],
            ["subject_id", "record_id", "item"],
            indexes=[["record_id"]],
        ),
        Table(
            # One digest per item of a subject on a record: a new value replaces the old one.
            "lookup",
            [("kind", "text"), ("subject_id", "text"), ("record_id", "text"), ("digest", "text")],
            ["kind", "subject_id", "record_id"],
            indexes=[["kind", "digest"], ["subject_id"]],
        ),
        Table("records", [("subject_id", "text"), ("record_id", "text")], ["subject_id", "record_id"]),
        Table(
            "holds",
            [("subject_id", "text"), ("reference", "text"), ("until", "text"), ("reason", "text")],
            ["subject_id", "reference"],
        ),
        # Read by subject and by account (a subject's records through their ACME accounts).
        Table(
            "account_subjects",
            [("account_id", "text"), ("subject_id", "text")],
            ["account_id", "subject_id"],
            indexes=[["subject_id"]],
        ),
        Table(
            "record_accounts",
            [("record_id", "text"), ("account_id", "text")],
            ["record_id"],
            indexes=[["account_id"]],
        ),
        Table("record_holds", [("record_id", "text"), ("until", "text")], ["record_id"]),
    )

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self._opened: dict[bytes, Revealed] = {}

    def prepare(self, page: Sequence[Notified]) -> None:
        """Opens the page's sealed names and e-mail addresses in one go, outside the view's transaction."""
        sealed: list[Sealed] = []
        for notified in page:
            try:
                event: Any = notified.event
            except Exception:  # noqa: BLE001, S112 - apply meets it again, and the view stops naming it
                continue
            for attribute in ("items", "personal_changes", "added"):
                values = getattr(event, attribute, None)
                if isinstance(values, list):
                    sealed.extend(s for s in values if isinstance(s, Sealed) and s.kind in LOOKUP_KINDS)
        self._opened = dict(zip((s.blob for s in sealed), self.ledger.cipher.open_many(sealed), strict=True))

    # Items and their look-ups -----------------------------------------------

    def _put_item(self, rows: Writer, record_id: str | None, sealed: Sealed, at: datetime) -> None:
        subject_id = id_text(sealed.subject_id)
        where = {"subject_id": subject_id, "record_id": record_id, "item": sealed.kind}
        rows.upsert(
            "items",
            {
                **where,
                "generation": sealed.generation,
                "sealed": base64.b64encode(sealed.blob).decode(),
                "updated_at": utc_text(at),
            },
            key=["subject_id", "record_id", "item"],
        )
        if sealed.kind in LOOKUP_KINDS:
            value = self._opened.get(sealed.blob)
            if value is None:
                value = self.ledger.cipher.open(sealed)
            if isinstance(value, str):  # an erased subject's value cannot be indexed again
                rows.upsert(
                    "lookup",
                    {
                        "kind": sealed.kind,
                        "digest": self.ledger.lookup_digest(sealed.kind, value),
                        "subject_id": subject_id,
                        "record_id": record_id,
                    },
                    key=["kind", "subject_id", "record_id"],
                )

    @staticmethod
    def _drop_lookup(rows: Writer, subject_id: str | None, record_id: str | None, kind: str) -> None:
        if kind in LOOKUP_KINDS:
            rows.delete("lookup", {"kind": kind, "subject_id": subject_id, "record_id": record_id})

    def _drop_item(self, rows: Writer, subject_id: str | None, record_id: str | None, kind: str) -> None:
        self._drop_lookup(rows, subject_id, record_id, kind)
        rows.delete("items", {"subject_id": subject_id, "record_id": record_id, "item": kind})

    # Holds ------------------------------------------------------------------------

    @staticmethod
    def _hold(rows: Writer, subject_id: str | None, reference: str, until: str | None, reason: str) -> None:
        if until is not None:
            rows.upsert(
                "holds",
                {"subject_id": subject_id, "reference": reference, "until": until, "reason": reason},
                key=["subject_id", "reference"],
            )

    # Events -------------------------------------------------------------------------

    def apply(self, notified: Notified, rows: Writer) -> None:  # noqa: PLR0912 - one branch per event
        event: Any = notified.event
        kind = notified.event_type
        own_id = id_text(event.originator_id)
        at = event.cause.occurred_at
        if kind == "DataSubject.Registered":
            rows.insert(
                "subjects",
                {
                    "subject_id": own_id,
                    "key_kind": event.key_kind,
                    "key_generation": 1,
                    "provision_stopped": False,
                    "erasure_state": None,
                    "erased_at": None,
                    "registered_at": utc_text(at),
                    "notification_id": notified.notification_id,
                },
            )
        elif kind == "DataSubject.AppearedOn":
            rows.upsert(
                "records",
                {"subject_id": own_id, "record_id": id_text(event.record_id)},
                key=["subject_id", "record_id"],
            )
        elif kind == "DataSubject.ProvisionNoted":
            self._hold(
                rows,
                own_id,
                f"provision:{event.provision_id}",
                utc_text(event.retention_until),
                "APPI Art. 29 provision record retention",
            )
        elif kind == "DataSubject.StopDecided" and event.accepted:
            rows.update("subjects", {"subject_id": own_id}, {"provision_stopped": True})
        elif kind == "DataSubject.ErasureRequested":
            rows.update("subjects", {"subject_id": own_id}, {"erasure_state": "requested"})
        elif kind == "DataSubject.Erased":
            rows.update(
                "subjects",
                {"subject_id": own_id},
                {
                    "erasure_state": "erased",
                    "erased_at": utc_text(at),
                    "key_generation": event.generation + 1,
                },
            )
            rows.delete("lookup", {"subject_id": own_id})
            for item in rows.select("items", {"subject_id": own_id}):
                if item["generation"] <= event.generation:
                    rows.delete(
                        "items", {"subject_id": own_id, "record_id": item["record_id"], "item": item["item"]}
                    )
        elif kind in {"CertificateRecord.Collected", "AcmeAccount.Registered"}:
            for sealed in event.items:
                self._put_item(rows, own_id, sealed, at)
                if kind == "AcmeAccount.Registered":
                    rows.upsert(
                        "account_subjects",
                        {"account_id": own_id, "subject_id": id_text(sealed.subject_id)},
                        key=["account_id", "subject_id"],
                    )
        elif kind == "CertificateRecord.Corrected":
            for sealed in event.personal_changes:
                self._put_item(rows, own_id, sealed, at)
        elif kind == "AcmeAccount.ContactsChanged":
            for subject_id in event.removed:
                self._drop_item(rows, id_text(subject_id), own_id, "email")
            for sealed in event.added:
                self._put_item(rows, own_id, sealed, at)
                rows.upsert(
                    "account_subjects",
                    {"account_id": own_id, "subject_id": id_text(sealed.subject_id)},
                    key=["account_id", "subject_id"],
                )
        elif kind == "AcmeAccount.CertificateLinked":
            record_id = id_text(event.certificate_record_id)
            rows.upsert("record_accounts", {"record_id": record_id, "account_id": own_id}, key=["record_id"])
        elif kind == "CertificateRecord.Issued":
            until = utc_text(add_years(event.not_after, ISSUANCE_RECORD_RETENTION_YEARS))
            rows.upsert("record_holds", {"record_id": own_id, "until": until}, key=["record_id"])


def subject_ids_by(rows: list[dict[str, Any]]) -> list[UUID]:
    """The distinct subjects of look-up rows, in a stable order (by their text)."""
    return sorted({UUID(r["subject_id"]) for r in rows}, key=str)
