"""A walk through the whole lifecycle the policy describes, printed as it happens.

Every step is a real command on the ledger and every refusal is the ledger's
own error. The people are made up. Record references and upstream event ids
carry a tag of the run, so the walk can be repeated on a store that keeps
what earlier runs recorded.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TextIO
from uuid import UUID, uuid4

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
OFFICER = ("compliance", "officer:sato")
OPERATOR_SYSTEM = ("registrar", "operator:reseller-7")
ACME_SYSTEM = ("acme", "acme-server")


class Demo:
    """Issues commands with causes and prints what the ledger answered."""

    def __init__(self, ledger: Ledger, out: TextIO) -> None:
        self.ledger = ledger
        self.out = out
        self.tag = uuid4().hex[:8]
        self.counter = 0

    def say(self, text: str) -> None:
        print(text, file=self.out)

    def cause(self, who: tuple[str, str], at: datetime | None = None) -> Cause:
        self.counter += 1
        return Cause(
            actor=who[1],
            source_system=who[0],
            occurred_at=at or self.ledger.clock(),
            upstream_event_id=f"demo-{self.tag}-{self.counter}",
            correlation_id=f"demo-{self.tag}",
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


def _policy(demo: Demo) -> None:
    ledger, now = demo.ledger, demo.ledger.clock()
    demo.say("1. The policy (§3, §12)")
    if ledger.policy_versions():
        demo.say(f"  · already published: {', '.join(v.version for v in ledger.policy_versions())}")
    else:
        demo.step(
            "version 2018-04 published (operators C1, terms C3, announced C4)",
            lambda: ledger.publish_policy(
                version="2018-04",
                effective_from=now - timedelta(days=3000),
                announced_at=now - timedelta(days=3030),
                purposes=PURPOSES,
                channels=["C1", "C3", "C4"],
                cause=demo.cause(OFFICER),
            ),
        )
        demo.step(
            "revision 2024-04 inserts the ACME channel C2, purposes unchanged",
            lambda: ledger.publish_policy(
                version="2024-04",
                effective_from=now - timedelta(days=300),
                announced_at=now - timedelta(days=330),
                purposes=PURPOSES,
                channels=["C1", "C2", "C3", "C4"],
                cause=demo.cause(OFFICER),
            ),
        )
    demo.step(
        "a revision changing P5 without a justification",
        lambda: ledger.publish_policy(
            version=f"draft-{demo.tag}",
            effective_from=now + timedelta(days=30),
            announced_at=now,
            purposes=dict(PURPOSES, P5="research, including selling data"),
            channels=["C1", "C2"],
            cause=demo.cause(OFFICER),
        ),
    )


def run_demo(ledger: Ledger, out: TextIO) -> None:  # noqa: PLR0915 - one story, told in order
    demo = Demo(ledger, out)
    say, now, tag = demo.say, ledger.clock(), demo.tag
    _policy(demo)

    say("\n2. Collection (§2, §5)")
    taro = SubjectKey.email("Taro.Yamada@example.co.jp")
    alice = SubjectKey.email("alice@example.com")
    bob = SubjectKey.email("bob@example.org")
    application_cause = demo.cause(OPERATOR_SYSTEM)

    def taro_application() -> CommandResult:
        return ledger.collect(
            record_ref=f"app-{tag}",
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
            cause=application_cause,
        )

    ov = demo.step(
        "OV application through a designated operator (C1): applicant and a contact", taro_application
    )
    acme = demo.step(
        "DV certificate through the ACME server (C2), account contact",
        lambda: ledger.collect(
            record_ref=f"acme-order-{tag}",
            channel="C2",
            purposes=["P1", "P3", "P4"],
            certificate=CertificateIdentity("shop.example.com", ["shop.example.com"], "DV"),
            personal_items=[PersonalItemInput(alice, "email", "alice@example.com")],
            cause=demo.cause(ACME_SYSTEM),
        ),
    )
    long_ago = now - timedelta(days=6 * 365)
    old = demo.step(
        f"Bob's application of {long_ago.date().isoformat()} (C1)",
        lambda: ledger.collect(
            record_ref=f"app-old-{tag}",
            channel="C1",
            purposes=["P1", "P3"],
            certificate=CertificateIdentity("old.example.org", ["old.example.org"], "DV"),
            personal_items=[
                PersonalItemInput(bob, "name", "Bob Jones"),
                PersonalItemInput(bob, "email", "bob@example.org"),
            ],
            cause=demo.cause(OPERATOR_SYSTEM, long_ago),
        ),
    )
    assert ov is not None and acme is not None and old is not None
    ov_id, acme_id, old_id = ov.id, acme.id, old.id
    assert isinstance(ov_id, UUID) and isinstance(acme_id, UUID) and isinstance(old_id, UUID)
    demo.step(
        "the OV certificate is issued (397 days)",
        lambda: ledger.record_issuance(
            ov_id,
            serial="04:a3:9f:11",
            not_before=now,
            not_after=now + timedelta(days=397),
            cause=demo.cause(OPERATOR_SYSTEM),
        ),
    )
    demo.step(
        "Bob's certificate was issued back then (one year)",
        lambda: ledger.record_issuance(
            old_id,
            serial="1f",
            not_before=long_ago,
            not_after=long_ago + timedelta(days=365),
            cause=demo.cause(OPERATOR_SYSTEM, long_ago),
        ),
    )

    say("\n3. Correction (§6)")
    new_phone = [PersonalItemInput(taro, "phone", "+81-3-9999-0000")]
    demo.step(
        "the ACME server corrects the operator-collected record",
        lambda: ledger.correct(
            ov_id, channel="C2", personal_changes=new_phone, cause=demo.cause(ACME_SYSTEM)
        ),
    )
    demo.step(
        "the designated operator corrects Taro's phone number",
        lambda: ledger.correct(
            ov_id, channel="C1", personal_changes=new_phone, cause=demo.cause(OPERATOR_SYSTEM)
        ),
    )
    demo.step(
        "the ACME server updates the contact of its own account",
        lambda: ledger.correct(
            acme_id,
            channel="C2",
            personal_changes=[PersonalItemInput(alice, "email", "alice@shop.example.com")],
            cause=demo.cause(ACME_SYSTEM),
        ),
    )

    say("\n4. Third-party provision (§4)")
    operator = Recipient("operator:reseller-7", "Reseller Seven K.K.", "JP")
    ct_log = Recipient("ct:argon2025", "Example CT Log (Argon)", "US")
    police = Recipient("gov:police-hq", "Prefectural Police", "JP")
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
            cause=demo.cause(OPERATOR_SYSTEM),
        ),
    )
    demo.step(
        "4.4 pre-certificate to a CT log abroad",
        lambda: ledger.record_provision(
            category="4.4",
            recipient=ct_log,
            certificate_record_id=ov_id,
            items=[ProvidedItemInput("name", taro), ProvidedItemInput("common_name")],
            ct_submission=CtSubmission("argon2025", now),
            cause=demo.cause(ACME_SYSTEM),
        ),
    )
    demo.step(
        "4.3 to an authority without naming the legal ground",
        lambda: ledger.record_provision(
            category="4.3",
            recipient=police,
            items=[ProvidedItemInput("name", taro)],
            cause=demo.cause(OFFICER),
        ),
    )

    say("\n5. Stop of third-party provision (§11)")
    stop_id = f"stop-{tag}"
    demo.step(
        "Taro asks to stop third-party provision",
        lambda: ledger.request_stop(taro, request_id=stop_id, cause=demo.cause(OFFICER)),
    )
    if demo.step(
        "the request is accepted",
        lambda: ledger.decide_stop(
            taro,
            request_id=stop_id,
            accepted=True,
            reason="request of the data subject",
            cause=demo.cause(OFFICER),
        ),
    ):
        request = ledger.data_subject(taro).stop_requests[stop_id]
        say(f"    cannot be recalled: {len(request.irrevocable or [])} CT submission(s) already public")
    demo.step(
        "4.1 to the operator again",
        lambda: ledger.record_provision(
            category="4.1",
            recipient=operator,
            certificate_record_id=ov_id,
            items=[ProvidedItemInput("phone", taro)],
            cause=demo.cause(OPERATOR_SYSTEM),
        ),
    )
    demo.step(
        "4.3 under a court order (4.3.1) is still possible",
        lambda: ledger.record_provision(
            category="4.3",
            legal_ground="4.3.1",
            recipient=police,
            items=[ProvidedItemInput("name", taro)],
            cause=demo.cause(OFFICER),
        ),
    )

    say("\n6. Disclosure (§7)")
    opened = demo.step(
        "Taro asks to see all of his information",
        lambda: ledger.open_disclosure(taro, requested_format="json", cause=demo.cause(OFFICER)),
    )
    assert opened is not None and opened.id is not None
    request_id = opened.id
    demo.step(
        "fulfilling before identity is verified",
        lambda: ledger.fulfil_disclosure(request_id, cause=demo.cause(OFFICER))[0],
    )
    demo.step(
        "identity documents requested",
        lambda: ledger.request_identity_verification(
            request_id, method="copy of driving licence", cause=demo.cause(OFFICER)
        ),
    )
    demo.step(
        "identity verified",
        lambda: ledger.record_identity_verified(
            request_id, evidence_ref=f"case-{tag}", cause=demo.cause(OFFICER)
        ),
    )
    result, package = ledger.fulfil_disclosure(request_id, cause=demo.cause(OFFICER))
    item_count = sum(len(r["items"]) for r in package["records"])
    say(
        f"  ✓ fulfilled at position {result.position}: {len(package['records'])} record(s), "
        f"{item_count} current item(s), {len(package['provisions'])} provision record(s)"
    )

    say("\n7. Erasure (crypto-shredding)")
    demo.step("Alice asks for erasure", lambda: ledger.request_erasure(alice, cause=demo.cause(OFFICER)))
    demo.step("carry it out", lambda: ledger.carry_out_erasure(alice, cause=demo.cause(OFFICER)))
    for hold in ledger.legal_holds(ledger.subject_id(alice)):
        say(f"    hold: {hold.reason} until {hold.until.date().isoformat()}")
    demo.step("Bob asks for erasure", lambda: ledger.request_erasure(bob, cause=demo.cause(OFFICER)))
    demo.step(
        "carry it out (his certificate expired five years ago)",
        lambda: ledger.carry_out_erasure(bob, cause=demo.cause(OFFICER)),
    )
    values = ledger.cipher.open_many(ledger.certificate_record(old_id).items.values())
    say(f"    Bob's record still loads; his items now read: {', '.join(str(v) for v in values)}")
    taro_items = ledger.disclosure_package(ledger.subject_id(taro))["records"][-1]["items"]
    say(f"    Taro is untouched: {len(taro_items)} readable item(s)")

    say("\n8. Idempotency")
    demo.step("the operator's application message delivered again", taro_application)
    say(f"\n{ledger.recorder.max_notification_id()} events in the store.")


def utc_now() -> datetime:
    return datetime.now(UTC)
