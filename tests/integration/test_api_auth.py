"""Every endpoint refuses a missing token (401) and a role without the right (403)."""

from __future__ import annotations

from uuid import uuid4

import pytest

from tests.integration.api_support import PROBLEM, Api

SOME = str(uuid4())
# (method, path, body, the highest role that must be refused or None when every role may)
ENDPOINTS = [
    ("GET", "/subjects?email=a@example.jp", None, "viewer"),
    ("GET", f"/subjects/{SOME}", None, "viewer"),
    ("GET", f"/certificates/{SOME}", None, None),
    ("GET", "/audit", None, None),
    ("GET", "/upstream-gaps", None, None),
    ("GET", "/dead-letters", None, None),
    ("GET", "/provisions", None, None),
    ("GET", "/provisions.csv", None, None),
    ("GET", "/provisions/bulk", None, None),
    ("GET", "/policy", None, None),
    ("GET", "/disclosures", None, None),
    ("POST", "/disclosures", {"subject_id": SOME, "requested_format": "json"}, "auditor"),
    ("POST", f"/disclosures/{SOME}/verification-request", {"method": "m"}, "auditor"),
    ("POST", f"/disclosures/{SOME}/verified", {"evidence_ref": "e"}, "auditor"),
    ("POST", f"/disclosures/{SOME}/verification-failed", {"reason": "r"}, "auditor"),
    ("POST", f"/disclosures/{SOME}/refusal", {"ground": "violates-other-law", "explanation": "x"}, "auditor"),
    ("POST", f"/disclosures/{SOME}/fulfilment", None, "auditor"),
    ("POST", f"/subjects/{SOME}/stop-requests", {}, "auditor"),
    ("POST", f"/subjects/{SOME}/stop-requests/s1/decision", {"accepted": True, "reason": "r"}, "auditor"),
    ("POST", f"/subjects/{SOME}/erasure-request", None, "auditor"),
    ("POST", f"/subjects/{SOME}/erasure", None, "auditor"),
    (
        "POST",
        "/provisions",
        {
            "legal_ground": "4.3.1",
            "recipient": {"recipient_id": "g", "name": "G", "country": "JP"},
            "subjects": [{"subject_id": SOME}],
            "items": ["name"],
        },
        "auditor",
    ),
    (
        "POST",
        "/policy/revisions",
        {
            "version": "v9",
            "effective_from": "2030-01-01T00:00:00Z",
            "announced_at": "2029-01-01T00:00:00Z",
            "purposes": {"P1": "x"},
            "channels": ["C1"],
        },
        "officer",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "refused_role"), ENDPOINTS)
def test_no_token_is_401_and_a_lesser_role_403(
    api: Api, method: str, path: str, body: dict[str, object] | None, refused_role: str | None
) -> None:
    anonymous = api.client.request(method, path, json=body)
    assert anonymous.status_code == 401
    assert anonymous.headers["content-type"] == PROBLEM
    if refused_role is not None:
        lesser = api.client.request(
            method, path, json=body, headers={"Authorization": f"Bearer {api.tokens[refused_role]}"}
        )
        assert lesser.status_code == 403
        assert lesser.headers["content-type"] == PROBLEM
    allowed = api.client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {api.tokens['admin']}"}
    )
    assert allowed.status_code not in {401, 403, 500}


def test_every_route_of_the_api_is_in_the_table(api: Api) -> None:
    documented = {
        (method.upper(), path)
        for path, operations in api.client.get("/openapi.json").json()["paths"].items()
        for method in operations
    }
    open_routes = {("GET", "/health"), ("GET", "/ready"), ("GET", "/metrics")}
    tested = {(m, p.split("?")[0].replace(SOME, "{id}")) for m, p, _, _ in ENDPOINTS}
    normalised = {
        (m, p.replace("{subject_id}", "{id}").replace("{record_id}", "{id}").replace("{request_id}", "{id}"))
        for m, p in documented - open_routes
    }
    assert normalised == {(m, p.replace("s1", "{id}")) for m, p in tested}


@pytest.mark.parametrize(
    "authorization",
    ["", "Bearer", "Bearer ", "Basic dGFybzpzZWNyZXQ=", "kiroku_abc", "Bearer kiroku_not-a-token"],
)
def test_an_unusable_authorization_header_is_401(api: Api, authorization: str) -> None:
    response = api.client.get(f"/subjects/{SOME}", headers={"Authorization": authorization})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert "kiroku_" not in response.text and "dGFybz" not in response.text


def test_the_openapi_document_names_the_bearer_scheme_on_every_guarded_route(api: Api) -> None:
    document = api.client.get("/openapi.json").json()
    assert document["components"]["securitySchemes"] == {"HTTPBearer": {"type": "http", "scheme": "bearer"}}
    open_routes = {("get", "/health"), ("get", "/ready"), ("get", "/metrics")}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            expected: list[dict[str, list[str]]] | None = (
                None if (method, path) in open_routes else [{"HTTPBearer": []}]
            )
            assert operation.get("security") == expected, (method, path)


NOT_FOUND = [
    ("GET", f"/subjects/{SOME}", None),
    ("GET", f"/certificates/{SOME}", None),
    ("POST", f"/disclosures/{SOME}/verification-request", {"method": "m"}),
    ("POST", f"/disclosures/{SOME}/verified", {"evidence_ref": "e"}),
    ("POST", f"/disclosures/{SOME}/verification-failed", {"reason": "r"}),
    ("POST", f"/disclosures/{SOME}/refusal", {"ground": "violates-other-law", "explanation": "x"}),
    ("POST", f"/disclosures/{SOME}/fulfilment", None),
    ("POST", "/disclosures", {"subject_id": SOME, "requested_format": "json"}),
    ("POST", f"/subjects/{SOME}/stop-requests", {}),
    ("POST", f"/subjects/{SOME}/stop-requests/s1/decision", {"accepted": True, "reason": "r"}),
    ("POST", f"/subjects/{SOME}/erasure-request", None),
    ("POST", f"/subjects/{SOME}/erasure", None),
    (
        "POST",
        "/provisions",
        {
            "legal_ground": "4.3.1",
            "recipient": {"recipient_id": "g", "name": "G", "country": "JP"},
            "subjects": [{"subject_id": SOME}],
            "items": ["name"],
        },
    ),
]


@pytest.mark.parametrize(("method", "path", "body"), NOT_FOUND)
def test_what_does_not_exist_is_404(api: Api, method: str, path: str, body: dict[str, object] | None) -> None:
    response = api.client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {api.tokens['admin']}"}
    )
    assert response.status_code == 404
    assert response.headers["content-type"] == PROBLEM
    assert api.access_records() == []


MALFORMED = [
    ("GET", "/subjects/123", None),
    ("GET", "/certificates/abc", None),
    ("GET", "/audit?since=yesterday", None),
    ("GET", "/provisions?category=4.9", None),
    ("GET", "/provisions?country=Japan", None),
    ("GET", "/disclosures?state=closed", None),
    ("POST", "/disclosures", {"email": "taro@example.jp", "requested_format": "fax"}),
    ("POST", "/disclosures", {"requested_format": "json"}),
    ("POST", f"/disclosures/{SOME}/verification-request", {"method": ""}),
    ("POST", f"/disclosures/{SOME}/verified", {}),
    ("POST", f"/disclosures/{SOME}/verification-failed", {"reason": "x" * 501}),
    ("POST", f"/disclosures/{SOME}/refusal", {"ground": "violates-other-law"}),
    ("POST", f"/subjects/{SOME}/stop-requests", {"request_id": "x" * 101}),
    ("POST", f"/subjects/{SOME}/stop-requests/s1/decision", {"accepted": "perhaps", "reason": "r"}),
    ("POST", "/subjects/not-an-id/erasure", None),
    (
        "POST",
        "/provisions",
        {
            "legal_ground": "4.3.9",
            "recipient": {"recipient_id": "g", "name": "G", "country": "JP"},
            "subjects": [{"subject_id": SOME}],
            "items": ["name"],
        },
    ),
    ("POST", "/policy/revisions", {"version": "v9", "purposes": {"P9": "x"}}),
]


@pytest.mark.parametrize(("method", "path", "body"), MALFORMED)
def test_malformed_input_is_422(api: Api, method: str, path: str, body: dict[str, object] | None) -> None:
    response = api.client.request(
        method, path, json=body, headers={"Authorization": f"Bearer {api.tokens['admin']}"}
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == PROBLEM
