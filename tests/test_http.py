"""Behaviour every route shares: method handling, body limits, malformed requests."""

import gc
import json

import pytest

from asgi_client import TestClient
from conftest import Account
from errors import MAX_LISTED_ERRORS
from middleware import MAX_BODY_BYTES


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/order", "GET, POST"),
        ("DELETE", "/order/1", "GET"),
        ("GET", "/auth/login", "POST"),
        ("PUT", "/product/1", "GET, PATCH"),
    ],
)
def test_405_lists_every_method_of_the_path(
    client: TestClient, method: str, path: str, allow: str
) -> None:
    response = client.request(method, path)
    assert response.status_code == 405
    assert response.headers["allow"] == allow
    assert response.json() == {"detail": "Method Not Allowed"}


def test_unknown_path_is_404_json(client: TestClient) -> None:
    response = client.get("/nowhere")
    assert response.status_code == 404
    assert response.json() == {"detail": "Not Found"}


def test_oversized_body_is_413_before_it_is_read(client: TestClient, alice: Account) -> None:
    body = b'{"items": [' + b" " * MAX_BODY_BYTES + b"]}"
    response = client.post(
        "/order", content=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413
    assert "larger than" in response.json()["detail"]
    assert client.get("/order", headers=alice.headers).json()["total"] == 0


def test_oversized_chunked_body_is_413(client: TestClient, alice: Account) -> None:
    def chunks():
        yield b'{"items": ['
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536
        yield b"]}"

    response = client.post(
        "/order", content=chunks(), headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 413


def test_body_just_under_the_limit_is_read(client: TestClient, alice: Account) -> None:
    body = b'{"items": [' + b" " * (MAX_BODY_BYTES - 100) + b"]}"
    response = client.post(
        "/order", content=body, headers={**alice.headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"{", "application/json"),
        (b"\xff\xfe", "application/json"),
        (b"[]", "application/json"),
        (b"null", "application/json"),
        (b'"text"', "application/json"),
        (b'{"name": "a", "email": "a@example.com", "password": "xxxxxxxx"}', "text/plain"),
    ],
)
def test_malformed_bodies_are_422(client: TestClient, content: bytes, content_type: str) -> None:
    response = client.post("/auth/signup", content=content, headers={"Content-Type": content_type})
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded"])
def test_a_json_body_sent_as_something_else_says_what_to_send(
    client: TestClient, content_type: str | None
) -> None:
    body = b'{"name": "Ada", "email": "ada@example.com", "password": "correct horse battery"}'
    headers = {} if content_type is None else {"Content-Type": content_type}
    response = client.post("/auth/signup", content=body, headers=headers)
    assert response.status_code == 422
    [error] = response.json()["detail"]
    assert error["loc"] == ["body"]
    assert "Content-Type: application/json" in error["msg"]
    assert error["input"] is None  # the body is not echoed back


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        (b"[" * 100_000, "application/json"),  # deeper than the JSON parser goes
        (b"no boundary", "multipart/form-data"),
    ],
)
def test_a_body_that_cannot_be_parsed_is_a_documented_422(
    client: TestClient, content: bytes, content_type: str
) -> None:
    path = "/auth/login-form" if "form" in content_type else "/auth/signup"
    response = client.post(path, content=content, headers={"Content-Type": content_type})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body"]
    assert "x-request-id" in response.headers


def test_a_body_of_many_unknown_keys_gets_one_short_error(client: TestClient) -> None:
    body = json.dumps({f"k{i}": 1 for i in range(60_000)})
    assert len(body) < MAX_BODY_BYTES
    response = client.post(
        "/auth/signup", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert len(response.content) < 1024
    [error] = response.json()["detail"]
    assert "60000 unknown fields" in error["msg"]
    assert error["input"] is None


def test_a_422_lists_at_most_a_bounded_number_of_errors(client: TestClient, alice: Account) -> None:
    # A hundred bad lines: one error each, within the unknown-field limit.
    items = [{"product_id": 0, "quantity": 0, "note": "x" * 500}] * 100
    response = client.post("/order", json={"items": items}, headers=alice.headers)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert len(detail) == MAX_LISTED_ERRORS + 1
    assert detail[-1]["type"] == "too_many_errors"
    assert detail[-1]["msg"] == "and 280 more"
    assert len(response.content) < 64 * 1024


def test_the_objects_made_at_start_up_are_out_of_the_collectors_view(client: TestClient) -> None:
    from main import freeze_start_up_objects

    frozen = gc.get_freeze_count()
    assert frozen > 10_000  # the modules, models, schemas and routes
    freeze_start_up_objects()  # once per process: a second start-up changes nothing
    assert gc.get_freeze_count() == frozen
    assert client.get("/health").status_code == 200
