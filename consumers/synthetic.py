"""Synthetic but realistic upstream traffic, for demos, tests and benchmarks.

Stories, not random messages: an operator's application (Japanese or Latin
names and addresses) is submitted, sometimes corrected, provided to its
managing operator and published to verifiers; an ACME account registers, its
orders' pre-certificates go to CT logs and its certificates are issued,
sometimes its contacts change or a certificate is revoked. Every message of a
story carries the story's key, so it lands on one partition and in order.
Seeded: the same seed gives the same traffic.
"""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from consumers.contract import Contract

NS = "jp.kiroku.upstream"
FAMILY = ["山田", "佐藤", "鈴木", "高橋", "田中", "伊藤", "渡辺", "中村", "小林", "加藤"]
GIVEN = ["太郎", "花子", "健一", "美咲", "翔太", "陽菜", "大輔", "さくら", "拓也", "結衣"]
LATIN = ["Alice Smith", "Bob Jones", "Carol Martin", "David Brown", "Eve Wilson", "Frank Moore", "Grace Lee"]
CITIES = [
    "東京都千代田区丸の内",
    "大阪府大阪市北区梅田",
    "福岡県福岡市中央区天神",
    "北海道札幌市中央区北一条",
]
STREETS = ["1 Market Street, San Francisco", "10 Downing Street, London", "5 Rue de Rivoli, Paris"]
CT_LOGS = [
    ("argon2026", "Google Argon", "US"),
    ("nimbus2026", "Cloudflare Nimbus", "US"),
    ("sabre2026", "Sectigo Sabre", "GB"),
]
OPERATORS = [
    ("op-001", "リセラー株式会社", "JP"),
    ("op-002", "Registrar Asia Pte", "SG"),
    ("op-003", "ドメイン販売株式会社", "JP"),
]


@dataclass(frozen=True)
class Message:
    """One upstream message ready to send: topic, key and framed value."""

    topic: str
    key: bytes
    value: bytes
    type_name: str


class Traffic:
    """Generates messages story by story."""

    def __init__(self, contract: Contract, seed: int = 0, start: datetime | None = None) -> None:
        self.contract = contract
        self.random = random.Random(seed)  # noqa: S311 - reproducible test data, not secrets
        self.clock = start or datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
        self.counter = 0
        self.run = uuid.UUID(int=self.random.getrandbits(128)).hex[:8]

    def _tick(self) -> datetime:
        self.clock += timedelta(seconds=self.random.randint(1, 90))
        return self.clock

    def _envelope(self, source: str, actor: str, correlation: str) -> dict[str, Any]:
        return {
            "event_id": uuid.UUID(int=self.random.getrandbits(128), version=4),
            "occurred_at": self._tick(),
            "source_system": source,
            "actor": actor,
            "correlation_id": correlation,
        }

    def _frame(self, name: str, record: dict[str, Any]) -> bytes:
        # Mostly the newest version in the Confluent framing; some older versions
        # and single-object encodings, as a mixed fleet of producers would send.
        versions = self.contract.versions_of(name)
        version = self.random.choice(versions).version
        if self.random.random() < 0.2:
            return self.contract.encode_single_object(name, record, version)
        return self.contract.encode_confluent(name, record, version)

    def _message(self, topic: str, key: str, kind: str, record: dict[str, Any]) -> Message:
        name = f"{NS}.{kind}"
        return Message(topic, key.encode(), self._frame(name, record), name)

    def _person(self, n: int) -> dict[str, Any]:
        japanese = self.random.random() < 0.6
        name = (
            f"{self.random.choice(FAMILY)} {self.random.choice(GIVEN)}"
            if japanese
            else self.random.choice(LATIN)
        )
        address = (
            f"{self.random.choice(CITIES)}{self.random.randint(1, 9)}-{self.random.randint(1, 30)}"
            if japanese
            else self.random.choice(STREETS)
        )
        return {
            "subject_ref": None,
            "name": name,
            "email": f"person{n}.{self.run}@example.{'jp' if japanese else 'com'}",
            "phone": f"+81-3-{self.random.randint(1000, 9999)}-{self.random.randint(1000, 9999)}",
            "postal_address": address,
        }

    def application_story(self) -> Iterator[Message]:
        """§5 C1 → §6 (sometimes) → §4.1 → §4.2."""
        self.counter += 1
        app_id = f"app-{self.run}-{self.counter}"
        operator = self.random.choice(OPERATORS)
        corr = f"corr-{app_id}"
        applicant = self._person(self.counter * 10)
        contacts = [self._person(self.counter * 10 + i) for i in range(1, self.random.randint(1, 3))]
        ov = self.random.random() < 0.5
        cn = f"www.shop{self.counter}.example.jp"
        certificate = {
            "common_name": cn,
            "sans": [cn, cn.removeprefix("www.")],
            "validation": "OV" if ov else "DV",
            "serial": None,
        }
        organisation = {
            "name": f"株式会社サンプル{self.counter}",
            "unit": None,
            "locality": "千代田区",
            "state": "東京都",
            "country": "JP",
        }
        yield self._message(
            "registrar.events",
            app_id,
            "registrar.ApplicationSubmitted",
            {
                "envelope": self._envelope("registrar", f"operator:{operator[0]}", corr),
                "application_id": app_id,
                "operator_id": operator[0],
                "certificate": certificate,
                "organisation": organisation if ov else None,
                "applicant": applicant,
                "contacts": contacts,
                "purposes": ["P1", "P2", "P3", "P4"],
                "operator_reference": f"REF-{self.counter}",
            },
        )
        if self.random.random() < 0.3:
            changed = dict(
                applicant, phone=f"+81-90-{self.random.randint(1000, 9999)}-{self.random.randint(1000, 9999)}"
            )
            yield self._message(
                "registrar.events",
                app_id,
                "registrar.CorrectionSubmitted",
                {
                    "envelope": self._envelope("registrar", f"operator:{operator[0]}", corr),
                    "application_id": app_id,
                    "common_name": None,
                    "sans": None,
                    "organisation": None,
                    "contacts": [
                        {
                            "subject_ref": None,
                            "name": None,
                            "email": changed["email"],
                            "phone": changed["phone"],
                            "postal_address": None,
                        }
                    ],
                },
            )
        yield self._message(
            "registrar.events",
            app_id,
            "registrar.InformationProvided",
            {
                "envelope": self._envelope("registrar", "operator-interface", corr),
                "application_id": app_id,
                "recipient": {"recipient_id": operator[0], "name": operator[1], "country": operator[2]},
                "items": [
                    {"item": "name", "subject_email": applicant["email"], "subject_ref": None},
                    {"item": "email", "subject_email": applicant["email"], "subject_ref": None},
                    {"item": "common_name", "subject_email": None, "subject_ref": None},
                ],
            },
        )
        yield self._message(
            "registrar.events",
            app_id,
            "registrar.StatusPublished",
            {
                "envelope": self._envelope("registrar", "ocsp-responder", corr),
                "application_id": app_id,
                "recipient": {
                    "recipient_id": "verifiers",
                    "name": "Certificate verifiers (OCSP, CRL, repository)",
                    "country": "JP",
                },
                "items": ["common_name", "sans", "validity"],
            },
        )

    def acme_story(self) -> Iterator[Message]:
        """An account (§5 C2), its orders' CT submissions (§4.4) and certificates, changes."""
        self.counter += 1
        account = f"acct-{self.run}-{self.counter}"
        corr = f"corr-{account}"
        contacts = [f"admin{self.counter}.{self.run}@example.org"]
        yield self._message(
            "acme.events",
            account,
            "acme.AccountRegistered",
            {
                "envelope": self._envelope("acme", "acme-server", corr),
                "account_id": account,
                "contacts": contacts,
                "purposes": ["P1", "P3", "P4"],
                "external_account_binding": None,
            },
        )
        for order_no in range(self.random.randint(1, 3)):
            order = f"{account}-order-{order_no}"
            cn = f"host{order_no}.acct{self.counter}.example.org"
            serial = f"{self.random.getrandbits(64):x}"
            certificate = {"common_name": cn, "sans": [cn], "validation": "DV", "serial": serial}
            log = self.random.choice(CT_LOGS)
            yield self._message(
                "acme.events",
                account,
                "acme.PrecertificateSubmitted",
                {
                    "envelope": self._envelope("acme", "ct-submitter", corr),
                    "account_id": account,
                    "order_id": order,
                    "certificate": certificate,
                    "log_id": log[0],
                    "log_operator": {"recipient_id": f"ct:{log[0]}", "name": log[1], "country": log[2]},
                    "logged_at": self.clock,
                    "purposes": ["P1", "P3", "P4"],
                },
            )
            not_before = self.clock
            yield self._message(
                "acme.events",
                account,
                "acme.CertificateIssued",
                {
                    "envelope": self._envelope("acme", "acme-server", corr),
                    "account_id": account,
                    "order_id": order,
                    "certificate": certificate,
                    "not_before": not_before,
                    "not_after": not_before + timedelta(days=90),
                    "purposes": ["P1", "P3", "P4"],
                },
            )
            if self.random.random() < 0.1:
                yield self._message(
                    "acme.events",
                    account,
                    "acme.CertificateRevoked",
                    {
                        "envelope": self._envelope("acme", "acme-server", corr),
                        "order_id": order,
                        "reason": "superseded",
                        "revoked_at": self.clock,
                    },
                )
        if self.random.random() < 0.3:
            yield self._message(
                "acme.events",
                account,
                "acme.AccountContactUpdated",
                {
                    "envelope": self._envelope("acme", "acme-server", corr),
                    "account_id": account,
                    "contacts": [f"ops{self.counter}.{self.run}@example.org"],
                },
            )

    def messages(self, count: int) -> Iterator[Message]:
        """At least ``count`` messages' worth of whole stories, cut at ``count``."""
        produced = 0
        while produced < count:
            story = self.application_story() if self.random.random() < 0.5 else self.acme_story()
            for message in story:
                if produced >= count:
                    return
                produced += 1
                yield message
