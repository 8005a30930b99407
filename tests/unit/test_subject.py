"""§11 stop of provision, and erasure with legal holds, on the data subject."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from domain.codes import ProvisionCategory
from domain.errors import InvalidCommand, InvalidTransition, LegalHoldActive, PolicyViolation
from domain.subject import CT_IRREVOCABLE, DataSubject, LegalHold, NotedProvision
from tests.helpers import T0, cause


def subject() -> DataSubject:
    return DataSubject.register(subject_id=uuid4(), key_kind="email", cause=cause())


def noted(data_subject: DataSubject) -> list[NotedProvision]:
    """The subject's provisions, from its events as the ledger reads them (none saved here)."""
    return [
        NotedProvision(e.provision_id, e.category, e.retention_until)
        for e in data_subject.pending_events
        if isinstance(e, DataSubject.ProvisionNoted)
    ]


def decide(data_subject: DataSubject, request_id: str, *, accepted: bool, reason: str) -> None:
    data_subject.decide_stop(
        request_id=request_id, accepted=accepted, reason=reason, provisions=noted(data_subject), cause=cause()
    )


def stopped(data_subject: DataSubject) -> DataSubject:
    data_subject.request_stop(request_id="s1", cause=cause())
    decide(data_subject, "s1", accepted=True, reason="subject's request")
    return data_subject


def test_after_an_accepted_stop_4_1_is_refused() -> None:
    data_subject = stopped(subject())
    with pytest.raises(PolicyViolation) as refused:
        data_subject.note_provision(
            provision_id=uuid4(),
            category=ProvisionCategory.MANAGING_OPERATOR,
            retention_until=None,
            cause=cause(),
        )
    assert refused.value.clause == "§11"


def test_after_an_accepted_stop_4_3_remains_possible() -> None:
    data_subject = stopped(subject())
    data_subject.note_provision(
        provision_id=uuid4(), category=ProvisionCategory.LEGAL, retention_until=None, cause=cause()
    )
    assert data_subject.provisions == 1
    assert noted(data_subject)[-1].category == "4.3"


def test_a_refused_stop_changes_nothing_for_provision() -> None:
    data_subject = subject()
    data_subject.request_stop(request_id="s1", cause=cause())
    decide(data_subject, "s1", accepted=False, reason="not the data subject")
    assert not data_subject.provision_stopped
    data_subject.note_provision(
        provision_id=uuid4(),
        category=ProvisionCategory.MANAGING_OPERATOR,
        retention_until=None,
        cause=cause(),
    )


def test_a_pending_stop_does_not_yet_stop_provision() -> None:
    data_subject = subject()
    data_subject.request_stop(request_id="s1", cause=cause())
    data_subject.note_provision(
        provision_id=uuid4(),
        category=ProvisionCategory.MANAGING_OPERATOR,
        retention_until=None,
        cause=cause(),
    )
    assert not data_subject.provision_stopped


def test_an_accepted_stop_says_ct_submissions_cannot_be_recalled() -> None:
    data_subject = subject()
    ct = uuid4()
    data_subject.note_provision(
        provision_id=ct, category=ProvisionCategory.CT_LOG, retention_until=None, cause=cause()
    )
    stopped(data_subject)
    event = data_subject.pending_events[-1]
    assert isinstance(event, DataSubject.StopDecided)
    assert event.irrevocable_provisions == [ct] and event.statement == CT_IRREVOCABLE


def test_a_stop_is_decided_once_with_a_reason() -> None:
    data_subject = subject()
    data_subject.request_stop(request_id="s1", cause=cause())
    with pytest.raises(InvalidCommand, match="needs a reason"):
        decide(data_subject, "s1", accepted=True, reason=" ")
    with pytest.raises(InvalidTransition, match="no stop request"):
        decide(data_subject, "s2", accepted=True, reason="r")
    decide(data_subject, "s1", accepted=True, reason="r")
    with pytest.raises(InvalidTransition, match="already decided"):
        decide(data_subject, "s1", accepted=False, reason="r")
    with pytest.raises(InvalidTransition, match="already exists"):
        data_subject.request_stop(request_id="s1", cause=cause())


def test_erasure_needs_an_open_request() -> None:
    with pytest.raises(InvalidTransition, match="open erasure request"):
        subject().erase(holds=[], cause=cause())


def test_erasure_is_refused_while_a_hold_applies() -> None:
    data_subject = subject()
    data_subject.request_erasure(cause())
    hold = LegalHold("APPI Art. 29 provision record retention", T0 + timedelta(days=10), "provision:x")
    with pytest.raises(LegalHoldActive) as refused:
        data_subject.erase(holds=[hold], cause=cause())
    assert refused.value.holds == [("provision:x", hold.until.isoformat())]
    assert data_subject.erasure_state == "requested" and data_subject.key_generation == 1


def test_erasure_destroys_the_current_key_generation() -> None:
    data_subject = subject()
    data_subject.request_erasure(cause())
    assert data_subject.erase(holds=[], cause=cause()) == 1
    assert data_subject.key_generation == 2 and data_subject.erased_generations == [1]


def test_provision_records_hold_until_their_retention_ends() -> None:
    data_subject = subject()
    data_subject.note_provision(
        provision_id=uuid4(),
        category=ProvisionCategory.MANAGING_OPERATOR,
        retention_until=T0 + timedelta(days=1),
        cause=cause(),
    )
    data_subject.note_provision(
        provision_id=uuid4(), category=ProvisionCategory.LEGAL, retention_until=None, cause=cause()
    )
    assert len(data_subject.provision_holds(T0, noted(data_subject))) == 1
    assert data_subject.provision_holds(T0 + timedelta(days=1), noted(data_subject)) == []


def test_the_provisions_given_must_be_all_the_subject_was_in() -> None:
    """A reading of the events out of step with the state is a bug: refused, not decided on half the list."""
    data_subject = subject()
    for category in (ProvisionCategory.CT_LOG, ProvisionCategory.LEGAL):
        data_subject.note_provision(
            provision_id=uuid4(), category=category, retention_until=T0, cause=cause()
        )
    data_subject.request_stop(request_id="s1", cause=cause())
    short = noted(data_subject)[1:]
    with pytest.raises(ValueError, match="1 provisions given, but the subject was in 2"):
        data_subject.decide_stop(request_id="s1", accepted=True, reason="r", provisions=short, cause=cause())
    with pytest.raises(ValueError, match="1 provisions given"):
        data_subject.provision_holds(T0, short)
    assert not data_subject.provision_stopped


def test_a_subject_counts_the_records_it_appears_on_and_lists_none() -> None:
    """Which records, the ledger reads from the events; the state stays the same size however many."""
    data_subject = subject()
    records = [uuid4() for _ in range(3)]
    for record_id in records:
        data_subject.appear_on(record_id, cause())
    events = data_subject.collect_events()
    assert [e.record_id for e in events if isinstance(e, DataSubject.AppearedOn)] == records
    rebuilt = None
    for event in events:
        rebuilt = event.mutate(rebuilt)
    assert isinstance(rebuilt, DataSubject)
    assert rebuilt.records == data_subject.records == 3
    assert not any(isinstance(v, list | set | dict) and len(v) >= 3 for v in vars(rebuilt).values())
