"""Schemathesis against the app's own OpenAPI document: generated requests, valid and not,
for every operation, with every check schemathesis has. No answer may be a 5xx, every answer
must match what the document says that operation returns (status code, content type,
headers, body schema, Allow), invalid data must be refused and valid data accepted, and
authentication must not be ignored."""

from collections import Counter

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from asgi_client import TestClient
from conftest import Account, backend_of, report

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    allow_header_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    unsupported_method,
    use_after_free,
]
EXAMPLES_PER_OPERATION = 30
# A schema-valid body these refuse with 422 by a rule no schema can state: a product that
# does not exist or is inactive, a merged quantity over the line limit, a common password or
# the email as password, an email at a reserved domain (JSON Schema's "email" format allows
# `.test`; email-validator does not), text with control characters, lone surrogates or
# nothing visible, a URL with spaces or a password in it, a page cursor this app did not
# make. They run every other check.
SEMANTIC_422 = {
    "GET /order",
    "POST /order",
    "POST /order/{order_id}/items",
    "POST /auth/signup",
    "POST /auth/login",
    "POST /auth/login-form",
    "POST /auth/change-password",
    "POST /auth/password-reset",
    "POST /auth/password-reset/confirm",
    "POST /product",
    "PATCH /product/{product_id}",
    "POST /product/{product_id}/stock",
    "POST /webhooks",
    "PATCH /webhooks/{webhook_id}",
}


def test_every_operation_survives_generated_requests(
    client: TestClient, admin: Account, products: list[dict], database_url: str
) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20

    calls = Counter()
    for operation in operations:
        fuzz_operation(operation, admin, calls)

    report(
        f"{backend_of(database_url)}: schemathesis sent {calls.total()} requests to "
        f"{len(operations)} operations: " + ", ".join(f"{calls[k]} {k}xx" for k in sorted(calls))
    )


def fuzz_operation(operation: schemathesis.APIOperation, admin: Account, calls: Counter) -> None:
    checks = [
        check
        for check in CHECKS
        if not (check is positive_data_acceptance and operation.label in SEMANTIC_422)
    ]

    @given(case=operation.as_strategy())
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def fuzz(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=admin.headers, checks=checks)
        calls[response.status_code // 100] += 1

    fuzz()
