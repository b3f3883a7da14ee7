"""schemathesis over the server's own OpenAPI document: generated requests (valid and invalid) never get a
5xx, and every response matches the status codes, content types and schemas the document declares."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def operations(server: Any) -> dict[str, Any]:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=30)
    ops = [result.ok() for result in schema.get_all_operations()]
    return {f"{op.method.upper()} {op.path}": op for op in ops}


# schemathesis' pytest plugin (`from_fixture`) does not work with pytest 9, so hypothesis drives each
# operation's strategy directly: the same generated cases and the same checks
CASES = [
    ("POST /v1/embeddings", GenerationMode.POSITIVE),
    ("POST /v1/embeddings", GenerationMode.NEGATIVE),
    ("POST /v1/documents", GenerationMode.POSITIVE),
    ("POST /v1/documents", GenerationMode.NEGATIVE),
    ("POST /v1/search", GenerationMode.POSITIVE),
    ("POST /v1/search", GenerationMode.NEGATIVE),
    ("GET /health", GenerationMode.POSITIVE),  # no input to make invalid
    ("GET /metrics", GenerationMode.POSITIVE),
]


@pytest.mark.parametrize(("name", "mode"), CASES, ids=[f"{n}-{m.value}" for n, m in CASES])
def test_openapi_contract(server: Any, operations: dict[str, Any], name: str, mode: GenerationMode) -> None:
    operation = operations[name]
    statuses: list[int] = []

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def check(case: Any) -> None:
        response = case.call_and_validate(base_url=server.url, headers=server.headers, timeout=60, checks=CHECKS)
        statuses.append(response.status_code)

    check()
    if name.startswith("POST"):  # the run really exercised the route: accepted valid bodies, rejected invalid
        assert len(statuses) >= 20, statuses
        assert (200 if mode is GenerationMode.POSITIVE else 422) in statuses, statuses


def test_openapi_document_describes_the_api(server: Any) -> None:
    doc = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    assert {"/v1/embeddings", "/v1/documents", "/v1/search", "/health", "/metrics"} <= set(doc["paths"])
    embeddings = doc["paths"]["/v1/embeddings"]["post"]
    assert {"200", "401", "413", "422", "429", "503"} <= set(embeddings["responses"])
    assert embeddings["security"] == [{"HTTPBearer": []}]
