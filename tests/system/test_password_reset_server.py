"""Password reset through the real server and a real SMTP server: the answer comes before the
email is sent, and the emailed link works; production will not start without SMTP."""

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import PASSWORD, TEST_SECRET
from smtp_server import Inbox, reset_token, smtp_server
from tests.system.conftest import REPO, Server

NEW_PASSWORD = "reset through the server"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with smtp_server() as running:
        yield running


def test_the_answer_does_not_wait_for_the_email(
    system_database: str, tmp_path: Path, smtp: tuple[Inbox, int]
) -> None:
    inbox, port = smtp
    env = {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_STARTTLS": "false",
        "EMAIL_FROM": "shop@example.com",
        "PASSWORD_RESET_URL": "https://shop.example.com/reset?token={token}",
    }
    server = Server(system_database, tmp_path / "server.log", workers=1, env=env).start()
    try:
        inbox.hold.clear()  # the SMTP server takes the message but does not finish with it
        response = server.request(
            "POST", "/auth/password-reset", json={"email": "admin@example.com"}
        )
        assert response.status_code == 202
        assert server.request("GET", "/health").status_code == 200
        assert inbox.messages == []  # answered while the email was still being sent

        inbox.hold.set()
        token = reset_token(inbox.wait_for(1)[0])
        body = {"token": token, "new_password": NEW_PASSWORD}
        confirmed = server.request("POST", "/auth/password-reset/confirm", json=body)
        assert confirmed.status_code == 204
        server.login("admin@example.com", NEW_PASSWORD)
        old = server.request(
            "POST", "/auth/login", json={"email": "admin@example.com", "password": PASSWORD}
        )
        assert old.status_code == 401
    finally:
        server.stop()
    assert server.problems() == []
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
