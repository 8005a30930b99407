"""Write endpoints and the provision ledger, against PostgreSQL."""

from __future__ import annotations

import csv
import io
import zipfile
from typing import Any

import httpx

from domain.commands import ProvidedItemInput
from domain.provision import Recipient
from tests.helpers import cause
from tests.integration.api_support import TARO, Api


def post(
    api: Api, path: str, body: dict[str, Any] | None = None, role: str = "officer", **headers: str
) -> httpx.Response:
    response: httpx.Response = api.client.post(
        path, json=body or {}, headers={"Authorization": f"Bearer {api.tokens[role]}", **headers}
    )
    return response


def test_a_disclosure_from_request_to_package(api: Api) -> None:
    opened = post(api, "/disclosures", {"email": "taro@example.jp", "requested_format": "json"})
    assert opened.status_code == 201
    request_id = opened.json()["id"]
    early = post(api, f"/disclosures/{request_id}/fulfilment")
    assert early.status_code == 409 and early.json()["clause"] == "§7"
    assert (
        post(api, f"/disclosures/{request_id}/verification-request", {"method": "documents"}).status_code
        == 200
    )
    assert post(api, f"/disclosures/{request_id}/verified", {"evidence_ref": "case-1"}).status_code == 200
    done = post(api, f"/disclosures/{request_id}/fulfilment")
    assert done.status_code == 200
    package = done.json()["package"]
    assert package["records"][0]["items"] == {"name": "山田 太郎", "email": "taro@example.jp"}
    assert [a.endpoint for a in api.access_records()] == ["POST /disclosures/{request_id}/fulfilment"]


def test_the_package_as_json_and_csv_in_a_zip(api: Api) -> None:
    api.ledger.record_provision(
        category="4.1",
        recipient=Recipient("op-1", "Operator", "JP"),
        items=[ProvidedItemInput("name", TARO)],
        cause=cause(),
    )
    request_id = post(api, "/disclosures", {"email": "taro@example.jp", "requested_format": "csv"}).json()[
        "id"
    ]
    post(api, f"/disclosures/{request_id}/verification-request", {"method": "documents"})
    post(api, f"/disclosures/{request_id}/verified", {"evidence_ref": "case-2"})
    response = post(api, f"/disclosures/{request_id}/fulfilment", Accept="application/zip")
    assert response.status_code == 200 and response.headers["content-type"] == "application/zip"
    archive = zipfile.ZipFile(io.BytesIO(response.content))
    assert sorted(archive.namelist()) == ["items.csv", "package.json", "provisions.csv"]
    items = list(csv.DictReader(io.StringIO(archive.read("items.csv").decode())))
    assert {(r["item"], r["value"]) for r in items} == {("name", "山田 太郎"), ("email", "taro@example.jp")}
    provisions = list(csv.DictReader(io.StringIO(archive.read("provisions.csv").decode())))
    assert [(p["category"], p["recipient_id"], p["items"]) for p in provisions] == [("4.1", "op-1", "name")]


def test_a_refusal_needs_a_known_ground(api: Api) -> None:
    request_id = post(api, "/disclosures", {"email": "taro@example.jp", "requested_format": "paper"}).json()[
        "id"
    ]
    assert (
        post(api, f"/disclosures/{request_id}/refusal", {"ground": "busy", "explanation": "x"}).status_code
        == 422
    )
    refused = post(
        api,
        f"/disclosures/{request_id}/refusal",
        {"ground": "identity-not-verified", "explanation": "no documents came"},
    )
    assert refused.status_code == 200


def test_open_and_overdue_requests_are_listed(api: Api) -> None:
    post(api, "/disclosures", {"email": "taro@example.jp", "requested_format": "json"})
    api.projections.catch_up()
    listed = api.client.get(
        "/disclosures", headers={"Authorization": f"Bearer {api.tokens['viewer']}"}
    ).json()
    assert [r["kind"] for r in listed["requests"]] == ["disclosure"]


def test_a_write_with_an_idempotency_key_takes_effect_once(api: Api) -> None:
    first = post(
        api,
        "/disclosures",
        {"email": "taro@example.jp", "requested_format": "json"},
        **{"Idempotency-Key": "k-1"},
    )
    again = post(
        api,
        "/disclosures",
        {"email": "taro@example.jp", "requested_format": "json"},
        **{"Idempotency-Key": "k-1"},
    )
    assert first.json()["id"] == again.json()["id"] and again.json()["duplicate"] is True


def test_stop_requested_and_decided_then_4_1_refused(api: Api) -> None:
    taro = str(api.ledger.subject_id(TARO))
    assert post(api, f"/subjects/{taro}/stop-requests", {"request_id": "s1"}).status_code == 201
    decided = post(api, f"/subjects/{taro}/stop-requests/s1/decision", {"accepted": True, "reason": "asked"})
    assert decided.status_code == 200
    again = post(api, f"/subjects/{taro}/stop-requests/s1/decision", {"accepted": False, "reason": "x"})
    assert again.status_code == 409 and again.json()["clause"] == "§11"


def test_erasure_refused_while_held_says_which_hold(api: Api) -> None:
    api.ledger.record_provision(
        category="4.1",
        recipient=Recipient("op-1", "Operator", "JP"),
        items=[ProvidedItemInput("name", TARO)],
        cause=cause(),
    )
    taro = str(api.ledger.subject_id(TARO))
    assert post(api, f"/subjects/{taro}/erasure-request").status_code == 201
    refused = post(api, f"/subjects/{taro}/erasure")
    assert refused.status_code == 409
    assert refused.json()["holds"][0]["reference"].startswith("provision:")


def test_a_provision_under_a_legal_ground(api: Api) -> None:
    body = {
        "legal_ground": "4.3.1",
        "recipient": {"recipient_id": "gov-1", "name": "Police", "country": "JP"},
        "subjects": [{"email": "taro@example.jp"}],
        "items": ["name"],
    }
    assert post(api, "/provisions", body).status_code == 201
    assert post(api, "/provisions", {**body, "legal_ground": None}).status_code == 422
    assert post(api, "/provisions", body, role="auditor").status_code == 403
    api.projections.catch_up()
    viewer = {"Authorization": f"Bearer {api.tokens['viewer']}"}
    rows = api.client.get("/provisions", params={"category": "4.3"}, headers=viewer).json()["provisions"]
    assert [(r["legal_ground"], r["recipient_id"], r["record_required"]) for r in rows] == [
        ("4.3.1", "gov-1", False)
    ]
    exported = api.client.get("/provisions.csv", params={"category": "4.3"}, headers=viewer)
    assert exported.headers["content-type"].startswith("text/csv")
    assert [r["recipient_id"] for r in csv.DictReader(io.StringIO(exported.text))] == ["gov-1"]
    assert (
        api.client.get("/provisions", params={"foreign_only": "true"}, headers=viewer).json()["provisions"]
        == []
    )


def test_only_an_admin_revises_the_policy_and_a_purpose_change_needs_a_justification(api: Api) -> None:
    revision = {
        "version": "v2",
        "effective_from": "2025-01-01T00:00:00Z",
        "announced_at": "2024-12-01T00:00:00Z",
        "purposes": {"P1": "the service"},
        "channels": ["C1"],
    }
    assert post(api, "/policy/revisions", revision, role="officer").status_code == 403
    refused = post(api, "/policy/revisions", revision, role="admin")
    assert refused.status_code == 409 and refused.json()["clause"] == "§3"
    accepted = post(api, "/policy/revisions", {**revision, "justification": "narrowed to P1"}, role="admin")
    assert accepted.status_code == 201
