"""`python manage.py`: its commands run in this process through `manage.main` (a process of
its own costs about a second), and once as a real process, the way an operator runs it."""

import io
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

import manage as manage_module
from asgi_client import TestClient
from conftest import PASSWORD, login, signup

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    stderr: str


Manage = Callable[..., Result]


@pytest.fixture
def manage(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Manage:
    """`python manage.py ARGS` with DATABASE_URL (and any other variables) set and `stdin`
    piped in, run by its main function in this process."""

    def run(database_url: str, *args: str, stdin: str = "", **env: str) -> Result:
        for name, value in {"DATABASE_URL": database_url, "SECRET_KEY": "x" * 32, **env}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        returncode = manage_module.main(list(args))
        captured = capsys.readouterr()
        return Result(returncode, captured.out, captured.err)

    return run


def test_the_real_command_reads_the_password_from_piped_stdin(
    client: TestClient, database_url: str
) -> None:
    env = {**os.environ, "DATABASE_URL": database_url, "SECRET_KEY": "x" * 32}
    command = [sys.executable, "manage.py", "create-admin", "--email", "Op@Example.com"]
    result = subprocess.run(
        [*command, "--name", "Operator"],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        cwd=REPO,
        env=env,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Created admin op@example.com" in result.stdout
    assert login(client, "op@example.com")["access_token"]


def test_create_admin_reads_the_password_from_stdin(
    manage: Manage, client: TestClient, database_url: str
) -> None:
    result = manage(
        database_url,
        "create-admin",
        "--email",
        "Root@Example.com",
        "--name",
        "Root",
        stdin=PASSWORD + "\n",
    )
    assert result.returncode == 0, result.stderr
    assert "Created admin root@example.com" in result.stdout
    token = login(client, "root@example.com")["access_token"]
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["is_admin"] is True
    assert me["name"] == "Root"


def test_create_admin_promotes_an_existing_user(
    manage: Manage, client: TestClient, database_url: str
) -> None:
    signup(client, "carol@example.com")
    result = manage(database_url, "create-admin", "--email", "carol@example.com", "--name", "C")
    assert result.returncode == 0, result.stderr
    assert "carol@example.com is now an admin" in result.stdout
    token = login(client, "carol@example.com")["access_token"]
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["is_admin"] is True
    assert me["name"] == "Tester"  # an existing account keeps its name and password


def test_create_admin_refuses_a_weak_password(
    manage: Manage, client: TestClient, database_url: str
) -> None:
    result = manage(
        database_url, "create-admin", "--email", "x@example.com", "--name", "X", stdin="short\n"
    )
    assert result.returncode == 2
    assert "at least 8 characters" in result.stderr
    response = client.post("/auth/login", json={"email": "x@example.com", "password": "short"})
    assert response.status_code == 401


def test_create_admin_refuses_a_bad_email(manage: Manage, database_url: str) -> None:
    result = manage(database_url, "create-admin", "--email", "nope", "--name", "X")
    assert result.returncode == 2
    assert "email" in result.stderr


@pytest.mark.parametrize("command", ["create-admin", "seed-demo"])
def test_a_database_that_cannot_be_reached_is_one_line_and_exit_1(
    manage: Manage, tmp_path: Path, command: str
) -> None:
    # A directory cannot be opened as a SQLite database.
    args = ["--email", "a@example.com", "--name", "A"] if command == "create-admin" else []
    result = manage(f"sqlite:///{tmp_path}", command, *args, stdin=PASSWORD + "\n")
    assert result.returncode == 1
    assert result.stderr == "error: the database cannot be reached: unable to open database file\n"


def test_create_admin_migrates_an_empty_database(manage: Manage, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    result = manage(
        url, "create-admin", "--email", "a@example.com", "--name", "A", stdin=PASSWORD + "\n"
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "new.db").exists()


def test_seed_demo_loads_a_catalogue_and_accounts_once(
    manage: Manage, client: TestClient, database_url: str
) -> None:
    first = manage(database_url, "seed-demo")
    assert first.returncode == 0, first.stderr
    assert "demo@example.com / demo password" in first.stdout
    assert manage(database_url, "seed-demo").returncode == 0
    assert len(client.get("/product").json()) == 4
    token = login(client, "demo@example.com", "demo password")["access_token"]
    me = client.get("/auth/me", headers={"Authorization": f"Bearer {token}"}).json()
    assert me["is_admin"] is False
    admin = login(client, "demo-admin@example.com", "demo admin password")["access_token"]
    users = client.get("/auth/users", headers={"Authorization": f"Bearer {admin}"})
    assert users.json()["total"] == 2


def test_seed_demo_refuses_production(manage: Manage, database_url: str) -> None:
    result = manage(
        database_url,
        "seed-demo",
        ENVIRONMENT="production",
        SECRET_KEY="p" * 32,
        SMTP_HOST="smtp.example.com",
        EMAIL_FROM="no-reply@example.com",
        PASSWORD_RESET_URL="https://shop.example.com/reset?token={token}",
    )
    assert result.returncode == 2
    assert "not in production" in result.stderr


def test_openapi_command_writes_the_document(manage: Manage, tmp_path: Path) -> None:
    target = tmp_path / "openapi.json"
    result = manage("sqlite:///unused.db", "openapi", str(target))
    assert result.returncode == 0, result.stderr
    assert '"title": "Orders API"' in target.read_text()


def test_help_lists_each_example_on_its_own_line(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        manage_module.main(["--help"])
    assert exit_info.value.code == 0
    lines = capsys.readouterr().out.splitlines()
    examples = [line.strip() for line in lines if line.strip().startswith("python manage.py")]
    assert [e.split()[2] for e in examples] == [
        "create-admin",
        "seed-demo",
        "deliver-webhooks",
        "openapi",
    ]


def test_create_admin_refuses_the_email_as_password(manage: Manage, database_url: str) -> None:
    result = manage(
        database_url,
        "create-admin",
        "--email",
        "root@example.com",
        "--name",
        "Root",
        stdin="root@example.com\n",
    )
    assert result.returncode == 2
    assert "must not be the email" in result.stderr
