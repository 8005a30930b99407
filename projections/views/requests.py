"""Disclosure (§7), stop (§11) and erasure requests: state, due date, and when they closed."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from domain.application import DISCLOSURE_DUE_DAYS
from projections.sql import Table, Writer, id_text, utc_text
from projections.view import Notified, View

#: Stop and erasure requests are answered "without delay"; kiroku's target is the disclosure one.
ANSWER_DAYS = DISCLOSURE_DUE_DAYS
DISCLOSURE_STATES = {
    "DisclosureRequest.VerificationRequested": "verification-requested",
    "DisclosureRequest.IdentityVerified": "verified",
    "DisclosureRequest.IdentityVerificationFailed": "verification-failed",
}


class Requests(View):
    name = "requests"
    schema = 1
    indexes_applying_reads = frozenset({("requests", "subject_id")})
    event_types = frozenset(
        {
            *DISCLOSURE_STATES,
            "DataSubject.Erased",
            "DataSubject.ErasureRequested",
            "DataSubject.StopDecided",
            "DataSubject.StopRequested",
            "DisclosureRequest.Fulfilled",
            "DisclosureRequest.Received",
            "DisclosureRequest.Refused",
        }
    )
    tables = (
        Table(
            "requests",
            [
                ("request_id", "text"),
                ("kind", "text"),
                ("subject_id", "text"),
                ("state", "text"),
                ("received_at", "text"),
                ("due_at", "text"),
                ("closed_at", "text"),
                ("requested_format", "text"),
                ("ground", "text"),
                ("notification_id", "int"),
            ],
            ["request_id"],
            indexes=[["subject_id"], ["state", "due_at"]],
        ),
    )

    def apply(self, notified: Notified, rows: Writer) -> None:
        event: Any = notified.event
        kind = notified.event_type
        own_id = id_text(event.originator_id)
        at = event.cause.occurred_at
        closing = {"closed_at": utc_text(at), "notification_id": notified.notification_id}
        if kind == "DisclosureRequest.Received":
            self._open(rows, own_id, "disclosure", id_text(event.subject_id), at, event.due_at, notified)
            rows.update("requests", {"request_id": own_id}, {"requested_format": event.requested_format})
        elif kind in DISCLOSURE_STATES:
            rows.update(
                "requests",
                {"request_id": own_id},
                {"state": DISCLOSURE_STATES[kind], "notification_id": notified.notification_id},
            )
        elif kind == "DisclosureRequest.Fulfilled":
            rows.update("requests", {"request_id": own_id}, {"state": "fulfilled", **closing})
        elif kind == "DisclosureRequest.Refused":
            rows.update(
                "requests", {"request_id": own_id}, {"state": "refused", "ground": event.ground, **closing}
            )
        elif kind == "DataSubject.StopRequested":
            self._open(rows, f"{own_id}:stop:{event.request_id}", "stop", own_id, at, None, notified)
        elif kind == "DataSubject.StopDecided":
            rows.update(
                "requests",
                {"request_id": f"{own_id}:stop:{event.request_id}"},
                {"state": "accepted" if event.accepted else "refused", "ground": event.reason, **closing},
            )
        elif kind == "DataSubject.ErasureRequested":
            self._open(
                rows, f"{own_id}:erasure:{notified.notification_id}", "erasure", own_id, at, None, notified
            )
        elif kind == "DataSubject.Erased":
            for request in rows.select(
                "requests", {"subject_id": own_id, "kind": "erasure", "state": "requested"}
            ):
                rows.update(
                    "requests", {"request_id": request["request_id"]}, {"state": "carried-out", **closing}
                )

    @staticmethod
    def _open(  # noqa: PLR0917 - one row's values, in the table's order
        rows: Writer,
        request_id: str | None,
        kind: str,
        subject_id: str | None,
        at: Any,
        due: Any,
        notified: Notified,
    ) -> None:
        rows.insert(
            "requests",
            {
                "request_id": request_id,
                "kind": kind,
                "subject_id": subject_id,
                "state": "requested" if kind != "disclosure" else "received",
                "received_at": utc_text(at),
                "due_at": utc_text(due or at + timedelta(days=ANSWER_DAYS)),
                "closed_at": None,
                "requested_format": None,
                "ground": None,
                "notification_id": notified.notification_id,
            },
        )
