"""A property-based run of the OpenAPI document (schemathesis): no request makes the server fail."""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.core.result import Ok

from tests.integration.api_support import Api


def test_no_request_generated_from_the_openapi_document_makes_the_server_fail(api: Api) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document has an invalid operation: {result}"
        operations.append(result.ok())
    assert len(operations) >= 20
    token = api.tokens["admin"]
    failures: list[str] = []

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.one_of(*(operation.as_strategy() for operation in operations)))
    def call(case: Any) -> None:
        response = case.call(headers={"Authorization": f"Bearer {token}"})
        if response.status_code >= 500:
            failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")
        assert response.status_code < 500, failures[-1]
        if response.status_code >= 400:
            content_type = response.headers.get("content-type") or [""]
            assert content_type[0].startswith("application/problem+json"), (
                f"{case.method} {case.formatted_path}"
            )

    call()
