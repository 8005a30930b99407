"""The API under test: a client with one token per role, over PostgreSQL and caught-up views."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient

from domain.access import AccessRecord
from domain.application import Ledger
from domain.identity import SubjectKey
from projections.service import Projections

TARO = SubjectKey.email("taro@example.jp")
PROBLEM = "application/problem+json"


class Api:
    def __init__(
        self, client: TestClient, tokens: dict[str, str], ledger: Ledger, projections: Projections
    ) -> None:
        self.client, self.tokens, self.ledger, self.projections = client, tokens, ledger, projections

    def get(self, path: str, role: str | None = "officer", **params: str) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.tokens[role]}"} if role else {}
        response: httpx.Response = self.client.get(path, headers=headers, params=params)
        return response

    def access_records(self) -> list[AccessRecord.Recorded]:
        found = []
        for n in self.ledger.recorder.select_notifications(
            start=1, limit=10_000, topics=["domain.access:AccessRecord.Recorded"]
        ):
            event = self.ledger.mapper.to_domain_event(n)
            assert isinstance(event, AccessRecord.Recorded)
            found.append(event)
        return found
