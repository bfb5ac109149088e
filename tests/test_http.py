"""Behaviour every route shares: method handling, body limits, malformed requests."""

import pytest
from fastapi.testclient import TestClient

from conftest import Account
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
