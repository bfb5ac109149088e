"""Password reset through the real server and a real SMTP server: the answer comes before the
email is sent, and the emailed link works; production will not start without SMTP."""

import os
import subprocess
import sys
from pathlib import Path

from conftest import PASSWORD, TEST_SECRET, backend_of
from smtp_server import Inbox, reset_token
from tests.system.conftest import REPO, Server

NEW_PASSWORD = "reset through the server"


def test_the_answer_does_not_wait_for_the_email(
    shared_server: Server, shared_inbox: tuple[Inbox, int]
) -> None:
    server, (inbox, _) = shared_server, shared_inbox
    email = f"reset-{backend_of(server.database_url)}@example.com"
    server.signup(email)
    sent_before = len(inbox.messages)
    inbox.hold.clear()  # the SMTP server takes the message but does not finish with it
    try:
        response = server.request("POST", "/auth/password-reset", json={"email": email})
        assert response.status_code == 202
        assert server.request("GET", "/health").status_code == 200
        assert len(inbox.messages) == sent_before  # answered while the email was being sent
    finally:
        inbox.hold.set()

    message = inbox.wait_for(sent_before + 1)[-1]
    assert message["To"] == email
    token = reset_token(message)
    body = {"token": token, "new_password": NEW_PASSWORD}
    confirmed = server.request("POST", "/auth/password-reset/confirm", json=body)
    assert confirmed.status_code == 204
    server.login(email, NEW_PASSWORD)
    old = server.request("POST", "/auth/login", json={"email": email, "password": PASSWORD})
    assert old.status_code == 401
    assert token not in server.log_path.read_text()


def test_production_refuses_to_start_without_smtp(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "ENVIRONMENT": "production",
        "SECRET_KEY": TEST_SECRET,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'prod.db'}",
    }
    for name in ("SMTP_HOST", "EMAIL_FROM", "PASSWORD_RESET_URL"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "uvicorn", "main:app", "--port", "0"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "SMTP_HOST, EMAIL_FROM, PASSWORD_RESET_URL must be set in production" in result.stderr
