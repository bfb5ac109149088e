"""The /auth contract: signup, logins, throttling, token rotation, /me and user administration.

Every test asserts exact status codes, so a 500 anywhere fails the test that caused it.
Forged tokens start from a real token's claims and change one thing, so each refusal tests
exactly the property it names (a control test shows an unchanged re-signed token is accepted).
"""

import base64
import json
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import httpx2 as httpx
import pytest
from jose import jws, jwt
from sqlalchemy import event, insert, select

import security
import throttle
from asgi_client import TestClient
from conftest import PASSWORD, TEST_SECRET, Account, login, make_account, query_plan, signup
from models import RefreshToken, utcnow
from settings import Settings

OTHER_SECRET = "another-secret-key-of-at-least-32-bytes"
WRONG_PASSWORD = "not the right password"
NEW_PASSWORD = "a brand new passphrase"
USER_FIELDS = {"id", "name", "email", "is_active", "is_admin", "created_at"}
TOKEN_PAIR_FIELDS = {"access_token", "refresh_token", "token_type", "expires_in"}
MAX_FAILURES = 5
WINDOW_SECONDS = 15 * 60


# --- helpers ---------------------------------------------------------------------------------


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def in_seconds(seconds: int) -> int:
    return int(time.time()) + seconds


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def resign(
    token: str,
    *,
    key: str = TEST_SECRET,
    algorithm: str = "HS256",
    headers: dict | None = None,
    omit: tuple[str, ...] = (),
    **changes: object,
) -> str:
    """The token's own claims with `changes` applied and `omit` removed, signed with `key`."""
    claims = jwt.get_unverified_claims(token)
    claims.update(changes)
    for name in omit:
        del claims[name]
    return jwt.encode(claims, key, algorithm=algorithm, headers=headers)


def unsigned(token: str) -> str:
    """The token's payload under an `alg: none` header with an empty signature."""
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{token.split('.')[1]}."


def tamper_char(token: str) -> str:
    """One character of the payload segment changed; header and signature kept."""
    header, payload, signature = token.split(".")
    i = len(payload) // 2
    replacement = "B" if payload[i] == "A" else "A"
    return ".".join([header, payload[:i] + replacement + payload[i + 1 :], signature])


def tamper_sub(token: str, sub: str) -> str:
    """The payload rewritten to name another user; the original signature kept."""
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = sub
    return ".".join([header, b64url(json.dumps(claims).encode()), signature])


def attempt_login(client: TestClient, email: str, password: str) -> httpx.Response:
    return client.post("/auth/login", json={"email": email, "password": password})


def me(client: TestClient, token: str) -> httpx.Response:
    return client.get("/auth/me", headers=bearer(token))


def refresh(client: TestClient, refresh_token: str) -> httpx.Response:
    return client.post("/auth/refresh", json={"refresh_token": refresh_token})


def logout(client: TestClient, refresh_token: str) -> httpx.Response:
    return client.post("/auth/logout", json={"refresh_token": refresh_token})


def patch_user(
    client: TestClient, actor: Account, user_id: int | str, body: object
) -> httpx.Response:
    return client.patch(f"/auth/users/{user_id}", json=body, headers=actor.headers)


def deactivate(client: TestClient, admin: Account, user_id: int) -> None:
    response = patch_user(client, admin, user_id, {"is_active": False})
    assert response.status_code == 200, response.text
    assert response.json()["is_active"] is False


def change_password(client: TestClient, account: Account, current: str, new: str) -> httpx.Response:
    return client.post(
        "/auth/change-password",
        json={"current_password": current, "new_password": new},
        headers=account.headers,
    )


def assert_unauthorized(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == "Bearer"
    detail = response.json()["detail"]
    assert isinstance(detail, str)
    assert detail


def assert_validation_error(response: httpx.Response) -> None:
    assert response.status_code == 422, response.text
    errors = response.json()["detail"]
    assert isinstance(errors, list)
    assert errors
    assert all({"loc", "msg", "type"} <= error.keys() for error in errors)


def assert_throttled(response: httpx.Response) -> int:
    assert response.status_code == 429, response.text
    assert isinstance(response.json()["detail"], str)
    retry_after = response.headers["Retry-After"]
    assert retry_after.isdigit()
    assert 1 <= int(retry_after) <= WINDOW_SECONDS
    return int(retry_after)


def assert_user(body: dict, *, email: str, is_active: bool = True, is_admin: bool = False) -> None:
    assert body.keys() == USER_FIELDS
    assert isinstance(body["id"], int)
    assert body["email"] == email
    assert body["is_active"] is is_active
    assert body["is_admin"] is is_admin
    created_at = datetime.fromisoformat(body["created_at"])
    assert created_at.utcoffset() == timedelta(0)


def assert_token_pair(body: dict) -> None:
    assert body.keys() == TOKEN_PAIR_FIELDS
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 1800
    for name in ("access_token", "refresh_token"):
        assert isinstance(body[name], str)
        assert body[name].count(".") == 2
    assert body["access_token"] != body["refresh_token"]


def fail_logins(client: TestClient, email: str, times: int) -> None:
    for _ in range(times):
        assert_unauthorized(attempt_login(client, email, WRONG_PASSWORD))


# --- signup ----------------------------------------------------------------------------------


def test_signup_returns_the_user_with_lower_cased_email_and_no_password(
    client: TestClient,
) -> None:
    response = client.post(
        "/auth/signup",
        json={"name": "Carol Danvers", "email": "Carol.D@Example.COM", "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert_user(body, email="carol.d@example.com")
    assert body["name"] == "Carol Danvers"
    assert PASSWORD not in response.text
    assert "hash" not in response.text


def test_signup_accepts_password_lengths_at_the_bounds(client: TestClient) -> None:
    for length in (8, 128):
        email = f"len{length}@example.com"
        signup(client, email, password="p" * length)
        assert_token_pair(login(client, email, password="p" * length))


def test_signup_with_email_taken_in_other_case_is_409(client: TestClient) -> None:
    signup(client, "dave@example.com")
    response = client.post(
        "/auth/signup",
        json={"name": "Other Dave", "email": "DAVE@example.COM", "password": PASSWORD},
    )
    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)


def signup_body(**changes: object) -> dict:
    """A valid signup body with `changes` applied; a change to `...` removes the field."""
    body: dict = {"name": "Erin", "email": "erin@example.com", "password": PASSWORD}
    body.update(changes)
    return {name: value for name, value in body.items() if value is not ...}


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(signup_body(email="not-an-email"), id="email-without-at"),
        pytest.param(signup_body(email="erin@"), id="email-without-domain"),
        pytest.param(signup_body(email="@example.com"), id="email-without-local-part"),
        pytest.param(signup_body(email="erin@example"), id="email-domain-without-dot"),
        pytest.param(signup_body(email=42), id="email-not-a-string"),
        pytest.param(signup_body(email=...), id="email-missing"),
        pytest.param(signup_body(name=""), id="name-empty"),
        pytest.param(signup_body(name="   "), id="name-whitespace"),
        pytest.param(signup_body(name="Erin\u0000"), id="name-nul-character"),
        pytest.param(signup_body(name="x" * 101), id="name-too-long"),
        pytest.param(signup_body(name=...), id="name-missing"),
        pytest.param(signup_body(password="p" * 7), id="password-7-chars"),
        pytest.param(signup_body(password="p" * 129), id="password-129-chars"),
        pytest.param(signup_body(password=None), id="password-null"),
        pytest.param(signup_body(is_admin=True), id="unknown-field-is_admin"),
        pytest.param(signup_body(is_active=False), id="unknown-field-is_active"),
        pytest.param(signup_body(id=1), id="unknown-field-id"),
        pytest.param(signup_body(created_at="2020-01-01T00:00:00Z"), id="unknown-field-created"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_signup_with_invalid_body_is_422(client: TestClient, body: object) -> None:
    assert_validation_error(client.post("/auth/signup", json=body))


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"name": "Erin", "email": "erin@example.com"', id="invalid-json"),
        pytest.param(
            b'{"name": "Erin", "email": "erin@example.com", "password": "\\ud800passwordx"}',
            id="password-lone-surrogate",
        ),
        pytest.param(
            b'{"name": "\\ud800", "email": "erin@example.com", "password": "passwordx"}',
            id="name-lone-surrogate",
        ),
    ],
)
def test_signup_with_undecodable_body_is_422(client: TestClient, raw: bytes) -> None:
    response = client.post(
        "/auth/signup", content=raw, headers={"Content-Type": "application/json"}
    )
    assert_validation_error(response)


def test_signup_refuses_mass_assignment_and_creates_nobody(
    client: TestClient, admin: Account
) -> None:
    response = client.post("/auth/signup", json=signup_body(is_admin=True, id=999))
    assert_validation_error(response)
    listed = client.get("/auth/users", headers=admin.headers).json()
    assert [user["email"] for user in listed["items"]] == [admin.email]
    # The email is still free, and signing up normally never makes an admin.
    created = client.post("/auth/signup", json=signup_body())
    assert created.status_code == 201
    assert_user(created.json(), email="erin@example.com", is_admin=False)


# --- login -----------------------------------------------------------------------------------


def test_login_returns_a_token_pair_accepted_by_me(client: TestClient) -> None:
    user_id = signup(client, "frank@example.com")
    response = attempt_login(client, "frank@example.com", PASSWORD)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert_token_pair(tokens)
    me_response = me(client, tokens["access_token"])
    assert me_response.status_code == 200
    assert me_response.json()["id"] == user_id


def test_login_email_is_case_insensitive(client: TestClient, alice: Account) -> None:
    response = attempt_login(client, "ALICE@Example.Com", PASSWORD)
    assert response.status_code == 200, response.text
    assert me(client, response.json()["access_token"]).json()["id"] == alice.id


def test_wrong_password_and_unknown_email_get_the_same_401(
    client: TestClient, alice: Account
) -> None:
    wrong_password = attempt_login(client, alice.email, WRONG_PASSWORD)
    unknown_email = attempt_login(client, "nobody@example.com", PASSWORD)
    assert_unauthorized(wrong_password)
    assert_unauthorized(unknown_email)
    assert wrong_password.json() == unknown_email.json()


def test_deactivated_user_login_with_right_password_is_403(
    client: TestClient, admin: Account, alice: Account
) -> None:
    deactivate(client, admin, alice.id)
    response = attempt_login(client, alice.email, PASSWORD)
    assert response.status_code == 403
    assert isinstance(response.json()["detail"], str)
    assert "access_token" not in response.text


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"email": "alice@example.com"}, id="password-missing"),
        pytest.param({"email": "alice@example.com", "password": ""}, id="password-empty"),
        pytest.param({"email": "alice@example.com", "password": "p" * 129}, id="password-129"),
        pytest.param({"email": "alice", "password": PASSWORD}, id="bad-email"),
        pytest.param(
            {"email": "alice@example.com", "password": PASSWORD, "remember": True},
            id="unknown-field",
        ),
        pytest.param([], id="not-an-object"),
    ],
)
def test_login_with_invalid_body_is_422(client: TestClient, alice: Account, body: object) -> None:
    assert_validation_error(client.post("/auth/login", json=body))


def test_login_with_lone_surrogate_password_is_422(client: TestClient, alice: Account) -> None:
    raw = b'{"email": "alice@example.com", "password": "\\ud800"}'
    response = client.post("/auth/login", content=raw, headers={"Content-Type": "application/json"})
    assert_validation_error(response)


# --- login-form ------------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, {"grant_type": "password"}], ids=["plain", "grant-type"])
def test_login_form_issues_tokens_accepted_by_me(
    client: TestClient, alice: Account, extra: dict
) -> None:
    response = client.post(
        "/auth/login-form", data={"username": "Alice@Example.com", "password": PASSWORD, **extra}
    )
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert_token_pair(tokens)
    assert me(client, tokens["access_token"]).json()["id"] == alice.id


def test_login_form_with_wrong_password_is_401(client: TestClient, alice: Account) -> None:
    response = client.post(
        "/auth/login-form", data={"username": alice.email, "password": WRONG_PASSWORD}
    )
    assert_unauthorized(response)
    assert response.json() == attempt_login(client, alice.email, WRONG_PASSWORD).json()


def test_login_form_with_other_grant_type_is_422(client: TestClient, alice: Account) -> None:
    response = client.post(
        "/auth/login-form",
        data={"username": alice.email, "password": PASSWORD, "grant_type": "client_credentials"},
    )
    assert_validation_error(response)


# --- throttling ------------------------------------------------------------------------------


def test_sixth_attempt_after_five_failures_is_429_even_with_right_password(
    client: TestClient, alice: Account
) -> None:
    fail_logins(client, alice.email, MAX_FAILURES)
    response = attempt_login(client, alice.email, PASSWORD)
    assert_throttled(response)
    assert "access_token" not in response.text


def test_throttle_also_applies_to_login_form(client: TestClient, alice: Account) -> None:
    fail_logins(client, alice.email, MAX_FAILURES)
    response = client.post("/auth/login-form", data={"username": alice.email, "password": PASSWORD})
    assert_throttled(response)


def test_throttle_counts_email_case_insensitively(client: TestClient, alice: Account) -> None:
    spellings = ["ALICE@example.com", "Alice@Example.com", "alice@EXAMPLE.com", "aLiCe@example.COM"]
    for email in [*spellings, alice.email]:
        assert_unauthorized(attempt_login(client, email, WRONG_PASSWORD))
    assert_throttled(attempt_login(client, "ALICE@EXAMPLE.COM", PASSWORD))


def test_unknown_emails_are_throttled_too(client: TestClient) -> None:
    fail_logins(client, "ghost@example.com", MAX_FAILURES)
    assert_throttled(attempt_login(client, "ghost@example.com", WRONG_PASSWORD))


def test_successful_login_clears_the_failure_count(client: TestClient, alice: Account) -> None:
    fail_logins(client, alice.email, MAX_FAILURES - 1)
    assert attempt_login(client, alice.email, PASSWORD).status_code == 200
    fail_logins(client, alice.email, MAX_FAILURES - 1)
    response = attempt_login(client, alice.email, PASSWORD)
    assert response.status_code == 200, response.text
    assert_token_pair(response.json())


def test_throttling_is_per_email(client: TestClient, alice: Account, bob: Account) -> None:
    fail_logins(client, alice.email, MAX_FAILURES)
    assert_throttled(attempt_login(client, alice.email, PASSWORD))
    response = attempt_login(client, bob.email, PASSWORD)
    assert response.status_code == 200, response.text
    assert_unauthorized(attempt_login(client, bob.email, WRONG_PASSWORD))


def test_login_works_again_once_the_window_has_passed(
    client: TestClient, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    signup(client, "grace@example.com")
    fail_logins(client, "grace@example.com", MAX_FAILURES)
    assert_throttled(attempt_login(client, "grace@example.com", PASSWORD))
    # The limits' clock moved to the end of the window.
    window_ends = utcnow() + timedelta(seconds=settings.login_window_seconds)
    monkeypatch.setattr(throttle, "utcnow", lambda: window_ends)
    response = attempt_login(client, "grace@example.com", PASSWORD)
    assert response.status_code == 200, response.text
    assert_token_pair(response.json())


# --- refresh ---------------------------------------------------------------------------------


def test_refresh_returns_a_new_working_pair(client: TestClient, alice: Account) -> None:
    response = refresh(client, alice.refresh_token)
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert_token_pair(tokens)
    assert tokens["refresh_token"] != alice.refresh_token
    assert me(client, tokens["access_token"]).json()["id"] == alice.id
    assert refresh(client, tokens["refresh_token"]).status_code == 200


def test_refresh_token_is_spent_after_use(client: TestClient, alice: Account) -> None:
    assert refresh(client, alice.refresh_token).status_code == 200
    assert_unauthorized(refresh(client, alice.refresh_token))


def test_reusing_a_spent_refresh_token_revokes_its_successor(
    client: TestClient, alice: Account
) -> None:
    successor = refresh(client, alice.refresh_token).json()["refresh_token"]
    assert_unauthorized(refresh(client, alice.refresh_token))
    assert_unauthorized(refresh(client, successor))


def test_reuse_detection_leaves_other_sessions_alone(client: TestClient, alice: Account) -> None:
    other_session = login(client, alice.email)["refresh_token"]
    assert refresh(client, alice.refresh_token).status_code == 200
    assert_unauthorized(refresh(client, alice.refresh_token))
    assert refresh(client, other_session).status_code == 200


def test_each_token_issued_deletes_a_few_expired_ones_and_no_live_one(
    client: TestClient, alice: Account
) -> None:
    """The table keeps little beyond the tokens that may still be presented: each token
    issued deletes up to EXPIRED_TOKENS_PRUNED_PER_ISSUE expired ones, longest expired first."""
    database = client.app.state.db
    now = utcnow()
    expired = [
        {
            "jti": f"expired-{n}",
            "user_id": alice.id,
            "family_id": "old",
            "issued_at": now - timedelta(days=8, minutes=n),
            "expires_at": now - timedelta(days=1, minutes=n),
        }
        for n in range(6)
    ]
    database.write_sync(lambda conn: conn.execute(insert(RefreshToken), expired))

    def kept() -> tuple[set[str], int]:
        jtis = database.read_sync(lambda conn: set(conn.scalars(select(RefreshToken.jti))))
        old = {jti for jti in jtis if jti.startswith("expired-")}
        return old, len(jtis - old)

    assert kept() == ({f"expired-{n}" for n in range(6)}, 1)  # and alice's from her login
    successor = refresh(client, alice.refresh_token)
    assert successor.status_code == 200, successor.text
    assert kept() == ({"expired-0", "expired-1"}, 2)  # her spent one stays: it reveals reuse
    assert refresh(client, successor.json()["refresh_token"]).status_code == 200
    assert kept() == (set(), 3)
    assert_unauthorized(refresh(client, alice.refresh_token))  # reuse, still detected


def test_expired_tokens_are_found_through_their_index(client: TestClient, alice: Account) -> None:
    """The few expired tokens a new one deletes are found without reading the live ones."""
    database = client.app.state.db
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement: str, parameters: object, *_: object) -> None:
        if statement.startswith("DELETE FROM refresh_tokens"):
            statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        assert refresh(client, alice.refresh_token).status_code == 200
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    [(statement, parameters)] = statements
    found = query_plan(database, statement, parameters)
    assert "ix_refresh_tokens_expires_at" in found, found


def test_access_token_is_refused_as_refresh_token(client: TestClient, alice: Account) -> None:
    assert_unauthorized(refresh(client, alice.access_token))


def test_refresh_token_is_refused_as_bearer(client: TestClient, alice: Account) -> None:
    assert_unauthorized(me(client, alice.refresh_token))


BAD_REFRESH_TOKENS: list = [
    pytest.param(lambda a: "garbage", id="malformed"),
    pytest.param(lambda a: "a.b.c", id="three-garbage-segments"),
    pytest.param(lambda a: resign(a.refresh_token, key=OTHER_SECRET), id="wrong-key"),
    pytest.param(
        lambda a: resign(a.refresh_token, iat=in_seconds(-7200), exp=in_seconds(-3600)),
        id="expired",
    ),
    pytest.param(lambda a: unsigned(a.refresh_token), id="alg-none"),
    pytest.param(lambda a: tamper_char(a.refresh_token), id="tampered"),
    pytest.param(lambda a: resign(a.refresh_token, omit=("exp",)), id="no-exp"),
]


@pytest.mark.parametrize(
    "make_token",
    [
        *BAD_REFRESH_TOKENS,
        pytest.param(lambda a: resign(a.refresh_token, jti=uuid.uuid4().hex), id="unknown-jti"),
    ],
)
def test_refresh_with_invalid_token_is_401(
    client: TestClient, alice: Account, make_token: Callable[[Account], str]
) -> None:
    assert_unauthorized(refresh(client, make_token(alice)))
    # The genuine token was not spent by the failed attempts.
    assert refresh(client, alice.refresh_token).status_code == 200


@pytest.mark.parametrize(
    "body",
    [{}, {"refresh_token": ""}, {"refresh_token": None}, {"refresh_token": "x", "user_id": 1}],
    ids=["missing", "empty", "null", "unknown-field"],
)
def test_refresh_with_invalid_body_is_422(client: TestClient, body: dict) -> None:
    assert_validation_error(client.post("/auth/refresh", json=body))


def test_deactivated_user_cannot_refresh(
    client: TestClient, admin: Account, alice: Account
) -> None:
    deactivate(client, admin, alice.id)
    assert_unauthorized(refresh(client, alice.refresh_token))


# --- logout ----------------------------------------------------------------------------------


def test_logout_is_204_and_the_token_can_no_longer_refresh(
    client: TestClient, alice: Account
) -> None:
    response = logout(client, alice.refresh_token)
    assert response.status_code == 204
    assert response.content == b""
    assert_unauthorized(refresh(client, alice.refresh_token))


def test_logging_out_twice_is_204(client: TestClient, alice: Account) -> None:
    assert logout(client, alice.refresh_token).status_code == 204
    response = logout(client, alice.refresh_token)
    assert response.status_code == 204
    assert response.content == b""


def test_logging_out_a_spent_token_is_204(client: TestClient, alice: Account) -> None:
    assert refresh(client, alice.refresh_token).status_code == 200
    response = logout(client, alice.refresh_token)
    assert response.status_code == 204
    assert response.content == b""


def test_logout_leaves_other_sessions_alone(client: TestClient, alice: Account) -> None:
    other_session = login(client, alice.email)["refresh_token"]
    assert logout(client, alice.refresh_token).status_code == 204
    assert refresh(client, other_session).status_code == 200


@pytest.mark.parametrize(
    "make_token",
    [*BAD_REFRESH_TOKENS, pytest.param(lambda a: a.access_token, id="access-token")],
)
def test_logout_with_invalid_token_is_401(
    client: TestClient, alice: Account, make_token: Callable[[Account], str]
) -> None:
    assert_unauthorized(logout(client, make_token(alice)))
    # Nothing was revoked by the refused logout.
    assert refresh(client, alice.refresh_token).status_code == 200


# --- /auth/me --------------------------------------------------------------------------------


def test_me_returns_the_current_user(client: TestClient, alice: Account) -> None:
    response = client.get("/auth/me", headers=alice.headers)
    assert response.status_code == 200
    body = response.json()
    assert_user(body, email=alice.email)
    assert body["id"] == alice.id
    assert body["name"] == "Tester"


def test_me_accepts_a_token_re_signed_unchanged(client: TestClient, alice: Account) -> None:
    # The control for the forged tokens below: the forging itself yields a valid token.
    response = me(client, resign(alice.access_token))
    assert response.status_code == 200
    assert response.json()["id"] == alice.id


@pytest.mark.parametrize(
    "make_headers",
    [
        pytest.param(lambda a: {}, id="no-header"),
        pytest.param(lambda a: {"Authorization": f"Basic {a.access_token}"}, id="basic-scheme"),
        pytest.param(lambda a: {"Authorization": a.access_token}, id="no-scheme"),
        pytest.param(lambda a: bearer("garbage"), id="garbage"),
        pytest.param(
            lambda a: bearer(resign(a.access_token, iat=in_seconds(-7200), exp=in_seconds(-3600))),
            id="expired",
        ),
        pytest.param(lambda a: bearer(resign(a.access_token, key=OTHER_SECRET)), id="wrong-key"),
        pytest.param(lambda a: bearer(tamper_char(a.access_token)), id="tampered-character"),
        pytest.param(lambda a: bearer(tamper_sub(a.access_token, "999")), id="tampered-sub"),
        pytest.param(lambda a: bearer(unsigned(a.access_token)), id="alg-none"),
        pytest.param(lambda a: bearer(resign(a.access_token, algorithm="HS512")), id="alg-hs512"),
        pytest.param(lambda a: bearer(resign(a.access_token, omit=("exp",))), id="no-exp"),
        pytest.param(lambda a: bearer(resign(a.access_token, omit=("sub",))), id="no-sub"),
        pytest.param(lambda a: bearer(resign(a.access_token, omit=("iat",))), id="no-iat"),
        pytest.param(lambda a: bearer(resign(a.access_token, omit=("type",))), id="no-type"),
        pytest.param(lambda a: bearer(resign(a.access_token, type="refresh")), id="refresh-type"),
        pytest.param(lambda a: bearer(resign(a.access_token, sub="999999")), id="unknown-user"),
        pytest.param(lambda a: bearer(resign(a.access_token, sub="abc")), id="sub-not-numeric"),
        pytest.param(lambda a: bearer(resign(a.access_token, sub=str(2**31))), id="sub-too-big"),
        pytest.param(lambda a: bearer(resign(a.access_token, sub="0")), id="sub-zero"),
        pytest.param(lambda a: bearer(resign(a.access_token, sub=a.id)), id="sub-not-a-string"),
        pytest.param(lambda a: bearer(resign(a.access_token, sub=f"+{a.id}")), id="sub-signed"),
        pytest.param(
            lambda a: bearer(resign(a.access_token, sub=f"{a.id}_0")), id="sub-underscore"
        ),
        pytest.param(lambda a: bearer(resign(a.access_token, exp="later")), id="exp-not-a-number"),
        pytest.param(
            lambda a: bearer(jws.sign(b"[1, 2]", TEST_SECRET, algorithm="HS256")),
            id="claims-not-an-object",
        ),
        pytest.param(lambda a: bearer(resign(a.access_token, exp=int(time.time()))), id="exp-now"),
        pytest.param(
            lambda a: bearer(resign(a.access_token, iat=in_seconds(3600))), id="future-iat"
        ),
        pytest.param(
            lambda a: bearer(resign(a.access_token, headers={"crit": ["exp"]})), id="crit-header"
        ),
    ],
)
def test_me_with_invalid_credentials_is_401(
    client: TestClient, alice: Account, make_headers: Callable[[Account], dict[str, str]]
) -> None:
    assert_unauthorized(client.get("/auth/me", headers=make_headers(alice)))


def test_me_is_401_once_the_user_is_deactivated(
    client: TestClient, admin: Account, alice: Account
) -> None:
    assert me(client, alice.access_token).status_code == 200
    deactivate(client, admin, alice.id)
    assert_unauthorized(me(client, alice.access_token))


def test_a_token_is_verified_once_and_its_lifetime_checked_at_every_request(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, alice: Account
) -> None:
    """The signature and claims of a token are checked once and remembered; its lifetime is
    checked against the clock at every request, so a remembered token still expires."""
    security._verified.cache_clear()
    verified = count_signature_checks(monkeypatch)
    for _ in range(3):
        assert me(client, alice.access_token).status_code == 200
    assert len(verified) == 1

    later = datetime.now(UTC) + timedelta(minutes=Settings().access_token_minutes, seconds=1)
    monkeypatch.setattr(security, "datetime", clock_at(later))
    assert_unauthorized(me(client, alice.access_token))
    assert len(verified) == 1  # refused by the clock alone


def test_a_refused_token_is_not_remembered(
    monkeypatch: pytest.MonkeyPatch, client: TestClient, alice: Account
) -> None:
    security._verified.cache_clear()
    verified = count_signature_checks(monkeypatch)
    forged = resign(alice.access_token, key=OTHER_SECRET)
    for _ in range(2):
        assert_unauthorized(me(client, forged))
    assert len(verified) == 2
    assert security._verified.cache_info().currsize == 0


def test_a_remembered_token_is_still_only_good_for_its_own_type(alice: Account) -> None:
    claims = security.decode_token(
        alice.access_token, expected=security.TokenType.access, secret_key=TEST_SECRET
    )
    assert claims.user_id == alice.id
    with pytest.raises(security.InvalidToken, match="access token where refresh was expected"):
        security.decode_token(
            alice.access_token, expected=security.TokenType.refresh, secret_key=TEST_SECRET
        )


def count_signature_checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every token whose signature python-jose checks from now on."""
    checked: list[str] = []
    verify = jws.verify

    def counting(token: str, *args: object, **kwargs: object) -> bytes:
        checked.append(token)
        return verify(token, *args, **kwargs)

    monkeypatch.setattr(jws, "verify", counting)
    return checked


def clock_at(moment: datetime) -> type[datetime]:
    """A datetime class whose now() is `moment`, for code that reads the clock through it."""

    class Clock(datetime):
        @classmethod
        def now(cls, tz: object = None) -> datetime:  # type: ignore[override]
            return moment

    return Clock


# --- change-password -------------------------------------------------------------------------


def test_change_password_replaces_the_password(client: TestClient, alice: Account) -> None:
    response = change_password(client, alice, PASSWORD, NEW_PASSWORD)
    assert response.status_code == 204
    assert response.content == b""
    assert_unauthorized(attempt_login(client, alice.email, PASSWORD))
    assert_token_pair(login(client, alice.email, password=NEW_PASSWORD))


def test_change_password_revokes_every_earlier_refresh_token(
    client: TestClient, alice: Account
) -> None:
    other_session = login(client, alice.email)["refresh_token"]
    assert change_password(client, alice, PASSWORD, NEW_PASSWORD).status_code == 204
    assert_unauthorized(refresh(client, alice.refresh_token))
    assert_unauthorized(refresh(client, other_session))
    fresh = login(client, alice.email, password=NEW_PASSWORD)["refresh_token"]
    assert refresh(client, fresh).status_code == 200


def test_change_password_with_wrong_current_password_is_401(
    client: TestClient, alice: Account
) -> None:
    assert_unauthorized(change_password(client, alice, WRONG_PASSWORD, NEW_PASSWORD))
    assert attempt_login(client, alice.email, PASSWORD).status_code == 200
    assert refresh(client, alice.refresh_token).status_code == 200


@pytest.mark.parametrize(
    "new_password", ["p" * 7, "p" * 129, ""], ids=["7-chars", "129-chars", "empty"]
)
def test_change_password_to_a_weak_password_is_422(
    client: TestClient, alice: Account, new_password: str
) -> None:
    assert_validation_error(change_password(client, alice, PASSWORD, new_password))
    assert attempt_login(client, alice.email, PASSWORD).status_code == 200


def test_change_password_without_token_is_401(client: TestClient, alice: Account) -> None:
    response = client.post(
        "/auth/change-password",
        json={"current_password": PASSWORD, "new_password": NEW_PASSWORD},
    )
    assert_unauthorized(response)
    assert attempt_login(client, alice.email, PASSWORD).status_code == 200


# --- GET /auth/users -------------------------------------------------------------------------


def test_admin_lists_all_users(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    response = client.get("/auth/users", headers=admin.headers)
    assert response.status_code == 200
    page = response.json()
    assert page.keys() == {"items", "total", "limit", "offset"}
    assert page["total"] == 3
    assert page["limit"] == 20
    assert page["offset"] == 0
    assert {user["id"] for user in page["items"]} == {alice.id, bob.id, admin.id}
    for user in page["items"]:
        assert user.keys() == USER_FIELDS


def test_admin_pages_through_users(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    everyone = client.get("/auth/users", headers=admin.headers).json()["items"]
    response = client.get("/auth/users", params={"limit": 1, "offset": 1}, headers=admin.headers)
    assert response.status_code == 200
    assert response.json() == {"items": [everyone[1]], "total": 3, "limit": 1, "offset": 1}


def test_listing_users_as_non_admin_is_403(client: TestClient, alice: Account) -> None:
    response = client.get("/auth/users", headers=alice.headers)
    assert response.status_code == 403
    assert isinstance(response.json()["detail"], str)


def test_listing_users_without_token_is_401(client: TestClient) -> None:
    assert_unauthorized(client.get("/auth/users"))


@pytest.mark.parametrize(
    "params",
    [{"limit": 0}, {"limit": 101}, {"offset": -1}, {"limit": "abc"}, {"offset": 1.5}],
    ids=["limit-0", "limit-101", "offset-negative", "limit-not-int", "offset-not-int"],
)
def test_listing_users_with_bad_paging_is_422(
    client: TestClient, admin: Account, params: dict
) -> None:
    assert_validation_error(client.get("/auth/users", params=params, headers=admin.headers))


# --- PATCH /auth/users/{id} ------------------------------------------------------------------


def test_admin_deactivates_and_reactivates_a_user(
    client: TestClient, admin: Account, alice: Account
) -> None:
    response = patch_user(client, admin, alice.id, {"is_active": False})
    assert response.status_code == 200
    assert_user(response.json(), email=alice.email, is_active=False)
    assert response.json()["id"] == alice.id

    response = patch_user(client, admin, alice.id, {"is_active": True})
    assert response.status_code == 200
    assert_user(response.json(), email=alice.email, is_active=True)
    assert attempt_login(client, alice.email, PASSWORD).status_code == 200


def test_promoted_user_can_list_users(client: TestClient, admin: Account, alice: Account) -> None:
    assert client.get("/auth/users", headers=alice.headers).status_code == 403
    response = patch_user(client, admin, alice.id, {"is_admin": True})
    assert response.status_code == 200
    assert_user(response.json(), email=alice.email, is_admin=True)
    assert client.get("/auth/users", headers=alice.headers).status_code == 200


def test_patching_users_as_non_admin_is_403(
    client: TestClient, alice: Account, bob: Account
) -> None:
    for target in (bob.id, alice.id):
        response = patch_user(client, alice, target, {"is_admin": True})
        assert response.status_code == 403
        assert isinstance(response.json()["detail"], str)
    assert client.get("/auth/users", headers=alice.headers).status_code == 403


def test_patching_users_without_token_is_401(client: TestClient, alice: Account) -> None:
    assert_unauthorized(client.patch(f"/auth/users/{alice.id}", json={"is_active": False}))
    assert me(client, alice.access_token).status_code == 200


def test_patching_a_missing_user_is_404(client: TestClient, admin: Account) -> None:
    response = patch_user(client, admin, 999999, {"is_active": False})
    assert response.status_code == 404
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize("user_id", ["0", "-1", "abc", "1.5", str(2**31)])
def test_patching_a_bad_user_id_is_422(client: TestClient, admin: Account, user_id: str) -> None:
    assert_validation_error(patch_user(client, admin, user_id, {"is_active": False}))


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"name": "Mallory"}, id="unknown-field-name"),
        pytest.param({"email": "mallory@example.com"}, id="unknown-field-email"),
        pytest.param({"is_active": None}, id="is_active-null"),
        pytest.param({"is_admin": None}, id="is_admin-null"),
        pytest.param({"is_admin": "yes"}, id="is_admin-string"),
        pytest.param({"is_admin": 1}, id="is_admin-number"),
        pytest.param({"is_active": "no"}, id="is_active-string"),
        pytest.param({"is_active": 0}, id="is_active-number"),
        pytest.param([], id="not-an-object"),
    ],
)
def test_patching_a_user_with_a_bad_body_is_422(
    client: TestClient, admin: Account, alice: Account, body: object
) -> None:
    assert_validation_error(patch_user(client, admin, alice.id, body))
    assert_user(me(client, alice.access_token).json(), email=alice.email)


@pytest.mark.parametrize(
    "body",
    [{"is_admin": False}, {"is_active": False}, {"is_admin": True, "is_active": False}],
    ids=["admin-flag", "active-flag", "active-flag-with-admin-true"],
)
def test_admin_removing_own_flag_is_409(client: TestClient, admin: Account, body: dict) -> None:
    response = patch_user(client, admin, admin.id, body)
    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)
    assert_user(me(client, admin.access_token).json(), email=admin.email, is_admin=True)


def test_admin_setting_own_admin_flag_is_200(client: TestClient, admin: Account) -> None:
    response = patch_user(client, admin, admin.id, {"is_admin": True, "is_active": True})
    assert response.status_code == 200
    assert_user(response.json(), email=admin.email, is_admin=True)


def test_admin_can_demote_another_admin(client: TestClient, admin: Account) -> None:
    other = make_account(client, "second-admin@example.com", admin=True)
    response = patch_user(client, admin, other.id, {"is_admin": False})
    assert response.status_code == 200
    assert_user(response.json(), email=other.email, is_admin=False)
    assert client.get("/auth/users", headers=other.headers).status_code == 403
