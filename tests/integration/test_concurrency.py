"""Nothing counted twice, no rule dodged, when writers race (both backends)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from domain.application import Ledger
from domain.certificate import CertificateIdentity
from domain.commands import CommandResult, PersonalItemInput, ProvidedItemInput
from domain.errors import PolicyViolation
from domain.identity import SubjectKey
from domain.provision import Recipient
from domain.subject import DataSubject
from tests.helpers import cause, fresh_upstream_id, publish_policy

TARO = SubjectKey.email("taro@example.jp")
OPERATOR = Recipient("op-7", "Reseller Seven", "JP")


def _setup(ledger: Ledger) -> None:
    publish_policy(ledger)


def _collect(ledger: Ledger, ref: str, upstream: str | None) -> CommandResult:
    return ledger.collect(
        record_ref=ref,
        channel="C1",
        purposes=["P1"],
        certificate=CertificateIdentity(f"{ref}.example", [], "DV"),
        personal_items=[PersonalItemInput(TARO, "name", "山田 太郎")],
        cause=cause(upstream=upstream),
    )


def test_one_upstream_event_delivered_concurrently_has_one_effect(ledger: Ledger) -> None:
    _setup(ledger)
    upstream = fresh_upstream_id()
    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(lambda _: _collect(ledger, "race", upstream), range(6)))
    assert len({r.id for r in results}) == 1
    assert sum(not r.duplicate for r in results) == 1
    assert ledger.subject_records(ledger.subject_id(TARO)) == [results[0].id]


def test_concurrent_writers_on_one_subject_all_land(ledger: Ledger) -> None:
    _setup(ledger)
    record_id = _collect(ledger, "shared", None).id
    assert record_id is not None

    def provide(i: int) -> CommandResult:
        return ledger.record_provision(
            category="4.1",
            recipient=OPERATOR,
            certificate_record_id=record_id,
            items=[ProvidedItemInput("name", TARO)],
            cause=cause(upstream=f"prov-{record_id}-{i}"),
        )

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(provide, range(6)))
    assert len({r.id for r in results}) == 6
    assert len(ledger.subject_provisions(ledger.subject_id(TARO))) == 6
    assert ledger.data_subject(TARO).provisions == 6
    assert len(ledger.certificate_record(record_id).provisions) == 6


def test_a_stop_and_a_4_1_provision_racing_never_break_the_stop_rule(ledger: Ledger) -> None:
    _setup(ledger)
    record_id = _collect(ledger, "stop-race", None).id
    assert record_id is not None
    for round_no in range(5):
        ledger.request_stop(TARO, request_id=f"s{round_no}", cause=cause())

        def decide(n: int = round_no) -> object:
            return ledger.decide_stop(TARO, request_id=f"s{n}", accepted=n == 4, reason="r", cause=cause())

        def provide() -> object:
            try:
                return ledger.record_provision(
                    category="4.1",
                    recipient=OPERATOR,
                    certificate_record_id=record_id,
                    items=[ProvidedItemInput("name", TARO)],
                    cause=cause(),
                )
            except PolicyViolation as refused:
                return refused

        with ThreadPoolExecutor(max_workers=2) as pool:
            list(pool.map(lambda f: f(), [decide, provide]))
    # Read the subject's own history: after the accepting decision, no 4.1 provision.
    subject_id = ledger.subject_id(TARO)
    stopped = False
    for event in ledger.events.get(subject_id):
        if isinstance(event, DataSubject.StopDecided) and event.accepted:
            stopped = True
        if isinstance(event, DataSubject.ProvisionNoted) and event.category == "4.1":
            assert not stopped, "a 4.1 provision was recorded after the stop was accepted"
    assert stopped
