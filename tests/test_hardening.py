"""What an attacker tried, class by class: each test fails on the code before the fix.

Bursts against the login limit, guessing through change-password, signup floods, token
parsing, response headers, revocation on deactivation and on a replayed logout, emails in
compatibility forms, the throttle table's size, oversized headers, 500s, and a database that
cannot serve a request (503, never 500).
"""

import base64
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from httpx2 import Response
from jose import jwt
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

import database
from asgi_client import TestClient
from conftest import PASSWORD, TEST_SECRET, Account, login, signup, test_settings
from main import create_app
from middleware import MAX_HEADER_BYTES
from models import RateLimitWindow, utcnow
from settings import Settings

WRONG = "not the right password"
LIMIT = 5


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- the login limit under a burst --------------------------------------------------------


def test_a_burst_of_wrong_passwords_gets_at_most_the_limit_of_401s(
    client: TestClient, alice: Account
) -> None:
    def guess(_: int) -> int:
        body = {"email": alice.email, "password": WRONG}
        return client.post("/auth/login", json=body).status_code

    with ThreadPoolExecutor(max_workers=25) as pool:
        codes = list(pool.map(guess, range(50)))
    assert codes.count(401) <= LIMIT
    assert codes.count(401) + codes.count(429) == 50


def test_wrong_current_passwords_are_throttled_like_logins(
    client: TestClient, alice: Account
) -> None:
    body = {"current_password": WRONG, "new_password": "a brand new passphrase"}
    codes = [
        client.post("/auth/change-password", json=body, headers=alice.headers).status_code
        for _ in range(LIMIT + 1)
    ]
    assert codes == [401] * LIMIT + [429]
    right = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    response = client.post("/auth/change-password", json=right, headers=alice.headers)
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 900
    # and the email's logins are closed too: it is one limit
    assert (
        client.post("/auth/login", json={"email": alice.email, "password": PASSWORD}).status_code
        == 429
    )


def test_a_successful_password_change_clears_the_count(client: TestClient, alice: Account) -> None:
    wrong = {"current_password": WRONG, "new_password": "a brand new passphrase"}
    for _ in range(LIMIT - 1):
        client.post("/auth/change-password", json=wrong, headers=alice.headers)
    right = {"current_password": PASSWORD, "new_password": "a brand new passphrase"}
    assert (
        client.post("/auth/change-password", json=right, headers=alice.headers).status_code == 204
    )
    body = {"email": alice.email, "password": WRONG}
    assert [client.post("/auth/login", json=body).status_code for _ in range(2)] == [401, 401]


# --- signups per client address -------------------------------------------------------------


def test_signups_are_limited_per_client_address(client: TestClient) -> None:
    codes = [
        client.post(
            "/auth/signup",
            json={"name": "S", "email": f"s{n}@example.com", "password": PASSWORD},
        ).status_code
        for n in range(21)
    ]
    assert codes == [201] * 20 + [429]
    response = client.post(
        "/auth/signup", json={"name": "S", "email": "late@example.com", "password": PASSWORD}
    )
    assert response.status_code == 429
    assert 3500 < int(response.headers["Retry-After"]) <= 3600


def test_refused_bodies_do_not_count_against_the_signup_limit(client: TestClient) -> None:
    for n in range(25):
        body = {"name": "S", "email": f"s{n}@example.com", "password": "short"}
        assert client.post("/auth/signup", json=body).status_code == 422
    body = {"name": "S", "email": "ok@example.com", "password": PASSWORD}
    assert client.post("/auth/signup", json=body).status_code == 201


# --- passwords ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "password", ["password", "12345678", "PassWord1", "iloveyou", "qwertyuiop"]
)
def test_common_passwords_are_refused(client: TestClient, password: str) -> None:
    body = {"name": "C", "email": "c@example.com", "password": password}
    response = client.post("/auth/signup", json=body)
    assert response.status_code == 422
    assert "common" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("password", ["carol.smith@example.com", "Carol.Smith"])
def test_the_email_or_its_local_part_as_password_is_refused(
    client: TestClient, password: str
) -> None:
    body = {"name": "C", "email": "carol.smith@example.com", "password": password}
    response = client.post("/auth/signup", json=body)
    assert response.status_code == 422
    assert "email" in response.json()["detail"][0]["msg"]


@pytest.mark.parametrize("new_password", ["alice@example.com", "password1"])
def test_change_password_refuses_personal_and_common_passwords(
    client: TestClient, alice: Account, new_password: str
) -> None:
    body = {"current_password": PASSWORD, "new_password": new_password}
    response = client.post("/auth/change-password", json=body, headers=alice.headers)
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "new_password"]
    assert login(client, alice.email)["access_token"]  # the old password still works


# --- tokens -------------------------------------------------------------------------------


def nested_header_token(depth: int = 1000) -> str:
    return f"{b64url(b'[' * depth)}.{b64url(b'{}')}.{b64url(b'x' * 32)}"


def test_a_token_with_a_deeply_nested_header_is_401(client: TestClient) -> None:
    token = nested_header_token()
    response = client.get("/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert client.post("/auth/refresh", json={"refresh_token": token}).status_code == 401
    assert client.post("/auth/logout", json={"refresh_token": token}).status_code == 401


@pytest.mark.parametrize("token", ["a.b", "a.b.c.d", "x" * 5000 + ".e30.c2ln", "a b.c.d"])
def test_tokens_of_the_wrong_shape_are_401(client: TestClient, token: str) -> None:
    assert client.get("/auth/me", headers=bearer(token)).status_code == 401


def test_a_signed_token_with_a_huge_subject_is_401(client: TestClient, alice: Account) -> None:
    claims = jwt.get_unverified_claims(alice.access_token) | {"sub": "9" * 5000}
    token = jwt.encode(claims, TEST_SECRET, algorithm="HS256")
    assert client.get("/auth/me", headers=bearer(token)).status_code == 401


# --- response headers ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/auth/login", "/auth/login-form", "/auth/refresh"])
def test_token_responses_are_not_cached(client: TestClient, alice: Account, path: str) -> None:
    if path == "/auth/login-form":
        response = client.post(path, data={"username": alice.email, "password": PASSWORD})
    elif path == "/auth/login":
        response = client.post(path, json={"email": alice.email, "password": PASSWORD})
    else:
        response = client.post(path, json={"refresh_token": alice.refresh_token})
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"


@pytest.mark.parametrize("path", ["/health", "/docs", "/redoc", "/openapi.json", "/nowhere"])
def test_every_response_carries_the_security_headers(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["content-security-policy"] == "frame-ancestors 'none'"


def test_a_500_is_json_with_a_request_id_and_the_headers(settings: Settings) -> None:
    app = create_app(settings)

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-ID": "trace-500"})
    assert response.status_code == 500
    assert response.json() == {"detail": "Internal server error"}
    assert response.headers["x-request-id"] == "trace-500"
    assert response.headers["x-content-type-options"] == "nosniff"


BOB = {"name": "Bob", "email": "bob@example.com", "password": PASSWORD}


def assert_unavailable(response: Response) -> None:
    """The one answer for a database that cannot serve a request: 503, retry in a second."""
    assert response.status_code == 503, response.text
    assert response.json() == {"detail": "The database is busy or unreachable; try again"}
    assert response.headers["retry-after"] == "1"
    assert response.headers["x-request-id"]


def test_a_database_that_cannot_be_reached_is_503_with_retry_after(tmp_path: Path) -> None:
    """A temporary state of the server, not a fault of the request: never a 500."""
    # A directory cannot be opened as a SQLite database: every connection fails.
    with TestClient(create_app(test_settings(f"sqlite:///{tmp_path}"))) as client:
        answers = [
            client.get("/product"),
            client.post("/auth/signup", json=BOB),
            client.post("/auth/login", json={"email": BOB["email"], "password": PASSWORD}),
        ]
    for response in answers:
        assert_unavailable(response)


def test_a_write_that_waits_out_another_writer_is_503_and_leaves_nothing(
    settings: Settings,
) -> None:
    """Another process holds SQLite's write lock for longer than SQLITE_BUSY_TIMEOUT_MS: the
    write is refused with 503, and the retry after the lock is released goes through as if
    the first attempt had never been."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's write lock")
    impatient = settings.model_copy(update={"sqlite_busy_timeout_ms": 100})
    other_process = sqlite3.connect(make_url(settings.database_url).database, isolation_level=None)
    try:
        with TestClient(create_app(impatient)) as client:
            other_process.execute("BEGIN IMMEDIATE")
            refused = client.post("/auth/signup", json=BOB)
            other_process.execute("ROLLBACK")
            accepted = client.post("/auth/signup", json=BOB)
    finally:
        other_process.close()
    assert_unavailable(refused)
    assert accepted.status_code == 201, accepted.text


def test_a_request_that_waits_out_the_connection_pool_is_503(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every connection of the worker's pool is busy for longer than a request may wait for
    one: 503, as for a database that does not answer; once one is free, the same request
    goes through."""
    if settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's pool never makes a request wait")
    monkeypatch.setattr(database, "POOL_WAIT_SECONDS", 0.2)
    one = settings.model_copy(update={"db_pool_size": 1})  # and one overflow connection
    with TestClient(create_app(one)) as client:
        engine = client.app.state.db.engine
        busy = [engine.connect() for _ in range(2)]
        try:
            waited = client.get("/product")
        finally:
            for conn in busy:
                conn.close()
        served = client.get("/product")
    assert_unavailable(waited)
    assert served.status_code == 200


def test_request_headers_over_64_kib_are_431(client: TestClient) -> None:
    headers = {f"x-filler-{n}": "y" * 1000 for n in range(MAX_HEADER_BYTES // 1000 + 1)}
    response = client.get("/health", headers=headers)
    assert response.status_code == 431
    assert "x-request-id" in response.headers
    assert client.get("/health", headers={"x-filler": "y" * 1000}).status_code == 200


# --- revocation -----------------------------------------------------------------------------


def test_deactivation_revokes_refresh_tokens_for_good(
    client: TestClient, admin: Account, alice: Account
) -> None:
    path = f"/auth/users/{alice.id}"
    assert client.patch(path, json={"is_active": False}, headers=admin.headers).status_code == 200
    assert client.patch(path, json={"is_active": True}, headers=admin.headers).status_code == 200
    response = client.post("/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert response.status_code == 401
    assert login(client, alice.email)["refresh_token"]  # a new login works again


def test_logging_out_a_spent_token_revokes_its_successors(
    client: TestClient, alice: Account
) -> None:
    successor = client.post("/auth/refresh", json={"refresh_token": alice.refresh_token}).json()
    assert (
        client.post("/auth/logout", json={"refresh_token": alice.refresh_token}).status_code == 204
    )
    response = client.post("/auth/refresh", json={"refresh_token": successor["refresh_token"]})
    assert response.status_code == 401


# --- emails ---------------------------------------------------------------------------------


def test_an_email_in_full_width_letters_is_the_same_account(client: TestClient) -> None:
    signup(client, "wanda@example.com")
    body = {"name": "W", "email": "\uff37anda@example.com", "password": PASSWORD}  # full-width W
    assert client.post("/auth/signup", json=body).status_code == 409
    response = client.post(
        "/auth/login", json={"email": "\uff37ANDA@example.com", "password": PASSWORD}
    )
    assert response.status_code == 200


# --- the throttle table stays small --------------------------------------------------------


def test_ended_windows_are_pruned_as_attempts_arrive(client: TestClient) -> None:
    db = client.app.state.db
    ended = utcnow() - timedelta(seconds=1)
    db.write_sync(
        lambda conn: conn.execute(
            insert(RateLimitWindow),
            [
                {"bucket": f"login:gone{n}@example.com", "attempts": 3, "expires_at": ended}
                for n in range(150)
            ],
        )
    )
    for n in range(2):
        body = {"email": f"stranger{n}@example.com", "password": WRONG}
        assert client.post("/auth/login", json=body).status_code == 401

    def buckets(conn) -> list[str]:
        return list(conn.scalars(select(RateLimitWindow.bucket)))

    left = db.read_sync(buckets)
    assert sorted(left) == ["login:stranger0@example.com", "login:stranger1@example.com"]
    assert (
        db.read_sync(lambda conn: conn.scalar(select(func.count()).select_from(RateLimitWindow)))
        == 2
    )
