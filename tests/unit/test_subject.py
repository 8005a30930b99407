"""§11 stop of provision, and erasure with legal holds, on the data subject."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from domain.codes import ProvisionCategory
from domain.errors import InvalidCommand, InvalidTransition, LegalHoldActive, PolicyViolation
from domain.subject import CT_IRREVOCABLE, DataSubject, LegalHold
from tests.helpers import T0, cause


def subject() -> DataSubject:
    return DataSubject.register(subject_id=uuid4(), key_kind="email", cause=cause())


def stopped(data_subject: DataSubject) -> DataSubject:
    data_subject.request_stop(request_id="s1", cause=cause())
    data_subject.decide_stop(request_id="s1", accepted=True, reason="subject's request", cause=cause())
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
    assert data_subject.provisions[-1][1] == "4.3"


def test_a_refused_stop_changes_nothing_for_provision() -> None:
    data_subject = subject()
    data_subject.request_stop(request_id="s1", cause=cause())
    data_subject.decide_stop(request_id="s1", accepted=False, reason="not the data subject", cause=cause())
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
        data_subject.decide_stop(request_id="s1", accepted=True, reason=" ", cause=cause())
    with pytest.raises(InvalidTransition, match="no stop request"):
        data_subject.decide_stop(request_id="s2", accepted=True, reason="r", cause=cause())
    data_subject.decide_stop(request_id="s1", accepted=True, reason="r", cause=cause())
    with pytest.raises(InvalidTransition, match="already decided"):
        data_subject.decide_stop(request_id="s1", accepted=False, reason="r", cause=cause())
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
    assert len(data_subject.provision_holds(T0)) == 1
    assert data_subject.provision_holds(T0 + timedelta(days=1)) == []


def test_a_subject_appears_once_on_each_record_also_when_rebuilt_from_its_events() -> None:
    data_subject = subject()
    records = [uuid4() for _ in range(3)]
    for record_id in [*records, records[0], records[2]]:
        data_subject.appear_on(record_id, cause())
    events = data_subject.collect_events()
    assert [type(e).__name__ for e in events] == ["Registered", "AppearedOn", "AppearedOn", "AppearedOn"]
    assert data_subject.record_ids == records

    rebuilt = None
    for event in events:
        rebuilt = event.mutate(rebuilt)
    assert isinstance(rebuilt, DataSubject)
    assert rebuilt.record_ids == records
    rebuilt.appear_on(records[1], cause())
    assert rebuilt.collect_events() == []
    rebuilt.appear_on(uuid4(), cause())
    assert [type(e).__name__ for e in rebuilt.collect_events()] == ["AppearedOn"]
