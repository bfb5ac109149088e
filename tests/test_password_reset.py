"""Password reset by email, through a real SMTP server (aiosmtpd) started by the tests."""

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from sqlalchemy import func, select, update

from asgi_client import TestClient
from certificates import self_signed_certificate
from conftest import PASSWORD, Account, login, signup, test_settings
from models import PasswordResetToken, utcnow
from password_reset import REQUESTED, token_hash
from settings import Settings
from smtp_server import Inbox, html_of, reset_token, smtp_server, text_of

RESET_URL = "https://shop.example.com/reset-password?token={token}"
NEW_PASSWORD = "a brand new passphrase"
SENDER = "Example Shop <shop@example.com>"


@pytest.fixture
def smtp() -> Iterator[Inbox]:
    with smtp_server() as (inbox, port):
        inbox.port = port  # type: ignore[attr-defined]
        yield inbox


@pytest.fixture
def settings(database_url: str, smtp: Inbox) -> Settings:
    """The test's settings, sending mail to the test's SMTP server (plain, no login)."""
    return test_settings(
        database_url,
        smtp_host="127.0.0.1",
        smtp_port=smtp.port,  # type: ignore[attr-defined]
        smtp_starttls=False,
        email_from=SENDER,
        password_reset_url=RESET_URL,
    )


def ask(client: TestClient, email: str) -> None:
    response = client.post("/auth/password-reset", json={"email": email})
    assert response.status_code == 202, response.text
    assert response.json() == {"detail": REQUESTED}


def confirm(client: TestClient, token: str, password: str = NEW_PASSWORD) -> int:
    body = {"token": token, "new_password": password}
    return client.post("/auth/password-reset/confirm", json=body).status_code


def app_lines(log_lines: list[str]) -> list[str]:
    """What the app logged (not the test's SMTP server, which logs what it receives)."""
    return [line for line in log_lines if '"logger": "mail.log"' not in line]


def stored_tokens(client: TestClient) -> int:
    count = select(func.count()).select_from(PasswordResetToken)
    return client.app.state.db.read_sync(lambda conn: conn.scalar(count))


def test_the_emailed_link_resets_the_password(
    client: TestClient, alice: Account, smtp: Inbox
) -> None:
    ask(client, "alice@example.com")
    [message] = smtp.wait_for(1)
    assert message["To"] == "alice@example.com"
    assert message["From"] == SENDER
    assert message["Subject"] == "Reset your password"
    assert smtp.envelopes[0].rcpt_tos == ["alice@example.com"]
    token = reset_token(message)
    assert f"https://shop.example.com/reset-password?token={token}" in text_of(message)
    assert f'href="https://shop.example.com/reset-password?token={token}"' in html_of(message)
    assert token in text_of(message).split()  # the token itself, for apps without a link

    assert confirm(client, token) == 204
    assert login(client, "alice@example.com", NEW_PASSWORD)["access_token"]
    wrong = client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert wrong.status_code == 401
    # Every session of the account ends: its refresh tokens are revoked.
    refreshed = client.post("/auth/refresh", json={"refresh_token": alice.refresh_token})
    assert refreshed.status_code == 401
    # The token is spent.
    assert confirm(client, token, "yet another passphrase") == 400
    assert stored_tokens(client) == 0


def test_unknown_and_known_emails_get_the_same_answer(
    client: TestClient, alice: Account, smtp: Inbox
) -> None:
    known = client.post("/auth/password-reset", json={"email": "alice@example.com"})
    unknown = client.post("/auth/password-reset", json={"email": "nobody@example.com"})
    assert (known.status_code, known.content) == (unknown.status_code, unknown.content)
    ignored = {"x-request-id", "content-length"}
    assert {k: v for k, v in known.headers.items() if k not in ignored} == {
        k: v for k, v in unknown.headers.items() if k not in ignored
    }
    # TestClient returns after the background work: only the account's message was sent.
    assert [m["To"] for m in smtp.messages] == ["alice@example.com"]


def test_a_deactivated_account_gets_no_email_and_its_token_stops_working(
    client: TestClient, alice: Account, admin: Account, smtp: Inbox
) -> None:
    ask(client, alice.email)
    token = reset_token(smtp.wait_for(1)[0])
    deactivate = {"is_active": False}
    response = client.patch(f"/auth/users/{alice.id}", json=deactivate, headers=admin.headers)
    assert response.status_code == 200
    assert confirm(client, token) == 400
    ask(client, alice.email)
    assert len(smtp.messages) == 1
    # Reactivation does not bring the token back.
    reactivate = {"is_active": True}
    response = client.patch(f"/auth/users/{alice.id}", json=reactivate, headers=admin.headers)
    assert response.status_code == 200
    assert confirm(client, token) == 400


def test_a_template_that_does_not_render_fails_nothing(
    client: TestClient,
    alice: Account,
    smtp: Inbox,
    log_lines: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import jinja2

    import mail

    def broken(*_args: object, **_kwargs: object) -> None:
        raise jinja2.UndefinedError("'shop' is undefined")

    monkeypatch.setattr(mail, "compose", broken)
    ask(client, alice.email)
    assert smtp.messages == []
    assert any("could not be composed: UndefinedError" in line for line in log_lines)


def test_a_newer_request_replaces_the_older_token(
    client: TestClient, alice: Account, smtp: Inbox
) -> None:
    ask(client, alice.email)
    ask(client, alice.email)
    first, second = (reset_token(m) for m in smtp.wait_for(2))
    assert first != second
    assert confirm(client, first) == 400
    assert confirm(client, second) == 204
    assert stored_tokens(client) == 0


def test_an_expired_token_is_refused(client: TestClient, alice: Account, smtp: Inbox) -> None:
    ask(client, alice.email)
    token = reset_token(smtp.wait_for(1)[0])
    client.app.state.db.write_sync(
        lambda conn: conn.execute(
            update(PasswordResetToken).values(expires_at=utcnow() - timedelta(seconds=1))
        )
    )
    assert confirm(client, token) == 400
    assert login(client, alice.email, PASSWORD)


def test_the_token_expires_after_the_configured_minutes(
    client: TestClient, alice: Account, smtp: Inbox
) -> None:
    ask(client, alice.email)
    expires_at = client.app.state.db.read_sync(
        lambda conn: conn.scalar(select(PasswordResetToken.expires_at))
    )
    left = expires_at - utcnow()
    assert timedelta(minutes=29) < left <= timedelta(minutes=30)
    assert "30 minutes" in text_of(smtp.wait_for(1)[0])


def test_only_a_hash_of_the_token_is_stored(
    client: TestClient, alice: Account, smtp: Inbox
) -> None:
    ask(client, alice.email)
    token = reset_token(smtp.wait_for(1)[0])
    stored = client.app.state.db.read_sync(
        lambda conn: conn.execute(select(PasswordResetToken)).one()
    )
    assert token not in str(tuple(stored))
    assert stored.token_hash == token_hash(token)
    assert len(token) >= 43  # 256 random bits, URL-safe


def test_changing_the_password_voids_a_pending_token(
    client: TestClient, alice: Account, smtp: Inbox
) -> None:
    ask(client, alice.email)
    token = reset_token(smtp.wait_for(1)[0])
    body = {"current_password": PASSWORD, "new_password": "changed the usual way"}
    response = client.post("/auth/change-password", json=body, headers=alice.headers)
    assert response.status_code == 204
    assert confirm(client, token) == 400


def test_a_reset_clears_the_failed_logins(client: TestClient, alice: Account, smtp: Inbox) -> None:
    for _ in range(6):
        client.post("/auth/login", json={"email": alice.email, "password": "wrong guess!"})
    locked = client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert locked.status_code == 429
    ask(client, alice.email)
    assert confirm(client, reset_token(smtp.wait_for(1)[0])) == 204
    assert login(client, alice.email, NEW_PASSWORD)


@pytest.mark.parametrize(
    ("password", "problem"),
    [
        ("short", "string_too_short"),
        ("password123", "value_error"),
        ("alice@example.com", "password_personal"),
        ("ALICE", "string_too_short"),
    ],
)
def test_a_weak_password_is_422_and_leaves_the_token_usable(
    client: TestClient, alice: Account, smtp: Inbox, password: str, problem: str
) -> None:
    ask(client, alice.email)
    token = reset_token(smtp.wait_for(1)[0])
    body = {"token": token, "new_password": password}
    response = client.post("/auth/password-reset/confirm", json=body)
    assert response.status_code == 422
    assert response.json()["detail"][0]["type"] == problem
    assert response.json()["detail"][0]["loc"] == ["body", "new_password"]
    assert confirm(client, token) == 204


def test_the_local_part_as_password_is_refused(client: TestClient, smtp: Inbox) -> None:
    signup(client, "longlocalpart@example.com")
    ask(client, "longlocalpart@example.com")
    token = reset_token(smtp.wait_for(1)[0])
    assert confirm(client, token, "LongLocalPart") == 422


@pytest.mark.parametrize("token", ["x", "not-a-real-token-" * 3, "🙂" * 10])
def test_an_unknown_token_is_400(client: TestClient, token: str) -> None:
    body = {"token": token, "new_password": NEW_PASSWORD}
    response = client.post("/auth/password-reset/confirm", json=body)
    assert response.status_code == 400
    assert response.json() == {"detail": "Invalid, expired or already used password reset token"}


@pytest.mark.parametrize(
    "body",
    [
        {"token": "", "new_password": NEW_PASSWORD},
        {"token": "t" * 257, "new_password": NEW_PASSWORD},
        {"token": 12345, "new_password": NEW_PASSWORD},
        {"new_password": NEW_PASSWORD},
        {"token": "abc"},
        {"token": "abc", "new_password": NEW_PASSWORD, "user_id": 1},
    ],
)
def test_a_malformed_confirmation_is_422(client: TestClient, body: dict) -> None:
    assert client.post("/auth/password-reset/confirm", json=body).status_code == 422


@pytest.mark.parametrize(
    "body", [{}, {"email": "not an email"}, {"email": "a@example.com", "extra": 1}, {"email": 7}]
)
def test_a_malformed_request_is_422_and_sends_nothing(
    client: TestClient, smtp: Inbox, body: dict
) -> None:
    assert client.post("/auth/password-reset", json=body).status_code == 422
    assert smtp.messages == []


def test_the_email_is_matched_normalised(client: TestClient, alice: Account, smtp: Inbox) -> None:
    ask(client, "ALICE@Example.COM")
    assert smtp.wait_for(1)[0]["To"] == "alice@example.com"


def test_requests_are_limited_per_email(client: TestClient, alice: Account, smtp: Inbox) -> None:
    for _ in range(5):
        ask(client, alice.email)
    # From another address too: the limit is the email's.
    elsewhere = TestClient(client.app, client=("203.0.113.7", 40000))
    response = elsewhere.post("/auth/password-reset", json={"email": alice.email})
    assert response.status_code == 429
    assert 3500 < int(response.headers["retry-after"]) <= 3600
    assert len(smtp.messages) == 5
    # Another email from that address is still fine.
    other = elsewhere.post("/auth/password-reset", json={"email": "bob@example.com"})
    assert other.status_code == 202


def test_requests_are_limited_per_address(client: TestClient, smtp: Inbox) -> None:
    for n in range(5):
        ask(client, f"user{n}@example.com")
    response = client.post("/auth/password-reset", json={"email": "user5@example.com"})
    assert response.status_code == 429
    assert "retry-after" in response.headers
    elsewhere = TestClient(client.app, client=("203.0.113.8", 40000))
    assert (
        elsewhere.post("/auth/password-reset", json={"email": "user5@example.com"}).status_code
        == 202
    )


def test_html_body_escapes_the_name(client: TestClient, smtp: Inbox) -> None:
    signup(client, "mallory@example.com", name="<b>Mallory</b>")
    ask(client, "mallory@example.com")
    message = smtp.wait_for(1)[0]
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in html_of(message)
    assert "<b>Mallory</b>" not in html_of(message)
    assert "Hello <b>Mallory</b>," in text_of(message)


def test_a_refusing_smtp_server_fails_nothing_and_is_logged_without_the_token(
    client: TestClient, alice: Account, smtp: Inbox, log_lines: list[str]
) -> None:
    smtp.refuse_with = "554 5.7.1 Relaying denied"
    ask(client, alice.email)
    assert smtp.messages == []
    failures = [line for line in log_lines if "could not be sent" in line]
    assert len(failures) == 1
    assert "SMTPDataError" in failures[0]
    assert f"user {alice.id}" in failures[0]
    stored = client.app.state.db.read_sync(
        lambda conn: conn.scalar(select(PasswordResetToken.token_hash))
    )
    assert stored is not None  # a token was issued; it never reached a log
    assert not any("token=" in line for line in app_lines(log_lines))


def test_an_unreachable_smtp_server_fails_nothing(
    client: TestClient, alice: Account, settings: Settings, log_lines: list[str]
) -> None:
    from smtp_server import free_port

    client.app.state.settings = settings.model_copy(update={"smtp_port": free_port()})
    ask(client, alice.email)
    assert any("could not be sent: ConnectionRefusedError" in line for line in log_lines)


def test_no_log_line_carries_the_token(
    client: TestClient, alice: Account, smtp: Inbox, log_lines: list[str]
) -> None:
    ask(client, alice.email)
    token = reset_token(smtp.wait_for(1)[0])
    assert confirm(client, token) == 204
    lines = app_lines(log_lines)
    assert lines
    assert not any(token in line or token_hash(token) in line for line in lines)
    assert any("Email (password reset for user" in line and "sent" in line for line in log_lines)


def test_without_smtp_host_development_writes_the_message_to_the_log(
    client: TestClient, alice: Account, settings: Settings, smtp: Inbox, log_lines: list[str]
) -> None:
    client.app.state.settings = settings.model_copy(
        update={"smtp_host": None, "password_reset_url": None}
    )
    ask(client, alice.email)
    assert smtp.messages == []
    [logged] = [line for line in log_lines if "written here instead of sent" in line]
    assert "alice@example.com" in logged
    # The default link opens the confirm route in this server's /docs; the token follows it.
    link = "http://127.0.0.1:8000/docs?token="
    token = logged.split(link)[1].split("#/auth/auth-confirm-password-reset")[0]
    assert confirm(client, token) == 204


@pytest.mark.usefixtures("fresh_tls")
def test_starttls_and_login_against_a_server_that_requires_both(
    client: TestClient,
    alice: Account,
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: list[str],
) -> None:
    certificate = self_signed_certificate(tmp_path)
    # The client trusts the test's certificate the way an operator points it at a private CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate.cert))
    with smtp_server(tls=certificate.server_context(), login=("mailer", "smtp secret")) as (
        inbox,
        port,
    ):
        secure = settings.model_copy(
            update={
                "smtp_host": "localhost",
                "smtp_port": port,
                "smtp_starttls": True,
                "smtp_user": "mailer",
                "smtp_password": SecretStr("smtp secret"),
            }
        )
        client.app.state.settings = secure
        ask(client, alice.email)
        assert confirm(client, reset_token(inbox.wait_for(1)[0])) == 204

        # A wrong password is refused by the server, and only logged.
        client.app.state.settings = secure.model_copy(update={"smtp_password": SecretStr("wrong")})
        ask(client, alice.email)
        assert len(inbox.messages) == 1
    assert any("could not be sent: SMTPAuthenticationError" in line for line in log_lines)


@pytest.mark.usefixtures("fresh_tls")
def test_an_untrusted_certificate_is_refused(
    client: TestClient, alice: Account, settings: Settings, tmp_path: Path, log_lines: list[str]
) -> None:
    with smtp_server(tls=self_signed_certificate(tmp_path).server_context()) as (inbox, port):
        client.app.state.settings = settings.model_copy(
            update={"smtp_host": "localhost", "smtp_port": port, "smtp_starttls": True}
        )
        ask(client, alice.email)
        assert inbox.messages == []
    assert any("could not be sent: SSLCertVerificationError" in line for line in log_lines)
