"""The API document explains itself, and the committed openapi.json is what the app serves."""

import json
from pathlib import Path

import manage
from asgi_client import TestClient

REPO = Path(__file__).resolve().parent.parent


def test_committed_openapi_json_matches_the_app(client: TestClient) -> None:
    committed = (REPO / "openapi.json").read_text()
    assert committed == manage.openapi_document(), "run `make openapi` and commit openapi.json"
    assert json.loads(committed) == client.get("/openapi.json").json()


def test_every_operation_is_described(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    tags = {tag["name"]: tag["description"] for tag in spec["tags"]}
    assert set(tags) == {"auth", "product", "order", "webhooks", "system"}
    assert spec["info"]["title"] == "Orders API"
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            assert operation["summary"], where
            assert len(operation.get("description", "")) > 20, where
            assert set(operation["tags"]) <= set(tags), where
            for code, response in operation["responses"].items():
                schema = response.get("content", {}).get("application/json", {}).get("schema")
                if code.startswith(("4", "5")):
                    assert schema in (
                        {"$ref": "#/components/schemas/Error"},
                        {"$ref": "#/components/schemas/HTTPValidationError"},
                    ), f"{where} {code}"


def test_protected_operations_document_401_and_request_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if operation.get("security"):
                assert "401" in operation["responses"], f"{method} {path}"
    schemas = spec["components"]["schemas"]
    for name in ("UserCreate", "LoginRequest", "OrderCreate", "ProductCreate"):
        assert schemas[name]["examples"], name


def test_every_operation_documents_the_limits_answered_before_routing(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert {"413", "431"} <= set(operation["responses"]), f"{method} {path}"


def test_every_operation_that_reaches_the_database_documents_503(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    without = {
        f"{method} {path}"
        for path, operations in spec["paths"].items()
        for method, operation in operations.items()
        if "503" not in operation["responses"]
    }
    assert without == {"get /metrics"}  # counters in files: no database behind it
    unavailable = spec["paths"]["/order"]["post"]["responses"]["503"]
    assert "Retry-After" in unavailable["headers"]
