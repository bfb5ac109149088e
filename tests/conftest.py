"""Fixtures: a fresh, migrated database per test, on SQLite and (when TEST_DATABASE_URL is
set) on PostgreSQL, and clients that get their tokens from the real login route."""

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-of-at-least-32-bytes")

from database import IMMEDIATE, upgrade_to_head
from main import create_app
from models import Base
from settings import Settings

TEST_SECRET = "test-only-secret-key-of-at-least-32-bytes"
PASSWORD = "correct horse battery"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
FIGURES: list[str] = []


def report(line: str) -> None:
    """A figure for the CI log (races won, orders kept, requests fuzzed), printed at the end."""
    FIGURES.append(line)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.section("figures")
    terminalreporter.write_line(f"backends: {', '.join(BACKENDS)}")
    for line in FIGURES:
        terminalreporter.write_line(line)


def backend_of(url: str) -> str:
    return "sqlite" if url.startswith("sqlite") else "postgresql"


def postgres_url(schema: str) -> str:
    """The PostgreSQL test URL, pointed at a schema of our own via search_path."""
    url = make_url(os.environ["TEST_DATABASE_URL"])
    return url.update_query_dict({"options": f"-csearch_path={schema}"}).render_as_string(
        hide_password=False
    )


@contextmanager
def empty_database(backend: str, directory: Path) -> Iterator[str]:
    """The URL of a database with no tables: a new SQLite file, or a new PostgreSQL schema."""
    if backend == "sqlite":
        yield f"sqlite:///{directory / f'{uuid.uuid4().hex[:8]}.db'}"
        return
    schema = f"test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(os.environ["TEST_DATABASE_URL"])
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield postgres_url(schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def fresh_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database on the backend of the current parameter."""
    with empty_database(getattr(request, "param", "sqlite"), tmp_path) as url:
        yield url


@pytest.fixture(scope="session", params=BACKENDS)
def migrated_template(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """One database per backend, migrated once per test session and reset for each test."""
    with empty_database(request.param, tmp_path_factory.mktemp("template")) as url:
        upgrade_to_head(url)
        yield url


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path) -> str:
    if migrated_template.startswith("sqlite"):
        copy = tmp_path / "test.db"
        shutil.copyfile(make_url(migrated_template).database, copy)
        return f"sqlite:///{copy}"
    engine = create_engine(migrated_template)
    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return migrated_template


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(
        _env_file=None,
        database_url=database_url,
        secret_key=TEST_SECRET,
        migrate_on_startup=False,
    )


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@dataclass
class Account:
    """A signed-up user with the tokens the real login route gave them."""

    id: int
    email: str
    password: str
    access_token: str
    refresh_token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


def signup(client: TestClient, email: str, password: str = PASSWORD, name: str = "Tester") -> int:
    response = client.post(
        "/auth/signup", json={"name": name, "email": email, "password": password}
    )
    assert response.status_code == 201, response.text
    return response.json()["id"]


def login(client: TestClient, email: str, password: str = PASSWORD) -> dict:
    response = client.post("/auth/login", json={"email": email, "password": password})
    assert response.status_code == 200, response.text
    return response.json()


def make_account(client: TestClient, email: str, *, admin: bool = False) -> Account:
    user_id = signup(client, email)
    if admin:
        db = client.app.state.db
        with db.engine.execution_options(**{IMMEDIATE: True}).begin() as conn:
            conn.execute(text("UPDATE users SET is_admin = true WHERE id = :id"), {"id": user_id})
    tokens = login(client, email)
    return Account(user_id, email, PASSWORD, tokens["access_token"], tokens["refresh_token"])


@pytest.fixture
def alice(client: TestClient) -> Account:
    return make_account(client, "alice@example.com")


@pytest.fixture
def bob(client: TestClient) -> Account:
    return make_account(client, "bob@example.com")


@pytest.fixture
def admin(client: TestClient) -> Account:
    return make_account(client, "admin@example.com", admin=True)


@pytest.fixture
def products(client: TestClient, admin: Account) -> list[dict]:
    """Three active products: 12.50, 3.99 and 0.10."""
    created = []
    for name, price in [("Coffee", "12.50"), ("Tea", "3.99"), ("Sugar", "0.10")]:
        response = client.post(
            "/product", json={"name": name, "price": price}, headers=admin.headers
        )
        assert response.status_code == 201, response.text
        created.append(response.json())
    return created
