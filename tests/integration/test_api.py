"""The HTTP API against PostgreSQL: answers, refusals (401, 403, 404, 422) and access records."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.persistence import Tracking

from consumers.ingest import DeadLetter
from consumers.lag import PartitionLag, accept_loss
from domain.codes import Clause
from domain.errors import PolicyViolation
from tests.helpers import cause
from tests.integration.api_support import PROBLEM, TARO, Api


def test_health_needs_no_token(api: Api) -> None:
    response = api.client.get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_ready_once_the_views_are_built(api: Api) -> None:
    assert api.client.get("/ready").status_code == 200


def test_a_subject_is_found_by_email_and_the_read_is_recorded(api: Api) -> None:
    response = api.get("/subjects", email="Taro@Example.jp")
    assert response.status_code == 200
    taro_id = str(api.ledger.subject_id(TARO))
    assert response.json() == {"subjects": [taro_id]}
    [access] = api.access_records()
    assert access.subject_ids == [UUID(taro_id)]
    assert access.endpoint == "GET /subjects?email" and access.cause.actor == "api:officer-1"


def test_a_subject_is_found_by_name_and_common_name(api: Api) -> None:
    taro_id = str(api.ledger.subject_id(TARO))
    assert api.get("/subjects", name="山田 太郎").json() == {"subjects": [taro_id]}
    assert api.get("/subjects", common_name="WWW.example.jp").json() == {"subjects": [taro_id]}


def test_a_subjects_state_shows_their_items_and_is_recorded(api: Api) -> None:
    taro_id = api.ledger.subject_id(TARO)
    response = api.get(f"/subjects/{taro_id}", role="auditor")
    assert response.status_code == 200
    body = response.json()
    assert {i["item"]: i["value"] for i in body["items"]} == {"name": "山田 太郎", "email": "taro@example.jp"}
    assert [a.endpoint for a in api.access_records()] == ["GET /subjects/{subject_id}"]


def test_no_token_or_a_bad_token_is_401_as_problem_json(api: Api) -> None:
    for response in (
        api.get("/subjects", role=None, email="x@example.jp"),
        api.client.get("/subjects", headers={"Authorization": "Bearer nope"}),
    ):
        assert response.status_code == 401
        assert response.headers["content-type"] == PROBLEM
        assert response.headers["www-authenticate"] == "Bearer"
    assert api.access_records() == []


def test_a_viewer_may_not_read_personal_data(api: Api) -> None:
    response = api.get(f"/subjects/{api.ledger.subject_id(TARO)}", role="viewer")
    assert response.status_code == 403
    assert "read:personal" in response.json()["detail"]
    assert api.access_records() == []


def test_an_unknown_subject_or_certificate_is_404(api: Api) -> None:
    assert api.get(f"/subjects/{uuid4()}").status_code == 404
    assert api.get(f"/certificates/{uuid4()}", role="viewer").status_code == 404


def test_bad_input_is_422_without_echoing_it(api: Api) -> None:
    for response in (
        api.get("/subjects/not-a-uuid"),
        api.get("/subjects", email="a@example.jp", name="x"),
        api.get("/audit", role="viewer", limit="0"),
        api.get("/audit", role="viewer", cursor="garbage!"),
    ):
        assert response.status_code == 422
        assert response.headers["content-type"] == PROBLEM
        assert "a@example.jp" not in response.text


def test_a_nul_character_in_a_text_filter_is_422_not_a_server_error(api: Api) -> None:
    # PostgreSQL's text cannot hold NUL: a filter that reaches a query with one failed with a 500.
    for path, role, name in (
        ("/provisions", "admin", "recipient"),
        ("/provisions.csv", "admin", "recipient"),
        ("/audit", "viewer", "event_type"),
        ("/audit", "viewer", "actor"),
        ("/subjects", "admin", "email"),
        ("/subjects", "admin", "name"),
        ("/subjects", "admin", "common_name"),
    ):
        response = api.get(path, role=role, **{name: "op\x00-1"})
        assert response.status_code == 422, (path, name, response.status_code)
        assert response.headers["content-type"] == PROBLEM
        assert "op" not in response.json()["detail"]


def test_a_certificate_reads_without_personal_data(api: Api) -> None:
    record_id = api.ledger.certificate_record_id("registrar", "app-1")
    response = api.get(f"/certificates/{record_id}", role="viewer")
    assert response.status_code == 200
    assert response.json()["common_name"] == "www.example.jp"
    assert "山田" not in response.text


def test_the_audit_trail_pages_with_a_cursor_and_filters(api: Api) -> None:
    first = api.get("/audit", role="viewer", limit="2").json()
    assert [r["notification_id"] for r in first["items"]] == [1, 2]
    second = api.get("/audit", role="viewer", limit="2", cursor=first["next_cursor"]).json()
    assert [r["notification_id"] for r in second["items"]] == [3, 4]
    taro = str(api.ledger.subject_id(TARO))
    concerning = api.get("/audit", role="viewer", subject=taro).json()["items"]
    assert {r["event_type"] for r in concerning} >= {"CertificateRecord.Collected", "DataSubject.Registered"}
    collected = api.get("/audit", role="viewer", event_type="CertificateRecord.Collected").json()["items"]
    assert [r["clause"] for r in collected] == ["§5"]
    assert api.get("/audit", role="viewer", since="2024-06-01T09:00:00").status_code == 422


def pages_of(api: Api, path: str, *, limit: int, most: int = 10) -> list[dict[str, Any]]:
    """The items of a paged listing, following ``next_cursor`` (at most ``most`` pages: a cursor
    that went nowhere would repeat pages for ever)."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(most):
        page = api.get(path, role="viewer", limit=str(limit), **({"cursor": cursor} if cursor else {})).json()
        items += page["items"]
        cursor = page["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError(f"{path}: more than {most} pages")


def test_the_upstream_gaps_accepted_are_listed_for_any_reader(api: Api) -> None:
    assert api.get("/upstream-gaps", role="viewer").json() == {"items": [], "next_cursor": None}
    api.ledger.recorder.insert_events([], tracking=Tracking("acme.events:1", 4))
    reason = "retention removed them during the outage; acme cannot publish them again"
    gap = accept_loss(
        api.ledger, PartitionLag("acme.events", 1, 4, 12, 30), reason=reason, cause=cause(actor="cli:ana")
    )

    response = api.get("/upstream-gaps", role="viewer")
    assert response.status_code == 200
    [item] = response.json()["items"]
    assert item["gap_id"] == str(gap.id) and item["notification_id"] == gap.position
    assert (item["stream"], item["first_missing"], item["last_missing"], item["missing"]) == (
        "acme.events:1",
        5,
        11,
        7,
    )
    assert (item["reason"], item["actor"]) == (reason, "cli:ana")
    assert response.json()["next_cursor"] is None

    # A page at a time: four more gaps, on other partitions, in pages of two.
    for partition in (0, 2, 3, 4):
        api.ledger.recorder.insert_events([], tracking=Tracking(f"registrar.events:{partition}", 1))
        accept_loss(
            api.ledger,
            PartitionLag("registrar.events", partition, 1, 3 + partition, 9),
            reason=reason,
            cause=cause(actor="cli:ben"),
        )
    streams = [item["stream"] for item in pages_of(api, "/upstream-gaps", limit=2)]
    expected = ["acme.events:1", *(f"registrar.events:{p}" for p in (0, 2, 3, 4))]
    assert streams == expected
    assert [i["stream"] for i in api.get("/upstream-gaps", role="viewer").json()["items"]] == expected
    assert api.get("/upstream-gaps", role="viewer", limit="501").status_code == 422
    assert api.get("/upstream-gaps", role="viewer", cursor="nonsense").status_code == 422
    assert api.get("/upstream-gaps", role=None).status_code == 401
    assert api.access_records() == []  # no personal data: no access record


def test_the_dead_letters_are_listed_a_page_at_a_time_for_any_reader(api: Api) -> None:
    assert api.get("/dead-letters", role="viewer").json() == {"items": [], "next_cursor": None}
    refused = PolicyViolation("no such purpose", Clause.PURPOSES)
    sent = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
    milliseconds = int(sent.timestamp() * 1000)
    with api.ledger.batch() as batch:
        records = [
            SimpleNamespace(topic="acme.events", partition=2, offset=offset, timestamp=milliseconds)
            for offset in range(17, 22)
        ]
        batch.add([DeadLetter(record, refused).noted("acme.events:2", "acme") for record in records], {})
        position = batch.commit()
    assert position is not None

    response = api.get("/dead-letters", role="viewer", limit="2")
    assert response.status_code == 200
    first = response.json()
    assert first["items"][0] == {
        "stream": "acme.events:2",
        "topic": "acme.events",
        "partition": 2,
        "offset": 17,
        "error_class": "PolicyViolation",
        "clause": "§2",
        "occurred_at": sent.isoformat(),
        "recorded_at": first["items"][0]["recorded_at"],
        "notification_id": position - 4,
    }
    offsets = [item["offset"] for item in pages_of(api, "/dead-letters", limit=2)]
    assert offsets == [17, 18, 19, 20, 21]
    assert [i["offset"] for i in api.get("/dead-letters", role="viewer").json()["items"]] == offsets
    assert api.get("/dead-letters", role="viewer", limit="0").status_code == 422
    assert api.get("/dead-letters", role="viewer", cursor="nonsense").status_code == 422
    assert api.get("/dead-letters", role=None).status_code == 401
    assert api.access_records() == []  # no personal data: no access record


def test_the_openapi_document_lists_the_endpoints(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert {
        "/health",
        "/ready",
        "/subjects",
        "/subjects/{subject_id}",
        "/certificates/{record_id}",
        "/audit",
        "/upstream-gaps",
        "/dead-letters",
    } <= set(document["paths"])
