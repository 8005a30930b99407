"""§7: the disclosure package, all of one subject's information and nothing of anyone else's."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from domain.account import AcmeAccount
from domain.certificate import CertificateRecord
from domain.personal import PersonalDataCipher
from domain.provision import Provision
from domain.subject import DataSubject


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _record_part(
    record: CertificateRecord | AcmeAccount,
    subject: DataSubject,
    cipher: PersonalDataCipher,
    now: datetime,
    account_certificates: Mapping[UUID, Sequence[UUID]],
) -> dict[str, Any]:
    mine = sorted((s for (sid, _), s in record.items.items() if sid == subject.id), key=lambda s: s.kind)
    previous = [(at, s) for at, s in record.superseded if s.subject_id == subject.id]
    opened = cipher.open_many([*mine, *(s for _, s in previous)])
    current = opened[: len(mine)]
    old = opened[len(mine) :]
    part: dict[str, Any] = {
        "record_id": str(record.id),
        "kind": "certificate" if isinstance(record, CertificateRecord) else "acme-account",
        "record_ref": record.record_ref if isinstance(record, CertificateRecord) else record.account_ref,
        "channel": record.channel,
        "policy_version": record.policy_version,
        "purposes": list(record.purposes),
        "collected_at": _iso(record.collected_at),
        "items": {s.kind: str(v) for s, v in zip(mine, current, strict=True)},
        "superseded_items": [
            {"item": s.kind, "value": str(v), "superseded_at": at.isoformat()}
            for (at, s), v in zip(previous, old, strict=True)
        ],
    }
    if isinstance(record, CertificateRecord):
        part["certificate"] = {
            "common_name": record.common_name,
            "sans": list(record.sans),
            "serial": record.serial,
            "validation": record.validation,
            "not_before": _iso(record.not_before),
            "not_after": _iso(record.not_after),
            "status": record.status_at(now),
        }
        part["organisation"] = record.organisation
    else:
        part["certificate_record_ids"] = [str(r) for r in account_certificates.get(record.id, ())]
        part["deactivated_at"] = _iso(record.deactivated_at)
    return part


def _provision_part(provision: Provision, subject: DataSubject) -> dict[str, Any]:
    return {
        "provision_id": str(provision.id),
        "category": provision.category,
        "legal_ground": provision.legal_ground,
        "recipient": dict(provision.recipient),
        "foreign_recipient": provision.foreign,
        "items": sorted(i["item"] for i in provision.items if i.get("subject_id") == subject.id),
        "certificate_record_id": str(provision.certificate_record_id)
        if provision.certificate_record_id
        else None,
        "unspecified_many": provision.unspecified_many,
        "ct_log": (
            {"log_id": provision.ct_log["log_id"], "logged_at": _iso(provision.ct_log["logged_at"])}
            if provision.ct_log
            else None
        ),
        "provided_at": _iso(provision.provided_at),
        "record_retained_until": _iso(provision.retention_until),
    }


def build_package(
    subject: DataSubject,
    records: Sequence[CertificateRecord | AcmeAccount],
    provisions: Sequence[Provision],
    cipher: PersonalDataCipher,
    now: datetime,
    *,
    account_certificates: Mapping[UUID, Sequence[UUID]],
) -> dict[str, Any]:
    """``account_certificates``: the certificate records issued under each ACME account among ``records``."""
    return {
        "subject_id": str(subject.id),
        "generated_at": now.isoformat(),
        "clause": "§7",
        "erasure": {"state": subject.erasure_state, "erased_at": _iso(subject.erased_at)},
        "third_party_provision_stopped": subject.provision_stopped,
        "records": [_record_part(r, subject, cipher, now, account_certificates) for r in records],
        "provisions": [_provision_part(p, subject) for p in provisions],
        "stop_requests": [
            {
                "request_id": r.request_id,
                "state": r.state,
                "requested_at": _iso(r.requested_at),
                "decided_at": _iso(r.decided_at),
                "reason": r.reason,
                "irrevocable_provisions": [str(p) for p in (r.irrevocable or [])],
            }
            for r in subject.stop_requests.values()
        ],
    }


def package_digest(package: dict[str, Any]) -> str:
    """SHA-256 of the package's canonical JSON: what was handed over, without storing it again."""
    canonical = json.dumps(package, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
