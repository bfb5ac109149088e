"""Request ids, one structured access line per request, and no secret in any log line."""

import json
import logging

import pytest
from fastapi.testclient import TestClient

import logs
from conftest import PASSWORD, Account


@pytest.fixture
def log_lines() -> list[str]:
    """Every record any logger emits during the test, formatted as production formats it."""
    lines: list[str] = []
    formatter = logs.JsonFormatter()

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    handler = Collect(level=logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield lines
    root.removeHandler(handler)
    root.setLevel(old_level)


def access_entries(lines: list[str]) -> list[dict]:
    entries = [json.loads(line) for line in lines]
    return [e for e in entries if e["logger"] == "orders.access"]


def test_a_sane_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "trace-42.a_b"})
    assert response.headers["x-request-id"] == "trace-42.a_b"


@pytest.mark.parametrize("sent", [None, "has space", "x" * 129, "semi;colon", ""])
def test_other_requests_get_a_fresh_id(client: TestClient, sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    first = client.get("/health", headers=headers).headers["x-request-id"]
    second = client.get("/health", headers=headers).headers["x-request-id"]
    assert len(first) == 32
    assert first != second
    assert first != sent


def test_errors_carry_a_request_id_too(client: TestClient) -> None:
    assert "x-request-id" in client.get("/order").headers  # 401
    assert "x-request-id" in client.put("/order").headers  # 405
    assert "x-request-id" in client.get("/nowhere").headers  # 404


def test_one_access_line_per_request(
    client: TestClient, alice: Account, log_lines: list[str]
) -> None:
    response = client.get("/order/12345", headers={**alice.headers, "X-Request-ID": "req-1"})
    assert response.status_code == 404
    (entry,) = access_entries(log_lines)
    assert entry["request_id"] == "req-1"
    assert entry["method"] == "GET"
    assert entry["path"] == "/order/{order_id}"  # the template, not the id
    assert entry["status"] == 404
    assert entry["user_id"] == alice.id
    assert isinstance(entry["duration_ms"], float)


def test_anonymous_requests_log_no_user(client: TestClient, log_lines: list[str]) -> None:
    client.get("/product")
    (entry,) = access_entries(log_lines)
    assert entry["user_id"] is None
    assert entry["path"] == "/product"


def test_no_password_or_token_reaches_any_log(client: TestClient, log_lines: list[str]) -> None:
    body = {"name": "Secretive", "email": "secret@example.com", "password": PASSWORD}
    assert client.post("/auth/signup", json=body).status_code == 201
    wrong = client.post("/auth/login", json={"email": body["email"], "password": "wrong-pw-1"})
    assert wrong.status_code == 401
    tokens = client.post("/auth/login", json={"email": body["email"], "password": PASSWORD})
    form = client.post(
        "/auth/login-form", data={"username": body["email"], "password": PASSWORD}
    ).json()
    pair = tokens.json()
    refreshed = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    bearer = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert client.get("/auth/me", headers=bearer).status_code == 200
    change = {"current_password": PASSWORD, "new_password": "another long password"}
    assert client.post("/auth/change-password", json=change, headers=bearer).status_code == 204
    short = client.post(
        "/auth/signup", json={**body, "email": "s@example.com", "password": "2short"}
    )
    assert short.status_code == 422
    client.post("/auth/logout", json={"refresh_token": refreshed["refresh_token"]})

    output = "\n".join(log_lines)
    assert len(access_entries(log_lines)) == 9
    secrets = [PASSWORD, "wrong-pw-1", "another long password", "2short"]
    secrets += [pair["access_token"], pair["refresh_token"], form["access_token"]]
    secrets += [refreshed["access_token"], refreshed["refresh_token"]]
    for secret in secrets:
        assert secret not in output
    assert "Bearer" not in output
    assert "authorization" not in output.lower()


def test_redaction_masks_anything_shaped_like_a_token() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    assert token not in logs.redact(f"failed with {token}")
    assert "s3cret" not in logs.redact("Authorization: Bearer s3cret")
    assert "hunter22" not in logs.redact('{"password": "hunter22"}')
    assert logs.redact("GET /order/{order_id} 200") == "GET /order/{order_id} 200"


def test_text_format_for_development() -> None:
    record = logging.makeLogRecord(
        {"name": "orders.access", "msg": "GET /health 200", "levelname": "INFO", "user_id": 7}
    )
    line = logs.TextFormatter().format(record)
    assert "orders.access: GET /health 200 user=7" in line
    assert not line.lstrip().startswith("{")
