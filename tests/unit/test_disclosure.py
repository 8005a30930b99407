"""§7: the disclosure request's states."""

from __future__ import annotations

from datetime import timedelta
from uuid import uuid4

import pytest

from domain.disclosure import DisclosureRequest
from domain.errors import InvalidCommand, InvalidTransition
from tests.helpers import T0, cause


def received() -> DisclosureRequest:
    return DisclosureRequest.receive(
        request_id=uuid4(),
        subject_id=uuid4(),
        due_at=T0 + timedelta(days=14),
        requested_format="csv",
        cause=cause(),
    )


def test_fulfilled_only_after_identity_is_verified() -> None:
    request = received()
    with pytest.raises(InvalidTransition) as refused:
        request.fulfil(package_digest="d", item_count=1, provision_count=0, cause=cause())
    assert refused.value.clause == "§7"
    request.request_verification(method="documents", cause=cause())
    with pytest.raises(InvalidTransition):
        request.fulfil(package_digest="d", item_count=1, provision_count=0, cause=cause())
    request.record_verified(evidence_ref="case-1", cause=cause())
    request.fulfil(package_digest="d", item_count=1, provision_count=0, cause=cause())
    assert request.state == "fulfilled" and not request.is_open


def test_a_failed_verification_may_be_retried_or_refused() -> None:
    request = received()
    request.request_verification(method="documents", cause=cause())
    request.record_verification_failed(reason="documents illegible", cause=cause())
    request.request_verification(method="in person", cause=cause())
    request.record_verification_failed(reason="did not attend", cause=cause())
    request.refuse(
        ground="identity-not-verified", explanation="identity could not be confirmed", cause=cause()
    )
    assert request.state == "refused"
    with pytest.raises(InvalidTransition):
        request.request_verification(method="again", cause=cause())


def test_identity_not_verified_is_no_ground_once_verified() -> None:
    request = received()
    request.request_verification(method="documents", cause=cause())
    request.record_verified(evidence_ref="case-1", cause=cause())
    with pytest.raises(InvalidTransition, match="was verified"):
        request.refuse(ground="identity-not-verified", explanation="x", cause=cause())
    request.refuse(ground="significant-business-hindrance", explanation="x", cause=cause())


def test_verification_results_need_a_pending_verification() -> None:
    request = received()
    with pytest.raises(InvalidTransition):
        request.record_verified(evidence_ref="case-1", cause=cause())


def test_overdue_only_while_open() -> None:
    request = received()
    assert not request.is_overdue(T0 + timedelta(days=13))
    assert request.is_overdue(T0 + timedelta(days=15))
    request.refuse(ground="harm-to-person-or-third-party", explanation="x", cause=cause())
    assert not request.is_overdue(T0 + timedelta(days=15))


@pytest.mark.parametrize(
    ("fmt", "due_days", "message"),
    [("fax", 14, "unknown disclosure format"), ("json", 0, "after the request was received")],
)
def test_a_malformed_request_is_refused(fmt: str, due_days: int, message: str) -> None:
    with pytest.raises(InvalidCommand, match=message):
        DisclosureRequest.receive(
            request_id=uuid4(),
            subject_id=uuid4(),
            due_at=T0 + timedelta(days=due_days),
            requested_format=fmt,
            cause=cause(),
        )


def test_a_refusal_needs_a_known_ground_and_an_explanation() -> None:
    request = received()
    with pytest.raises(InvalidCommand, match="unknown refusal ground"):
        request.refuse(ground="busy", explanation="x", cause=cause())
    with pytest.raises(InvalidCommand, match="explanation"):
        request.refuse(ground="violates-other-law", explanation="", cause=cause())
