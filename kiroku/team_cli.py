"""Commands for people who live in a terminal: subject, certificate, audit, ledger, disclosure.

They read the views and write through the ledger like the HTTP API does, and
every showing of personal data is recorded as an access event, with the
operating-system user as the actor.
"""

from __future__ import annotations

import argparse
import csv
import getpass
import json
import os
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from domain.application import Ledger
from domain.cause import Cause
from domain.identity import SubjectKey
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from projections.service import Projections


def _open() -> tuple[Ledger, Projections]:
    ledger = build_ledger(Settings.from_env(dict(os.environ)))
    projections = Projections(ledger)
    projections.catch_up()  # a terminal user reads what is recorded now
    return ledger, projections


def _cause() -> Cause:
    return Cause(actor=f"cli:{getpass.getuser()}", source_system="kiroku-cli", occurred_at=datetime.now(UTC))


def _moment(text: str | None) -> datetime | None:
    if text is None:
        return None
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise SystemExit("kiroku: times need a time zone, e.g. 2025-01-31T09:00:00+09:00")
    return moment


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """A plain text table; long cells are cut so a row fits on a line."""
    cells = [[str(r.get(c, "") if r.get(c) is not None else "")[:48] for c in columns] for r in rows]
    widths = [max([len(c), *(len(row[i]) for row in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join(lines)


def _out(args: argparse.Namespace, data: Any, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    if getattr(args, "json", False):
        print(json.dumps(data, ensure_ascii=False, indent=2, default=str))
    else:
        print(table(rows, columns) if rows else "(none)")


def subject(args: argparse.Namespace) -> int:
    ledger, projections = _open()
    try:
        if args.id:
            ids = [UUID(args.id)]
        else:
            kind, value = ("email", args.email) if args.email else ("name", args.name)
            ids = projections.subjects_by(kind, value)
        if not ids:
            print("no data subject found")
            return 1
        states = []
        for subject_id in ids:
            if args.as_of:
                states.append(
                    {
                        "subject_id": str(subject_id),
                        **ledger.disclosure_package(subject_id, _moment(args.as_of)),
                    }
                )
            else:
                state = projections.subject(subject_id, datetime.now(UTC))
                if state is not None:
                    states.append(state)
        ledger.record_access(ids, endpoint="kiroku subject", cause=_cause())
        rows = [
            {
                "subject_id": s["subject_id"],
                "record_id": i["record_id"],
                "item": i["item"],
                "value": i["value"],
            }
            for s in states
            for i in s.get("items", [])
        ] or [{"subject_id": s["subject_id"], "state": s.get("erasure_state") or "held"} for s in states]
        _out(args, states, rows, list(rows[0]) if rows else ["subject_id"])
    finally:
        ledger.close()
    return 0


def certificate(args: argparse.Namespace) -> int:
    ledger, projections = _open()
    try:
        state = projections.certificate(UUID(args.id), _moment(args.as_of) or datetime.now(UTC))
        if state is None:
            print("no such certificate record")
            return 1
        rows = [{"field": k, "value": v} for k, v in state.items() if k != "recipients"]
        _out(args, state, rows, ["field", "value"])
        if not args.json and state["recipients"]:
            print()
            print(table(state["recipients"], ["provision_id", "recipient_id", "category"]))
    finally:
        ledger.close()
    return 0


def audit(args: argparse.Namespace) -> int:
    ledger, projections = _open()
    try:
        rows = projections.audit_page(
            after=args.after,
            limit=args.limit,
            subject=UUID(args.subject) if args.subject else None,
            certificate=UUID(args.certificate) if args.certificate else None,
            event_type=args.event_type,
            actor=args.actor,
            since=_moment(args.since),
            until=_moment(args.until),
        )
        _out(
            args,
            rows,
            rows,
            ["notification_id", "occurred_at", "event_type", "actor", "clause", "policy_version"],
        )
    finally:
        ledger.close()
    return 0


def ledger_records(args: argparse.Namespace) -> int:
    ledger, projections = _open()
    try:
        rows = projections.provision_records(
            recipient=args.recipient,
            category=args.category,
            country=args.country,
            foreign_only=args.foreign_only,
            since=_moment(args.since),
            until=_moment(args.until),
        )
        if args.csv:
            writer = csv.DictWriter(sys.stdout, fieldnames=list(rows[0]) if rows else ["provision_id"])
            writer.writeheader()
            writer.writerows(rows)
        else:
            _out(
                args,
                rows,
                rows,
                [
                    "provided_at",
                    "category",
                    "legal_ground",
                    "recipient_id",
                    "country",
                    "foreign_recipient",
                    "retention_until",
                ],
            )
    finally:
        ledger.close()
    return 0


def disclosure(args: argparse.Namespace) -> int:
    ledger, projections = _open()
    try:
        action = args.disclosure_command
        if action == "list":
            rows = projections.requests(datetime.now(UTC), open_only=args.state != "all")
            if args.state == "overdue":
                rows = [r for r in rows if r["overdue"]]
            _out(args, rows, rows, ["request_id", "kind", "state", "received_at", "due_at", "overdue"])
            return 0
        if action == "open":
            result = ledger.open_disclosure(
                SubjectKey.email(args.email), requested_format=args.format, cause=_cause()
            )
        elif action == "request-verification":
            result = ledger.request_identity_verification(UUID(args.id), method=args.method, cause=_cause())
        elif action == "verified":
            result = ledger.record_identity_verified(
                UUID(args.id), evidence_ref=args.evidence, cause=_cause()
            )
        elif action == "verification-failed":
            result = ledger.record_identity_verification_failed(
                UUID(args.id), reason=args.reason, cause=_cause()
            )
        elif action == "refuse":
            result = ledger.refuse_disclosure(
                UUID(args.id), ground=args.ground, explanation=args.explanation, cause=_cause()
            )
        else:
            result, package = ledger.fulfil_disclosure(UUID(args.id), cause=_cause())
            ledger.record_access(
                [UUID(package["subject_id"])], endpoint="kiroku disclosure fulfil", cause=_cause()
            )
            Path(args.out).write_text(json.dumps(package, ensure_ascii=False, indent=2), encoding="utf-8")
            print(f"package written to {args.out}")
        print(
            f"{action}: {result.id} (position {result.position}{', duplicate' if result.duplicate else ''})"
        )
    finally:
        ledger.close()
    return 0


def register(sub: Any) -> None:
    s = sub.add_parser("subject", help="a data subject: items, records, holds (recorded as access)")
    who = s.add_mutually_exclusive_group(required=True)
    who.add_argument("--email")
    who.add_argument("--name")
    who.add_argument("--id")
    s.add_argument("--as-of", help="as the ledger knew it then (ISO 8601 with a time zone)")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=subject)
    c = sub.add_parser("certificate", help="a certificate record: information, status, recipients")
    c.add_argument("id")
    c.add_argument("--as-of")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=certificate)
    a = sub.add_parser("audit", help="the audit trail, oldest first")
    for flag in ("--subject", "--certificate", "--event-type", "--actor", "--since", "--until"):
        a.add_argument(flag)
    a.add_argument("--after", type=int, default=0, help="after this notification id")
    a.add_argument("--limit", type=int, default=50)
    a.add_argument("--json", action="store_true")
    a.set_defaults(func=audit)
    led = sub.add_parser("ledger", help="the provision ledger (APPI Art. 29 records)")
    for flag in ("--recipient", "--country", "--since", "--until"):
        led.add_argument(flag)
    led.add_argument("--category", choices=["4.1", "4.2", "4.3", "4.4"])
    led.add_argument("--foreign-only", action="store_true")
    fmt = led.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true")
    fmt.add_argument("--csv", action="store_true")
    led.set_defaults(func=ledger_records)
    d = sub.add_parser("disclosure", help="§7 disclosure requests")
    dsub = d.add_subparsers(dest="disclosure_command", required=True)
    listing = dsub.add_parser("list")
    listing.add_argument("--state", choices=["open", "overdue", "all"], default="open")
    listing.add_argument("--json", action="store_true")
    opening = dsub.add_parser("open")
    opening.add_argument("--email", required=True)
    opening.add_argument("--format", choices=["json", "csv", "paper"], default="json")
    for name, extra in (
        ("request-verification", "--method"),
        ("verified", "--evidence"),
        ("verification-failed", "--reason"),
    ):
        step = dsub.add_parser(name)
        step.add_argument("id")
        step.add_argument(extra, required=True)
    refuse = dsub.add_parser("refuse")
    refuse.add_argument("id")
    refuse.add_argument("--ground", required=True)
    refuse.add_argument("--explanation", required=True)
    fulfil = dsub.add_parser("fulfil")
    fulfil.add_argument("id")
    fulfil.add_argument("--out", required=True, help="where to write the package (JSON)")
    d.set_defaults(func=disclosure)
