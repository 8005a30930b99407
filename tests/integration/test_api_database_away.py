"""The API while PostgreSQL is unreachable: a 503 that says so, then served again."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenRegistry
from domain.application import Ledger
from projections.service import Projections
from tests.helpers import FakeClock
from tests.integration.proxy import Proxy


def test_a_read_while_the_database_is_away_is_a_503_that_says_so(
    proxied: tuple[Ledger, Proxy], clock: FakeClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ledger, proxy = proxied
    projections = Projections(ledger)
    projections.catch_up()
    path = tmp_path / "tokens.json"
    token = TokenRegistry.add(path, "auditor-1", "auditor")
    client = TestClient(
        create_app(ledger, projections, TokenRegistry.load(path), clock), raise_server_exceptions=False
    )
    headers = {"Authorization": f"Bearer {token}"}
    assert client.get("/audit", params={"limit": "10"}, headers=headers).status_code == 200

    proxy.cut()
    with caplog.at_level(logging.WARNING):
        away = client.get("/audit", params={"limit": "10"}, headers=headers)
    assert away.status_code == 503
    assert away.headers["content-type"] == "application/problem+json"
    assert away.headers["retry-after"] == "1"
    body = away.json()
    assert body["title"] == "Unavailable"
    assert "the database is unreachable" in body["detail"]
    said = [r.getMessage() for r in caplog.records if "the database is unreachable" in r.getMessage()]
    assert said and all("GET /audit" in s for s in said)

    proxy.restore()
    # The pool's connections were cut while away: none fails a request now the database is back.
    answers = [client.get("/audit", params={"limit": "10"}, headers=headers).status_code for _ in range(5)]
    assert answers == [200] * 5
