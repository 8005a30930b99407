"""As-of reads, and erasure as every endpoint shows it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx

from domain.commands import PersonalItemInput
from tests.helpers import cause
from tests.integration.api_support import TARO, Api


def get(api: Api, path: str, **params: str) -> httpx.Response:
    response: httpx.Response = api.client.get(
        path, params=params, headers={"Authorization": f"Bearer {api.tokens['officer']}"}
    )
    return response


def test_as_of_a_moment_before_a_correction_shows_the_old_value(api: Api) -> None:
    record_id = api.ledger.certificate_record_id("registrar", "app-1")
    time.sleep(0.01)
    before = datetime.now(UTC)
    time.sleep(0.01)
    api.ledger.correct(
        record_id,
        channel="C1",
        certificate_changes={"common_name": "new.example.jp"},
        personal_changes=[PersonalItemInput(TARO, "name", "山田 次郎")],
        cause=cause(),
    )
    taro = str(api.ledger.subject_id(TARO))
    then = get(api, f"/subjects/{taro}", as_of=before.isoformat()).json()
    assert then["records"][0]["items"]["name"] == "山田 太郎"
    assert then["records"][0]["superseded_items"] == []
    now = get(api, f"/subjects/{taro}", as_of=datetime.now(UTC).isoformat()).json()
    assert now["records"][0]["items"]["name"] == "山田 次郎"
    assert (
        get(api, f"/certificates/{record_id}", as_of=before.isoformat()).json()["common_name"]
        == "www.example.jp"
    )
    assert get(api, f"/certificates/{record_id}", as_of=datetime.now(UTC).isoformat()).json()[
        "common_name"
    ] == ("new.example.jp")
    assert get(api, f"/subjects/{taro}", as_of="2000-01-01T00:00:00+00:00").status_code == 404
    assert get(api, f"/subjects/{taro}", as_of="2030-01-01T00:00:00").status_code == 422
    assert [a.endpoint for a in api.access_records()].count("GET /subjects/{subject_id}?as_of") == 2


def test_after_erasure_every_endpoint_shows_the_erased_marker(api: Api) -> None:
    taro = str(api.ledger.subject_id(TARO))
    before = datetime.now(UTC)
    time.sleep(0.01)
    api.ledger.request_erasure(TARO, cause=cause())
    api.ledger.carry_out_erasure(TARO, cause=cause())
    api.projections.catch_up()
    state = get(api, f"/subjects/{taro}").json()
    assert (
        state["personal_data"] == "[erased]" and state["items"] == [] and state["erasure_state"] == "erased"
    )
    then = get(api, f"/subjects/{taro}", as_of=before.isoformat()).json()
    assert set(then["records"][0]["items"].values()) == {"[erased]"}
    assert get(api, "/subjects", email="taro@example.jp").json() == {"subjects": []}
    assert get(api, "/subjects", name="山田 太郎").json() == {"subjects": []}
    request_id = api.client.post(
        "/disclosures",
        json={"subject_id": taro, "requested_format": "json"},
        headers={"Authorization": f"Bearer {api.tokens['officer']}"},
    ).json()["id"]
    for step, body in (
        ("verification-request", {"method": "documents"}),
        ("verified", {"evidence_ref": "c"}),
    ):
        api.client.post(
            f"/disclosures/{request_id}/{step}",
            json=body,
            headers={"Authorization": f"Bearer {api.tokens['officer']}"},
        )
    package = api.client.post(
        f"/disclosures/{request_id}/fulfilment", headers={"Authorization": f"Bearer {api.tokens['officer']}"}
    ).json()["package"]
    assert set(package["records"][0]["items"].values()) == {"[erased]"}
    assert "山田" not in repr(package)
