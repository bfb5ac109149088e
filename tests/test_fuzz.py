"""Schemathesis against the app's own OpenAPI document: generated requests, valid and not,
for every operation. No answer may be a 5xx, and every answer must match what the document
says that operation returns (status code, content type, headers, body schema)."""

from collections import Counter

import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from conftest import Account, backend_of, report

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 30


def test_every_operation_survives_generated_requests(
    client: TestClient, admin: Account, products: list[dict], database_url: str
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    calls = Counter()
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case: schemathesis.Case) -> None:
            response = case.call_and_validate(headers=admin.headers, checks=CHECKS)
            calls[response.status_code // 100] += 1

        fuzz()
    report(
        f"{backend_of(database_url)}: schemathesis sent {calls.total()} requests to "
        f"{len(operations)} operations: " + ", ".join(f"{calls[k]} {k}xx" for k in sorted(calls))
    )
