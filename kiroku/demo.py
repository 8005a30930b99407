"""A walk through the whole lifecycle the policy describes, printed as it happens.

It runs on its own event store (a fresh SQLite file unless told otherwise) and
uses made-up people. Every step is a real command on the ledger; refusals are
the ledger's own errors.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO

from domain.application import Ledger
from domain.cause import Cause
from domain.certificate import CertificateIdentity
from domain.commands import CommandResult, PersonalItemInput, ProvidedItemInput
from domain.errors import DomainError
from domain.identity import SubjectKey
from domain.provision import CtSubmission, Recipient

PURPOSES = {
    "P1": "providing the service",
    "P2": "verifying the user and the applicant's authority at application",
    "P3": "managing certificate information",
    "P4": "third-party provision as §4 defines it",
    "P5": "research to improve the service",
    "P6": "statistics and academic research, identifying no individual",
    "P7": "announcing new services",
    "P8": "other purposes announced beforehand",
}


class DemoClock:
    """The demo's own clock, so it can show what happens years later."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Demo:
    def __init__(self, ledger: Ledger, clock: DemoClock, out: TextIO) -> None:
        self.ledger = ledger
        self.clock = clock
        self.out = out
        self.counter = 0

    def say(self, text: str) -> None:
        print(text, file=self.out)

    def cause(self, source: str, actor: str) -> Cause:
        self.counter += 1
        return Cause(
            actor=actor,
            source_system=source,
            occurred_at=self.clock(),
            upstream_event_id=f"demo-{self.counter}",
            correlation_id=f"demo-run-{self.counter:03d}",
        )

    def step(self, title: str, action: Callable[[], CommandResult]) -> CommandResult | None:
        try:
            result = action()
        except DomainError as exc:
            self.say(f"  ✗ {title}: refused — {exc}")
            return None
        note = " (duplicate: nothing changed)" if result.duplicate else ""
        self.say(f"  ✓ {title}: recorded at position {result.position}{note}")
        return result


def run_demo(ledger: Ledger, clock: DemoClock, out: TextIO) -> None:  # noqa: PLR0915 - one story
    demo = Demo(ledger, clock, out)
    say = demo.say
    start = clock.now

    say("1. The policy (§3, §12)")
    demo.step(
        "version 2023-04 published (operators C1, terms C3, announced C4)",
        lambda: ledger.publish_policy(
            version="2023-04",
            effective_from=start - timedelta(days=600),
            announced_at=start - timedelta(days=630),
            purposes=PURPOSES,
            channels=["C1", "C3", "C4"],
            cause=demo.cause("compliance", "officer:sato"),
        ),
    )
    demo.step(
        "revision 2024-04 inserts the ACME channel C2, purposes unchanged",
        lambda: ledger.publish_policy(
            version="2024-04",
            effective_from=start - timedelta(days=300),
            announced_at=start - timedelta(days=330),
            purposes=PURPOSES,
            channels=["C1", "C2", "C3", "C4"],
            cause=demo.cause("compliance", "officer:sato"),
        ),
    )
    changed = dict(PURPOSES, P5="research, including selling data")
    demo.step(
        "a revision changing P5 without a justification",
        lambda: ledger.publish_policy(
            version="2025-01",
            effective_from=start + timedelta(days=30),
            announced_at=start,
            purposes=changed,
            channels=["C1", "C2"],
            cause=demo.cause("compliance", "officer:sato"),
        ),
    )

    say("\n2. Collection (§2, §5)")
    taro = SubjectKey.email("Taro.Yamada@example.co.jp")
    alice = SubjectKey.email("alice@example.com")
    ov = demo.step(
        "OV application through a designated operator (C1): applicant and a contact",
        lambda: ledger.collect(
            record_ref="app-2024-0001",
            channel="C1",
            purposes=["P1", "P2", "P3", "P4"],
            certificate=CertificateIdentity(
                "www.example.co.jp", ["www.example.co.jp", "example.co.jp"], "OV"
            ),
            organisation={
                "name": "株式会社エグザンプル",
                "locality": "千代田区",
                "state": "東京都",
                "country": "JP",
            },
            personal_items=[
                PersonalItemInput(taro, "name", "山田 太郎"),
                PersonalItemInput(taro, "email", "taro.yamada@example.co.jp"),
                PersonalItemInput(taro, "phone", "+81-3-1234-5678"),
                PersonalItemInput(taro, "postal_address", "東京都千代田区丸の内1-1-1"),
                PersonalItemInput(alice, "name", "Alice Smith"),
                PersonalItemInput(alice, "email", "alice@example.com"),
            ],
            cause=demo.cause("registrar", "operator:reseller-7"),
        ),
    )
    acme = demo.step(
        "DV certificate through the ACME server (C2), account contact",
        lambda: ledger.collect(
            record_ref="acme-order-88",
            channel="C2",
            purposes=["P1", "P3", "P4"],
            certificate=CertificateIdentity("shop.example.com", ["shop.example.com"], "DV"),
            personal_items=[PersonalItemInput(alice, "email", "alice@example.com")],
            cause=demo.cause("acme", "acme-server"),
        ),
    )
    assert ov is not None and ov.id is not None and acme is not None and acme.id is not None
    ov_id, acme_id = ov.id, acme.id
    demo.step(
        "the OV certificate is issued",
        lambda: ledger.record_issuance(
            ov_id,
            serial="04:a3:9f:11",
            not_before=clock.now,
            not_after=clock.now + timedelta(days=397),
            cause=demo.cause("registrar", "ca-issuer"),
        ),
    )

    say("\n3. Correction (§6)")
    demo.step(
        "the ACME server corrects the operator-collected record",
        lambda: ledger.correct(
            ov_id,
            channel="C2",
            personal_changes=[PersonalItemInput(taro, "phone", "+81-3-9999-0000")],
            cause=demo.cause("acme", "acme-server"),
        ),
    )
    demo.step(
        "the designated operator corrects Taro's phone number",
        lambda: ledger.correct(
            ov_id,
            channel="C1",
            personal_changes=[PersonalItemInput(taro, "phone", "+81-3-9999-0000")],
            cause=demo.cause("registrar", "operator:reseller-7"),
        ),
    )
    demo.step(
        "the ACME server updates the contact of its own account",
        lambda: ledger.correct(
            acme_id,
            channel="C2",
            personal_changes=[PersonalItemInput(alice, "email", "alice@shop.example.com")],
            cause=demo.cause("acme", "acme-server"),
        ),
    )

    say("\n4. Third-party provision (§4)")
    operator = Recipient("operator:reseller-7", "Reseller Seven K.K.", "JP")
    ct_log = Recipient("ct:argon2025", "Example CT Log (Argon)", "US")
    demo.step(
        "4.1 to the managing designated operator",
        lambda: ledger.record_provision(
            category="4.1",
            recipient=operator,
            certificate_record_id=ov_id,
            items=[
                ProvidedItemInput("name", taro),
                ProvidedItemInput("email", taro),
                ProvidedItemInput("common_name"),
            ],
            cause=demo.cause("registrar", "operator-interface"),
        ),
    )
    demo.step(
        "4.4 pre-certificate to a CT log abroad",
        lambda: ledger.record_provision(
            category="4.4",
            recipient=ct_log,
            certificate_record_id=ov_id,
            items=[ProvidedItemInput("name", taro), ProvidedItemInput("common_name")],
            ct_submission=CtSubmission("argon2025", clock.now),
            cause=demo.cause("acme", "ct-submitter"),
        ),
    )
    police = Recipient("gov:police-hq", "Prefectural Police", "JP")
    demo.step(
        "4.3 to an authority without naming the legal ground",
        lambda: ledger.record_provision(
            category="4.3",
            recipient=police,
            items=[ProvidedItemInput("name", taro)],
            cause=demo.cause("compliance", "officer:sato"),
        ),
    )

    say("\n5. Stop of third-party provision (§11)")
    demo.step(
        "Taro asks to stop third-party provision",
        lambda: ledger.request_stop(
            taro, request_id="stop-1", cause=demo.cause("compliance", "officer:sato")
        ),
    )
    decided = demo.step(
        "the request is accepted",
        lambda: ledger.decide_stop(
            taro,
            request_id="stop-1",
            accepted=True,
            reason="request of the data subject",
            cause=demo.cause("compliance", "officer:sato"),
        ),
    )
    if decided is not None:
        request = ledger.data_subject(taro).stop_requests["stop-1"]
        say(f"    what cannot be recalled: {len(request.irrevocable or [])} CT submission(s)")
    demo.step(
        "4.1 to the operator again",
        lambda: ledger.record_provision(
            category="4.1",
            recipient=operator,
            certificate_record_id=ov_id,
            items=[ProvidedItemInput("phone", taro)],
            cause=demo.cause("registrar", "operator-interface"),
        ),
    )
    demo.step(
        "4.3 under a court order (4.3.1) is still possible",
        lambda: ledger.record_provision(
            category="4.3",
            legal_ground="4.3.1",
            recipient=police,
            items=[ProvidedItemInput("name", taro)],
            cause=demo.cause("compliance", "officer:sato"),
        ),
    )

    say("\n6. Disclosure (§7)")
    opened = demo.step(
        "Taro asks to see all of his information",
        lambda: ledger.open_disclosure(
            taro, requested_format="json", cause=demo.cause("compliance", "officer:sato")
        ),
    )
    assert opened is not None and opened.id is not None
    request_id = opened.id
    demo.step(
        "fulfilling before identity is verified",
        lambda: ledger.fulfil_disclosure(request_id, cause=demo.cause("compliance", "officer:sato"))[0],
    )
    demo.step(
        "identity documents requested",
        lambda: ledger.request_identity_verification(
            request_id, method="copy of driving licence", cause=demo.cause("compliance", "officer:sato")
        ),
    )
    demo.step(
        "identity verified",
        lambda: ledger.record_identity_verified(
            request_id, evidence_ref="case-2024-77", cause=demo.cause("compliance", "officer:sato")
        ),
    )
    result, package = ledger.fulfil_disclosure(request_id, cause=demo.cause("compliance", "officer:sato"))
    item_count = sum(len(r["items"]) for r in package["records"])
    say(
        f"  ✓ fulfilled at position {result.position}: {len(package['records'])} record(s), "
        f"{item_count} item(s), {len(package['provisions'])} provision record(s)"
    )

    say("\n7. Erasure (crypto-shredding)")
    demo.step(
        "Alice asks for erasure",
        lambda: ledger.request_erasure(alice, cause=demo.cause("compliance", "officer:sato")),
    )
    demo.step(
        "carry it out now",
        lambda: ledger.carry_out_erasure(alice, cause=demo.cause("compliance", "officer:sato")),
    )
    for hold in ledger.legal_holds(ledger.subject_id(alice)):
        say(f"    hold: {hold.reason} until {hold.until.date().isoformat()}")
    clock.now = start + timedelta(days=365 * 4)
    say(f"  … time passes: it is now {clock.now.date().isoformat()}")
    demo.step(
        "carry it out now",
        lambda: ledger.carry_out_erasure(alice, cause=demo.cause("compliance", "officer:sato")),
    )
    record = ledger.certificate_record(acme_id)
    values = ledger.cipher.open_many(record.items.values())
    say(f"    the ACME record still loads; Alice's items now read: {', '.join(str(v) for v in values)}")
    taro_items = ledger.disclosure_package(ledger.subject_id(taro))["records"][0]["items"]
    say(f"    Taro is untouched: {len(taro_items)} readable item(s)")

    say("\n8. Idempotency")
    demo.step(
        "the operator's application message delivered again",
        lambda: ledger.collect(
            record_ref="app-2024-0001",
            channel="C1",
            purposes=["P1", "P2", "P3", "P4"],
            certificate=CertificateIdentity(
                "www.example.co.jp", ["www.example.co.jp", "example.co.jp"], "OV"
            ),
            organisation={
                "name": "株式会社エグザンプル",
                "locality": "千代田区",
                "state": "東京都",
                "country": "JP",
            },
            personal_items=[
                PersonalItemInput(taro, "name", "山田 太郎"),
                PersonalItemInput(taro, "email", "taro.yamada@example.co.jp"),
                PersonalItemInput(taro, "phone", "+81-3-1234-5678"),
                PersonalItemInput(taro, "postal_address", "東京都千代田区丸の内1-1-1"),
                PersonalItemInput(alice, "name", "Alice Smith"),
                PersonalItemInput(alice, "email", "alice@example.com"),
            ],
            cause=Cause(
                actor="operator:reseller-7",
                source_system="registrar",
                occurred_at=start,
                upstream_event_id="demo-4",
                correlation_id="demo-run-004",
            ),
        ),
    )
    say(f"\n{ledger.recorder.max_notification_id()} events recorded.")


def demo_clock() -> DemoClock:
    return DemoClock(datetime.now(UTC).replace(microsecond=0))
