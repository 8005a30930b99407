"""The API while PostgreSQL is unreachable: a 503 that says so, then served again."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.auth import TokenRegistry
from domain.application import Ledger
from kiroku.bootstrap import build_ledger
from kiroku.settings import Settings
from projections.service import Projections
from tests.conftest import postgres_environ
from tests.helpers import FakeClock, publish_policy
from tests.integration.proxy import Proxy


@pytest.fixture
def proxied(postgres_url: str, postgres_schema: str, clock: FakeClock) -> Iterator[tuple[Ledger, Proxy]]:
    parts = urlsplit(postgres_url)
    proxy = Proxy(parts.hostname or "127.0.0.1", parts.port or 5432)
    environ = postgres_environ(postgres_url, postgres_schema)
    user = parts.username or "postgres"
    url = f"{parts.scheme}://{user}@127.0.0.1:{proxy.port}{parts.path}?schema={postgres_schema}"
    ledger = build_ledger(Settings.from_env({**environ, "DATABASE_URL": url}), clock=clock)
    publish_policy(ledger)
    yield ledger, proxy
    ledger.close()
    proxy.close()


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
    # The pool finds its cut connections broken as it uses them: a 503 each, until it makes new ones.
    answers = []
    for _ in range(20):
        answers.append(client.get("/audit", params={"limit": "10"}, headers=headers).status_code)
        if answers[-1] == 200:
            break
        time.sleep(0.1)
    assert answers[-1] == 200, answers
    assert set(answers[:-1]) <= {503}, answers
