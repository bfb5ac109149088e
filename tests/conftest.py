"""Fixtures: a fresh, migrated database per test, on SQLite and (when TEST_DATABASE_URL is
set) on PostgreSQL, and accounts whose tokens come from the login service."""

import logging
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import Connection, create_engine, text, update
from sqlalchemy.engine import make_url

from asgi_client import PEER, TestClient

os.environ.setdefault("SECRET_KEY", "test-only-secret-key-of-at-least-32-bytes")

import auth_service
import logs
import product_service
import tls
from bench.run import core_times, stolen_pct
from database import Database, upgrade_to_head
from main import create_app
from models import Base, User
from schemas import ProductCreate, UserCreate
from settings import Settings

# A cheap argon2 profile for every app, server and command the tests start (they inherit the
# environment); the tests of the production parameters remove it.
CHEAP_HASHING = {
    "PASSWORD_HASH_MEMORY_KIB": "64",
    "PASSWORD_HASH_TIME_COST": "1",
    "PASSWORD_HASH_PARALLELISM": "1",
}
os.environ.update(CHEAP_HASHING)

TEST_SECRET = "test-only-secret-key-of-at-least-32-bytes"
PASSWORD = "correct horse battery"
BACKENDS = ["sqlite"] + (["postgresql"] if os.environ.get("TEST_DATABASE_URL") else [])
FIGURES: list[str] = []


def report(line: str) -> None:
    """A figure for the CI log (races won, orders kept, requests fuzzed), printed at the end."""
    FIGURES.append(line)


# Seconds spent in each backend's tests (setup, call and teardown), and in those that take
# no backend, so the CI log shows what each database costs the suite.
SECONDS_BY_BACKEND: dict[str, float] = {}


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    params = re.split(r"[-\]]", report.nodeid.partition("[")[2])
    backend = next((b for b in ("sqlite", "postgresql") if b in params), "no backend")
    SECONDS_BY_BACKEND[backend] = SECONDS_BY_BACKEND.get(backend, 0.0) + report.duration


# The machine's CPU times when the session started: the share the hypervisor took from this
# machine during the run (steal time) says whether its times compare with another run's.
CPU_AT_START = core_times("")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    terminalreporter.section("figures")
    terminalreporter.write_line(f"backends: {', '.join(BACKENDS)}")
    spent = ", ".join(
        f"{backend} {seconds:.0f} s" for backend, seconds in sorted(SECONDS_BY_BACKEND.items())
    )
    terminalreporter.write_line(f"test time by backend (setup + call + teardown): {spent}")
    stolen = stolen_pct(CPU_AT_START, core_times(""))
    if stolen is not None:
        terminalreporter.write_line(f"CPU time the host took from this machine: {stolen:.1f} %")
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
def fresh_tls() -> Iterator[None]:
    """The app makes its TLS context once per process, from the environment at that moment: a
    test that changes what the app trusts (SSL_CERT_FILE) starts and ends with none made."""
    tls.client_context.cache_clear()
    yield
    tls.client_context.cache_clear()


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


@pytest.fixture(scope="session")
def empty_tables(migrated_template: str) -> Iterator[Callable[[], None]]:
    """Empty every table of the PostgreSQL template and restart its ids at 1. DELETE and
    setval cost about a millisecond where TRUNCATE took a dozen, on every test."""
    engine = create_engine(migrated_template)
    with engine.connect() as conn:
        sequences = conn.scalars(
            text(
                "SELECT sequence_name FROM information_schema.sequences"
                " WHERE sequence_schema = current_schema()"
            )
        ).all()
    statements = [f'DELETE FROM "{t.name}"' for t in reversed(Base.metadata.sorted_tables)]
    statements.append("SELECT " + ", ".join(f"setval('{s}', 1, false)" for s in sequences))
    reset = text("; ".join(statements))

    def empty() -> None:
        with engine.begin() as conn:
            conn.execute(reset)

    yield empty
    engine.dispose()


@pytest.fixture
def database_url(migrated_template: str, tmp_path: Path, request: pytest.FixtureRequest) -> str:
    if migrated_template.startswith("sqlite"):
        copy = tmp_path / "test.db"
        shutil.copyfile(make_url(migrated_template).database, copy)
        return f"sqlite:///{copy}"
    request.getfixturevalue("empty_tables")()
    return migrated_template


def test_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for an app under test: no .env, a fixed key, no start-up migration, and no
    delivery loop (the webhook tests drive it one round at a time)."""
    return Settings(
        _env_file=None,
        database_url=database_url,
        secret_key=TEST_SECRET,
        migrate_on_startup=False,
        webhook_deliver_in_app=False,
        **overrides,
    )


test_settings.__test__ = False  # a helper, not a test


@pytest.fixture(scope="session")
def session_settings() -> Settings:
    """test_settings, built once: pydantic-settings looks up every field in the environment
    (about 4 ms here), and between tests only the database changes."""
    return test_settings("sqlite://")


@pytest.fixture
def settings(database_url: str, session_settings: Settings) -> Settings:
    return session_settings.model_copy(update={"database_url": database_url})


@pytest.fixture(scope="session")
def app(tmp_path_factory: pytest.TempPathFactory) -> FastAPI:
    """One app for the session. FastAPI prepares an app's routes on its first requests (about
    0.1 s), which, with an app per test, was most of the suite's time. Tests that need other
    app-wide settings (CORS, a login window) build their own with create_app."""
    return create_app(
        test_settings(f"sqlite:///{tmp_path_factory.mktemp('app') / 'replaced-per-test.db'}")
    )


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[dict[tuple[str, int], Database]]:
    """The PostgreSQL tests' Databases, one per URL and pool size, kept for the session: the
    tests share one emptied schema, and a new engine costs about 20 ms of connecting and
    asking the server what it is, on every test."""
    kept: dict[tuple[str, int], Database] = {}
    yield kept
    for database in kept.values():
        database.dispose()


@pytest.fixture
def client(
    app: FastAPI, settings: Settings, request: pytest.FixtureRequest
) -> Iterator[TestClient]:
    """The app on this test's own database and settings (the app reads both from its state)."""
    app.state.settings = settings
    if settings.database_url.startswith("sqlite"):
        app.state.db = Database(settings)
    else:
        kept = request.getfixturevalue("postgres_databases")
        key = (settings.database_url, settings.db_pool_size)
        if key not in kept:
            kept[key] = Database(settings)
        app.state.db = kept[key]
    with TestClient(app) as test_client:  # its shutdown disposes of the database's connections
        yield test_client


def query_plan(database: Database, sql: str, parameters: object) -> str:
    """The database's plan for a statement as the driver gets it, a line per step. On
    PostgreSQL with sequential scans off (for that transaction only): the test tables are
    nearly empty, where a sequential scan is always cheapest, and the question is whether an
    index *can* serve the query."""
    sqlite = database.engine.dialect.name == "sqlite"

    def explain(conn: Connection) -> str:
        if not sqlite:
            conn.exec_driver_sql("SET LOCAL enable_seqscan = off")
        prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN "
        rows = conn.exec_driver_sql(prefix + sql, parameters).all()
        return "\n".join(" ".join(str(value) for value in row) for row in rows)

    return database.read_sync(explain)


class AtOnce:
    """Counts the calls inside `one()` that run at the same time; `most` is the peak."""

    def __init__(self) -> None:
        self.running = 0
        self.most = 0
        self._lock = threading.Lock()

    @contextmanager
    def one(self) -> Iterator[None]:
        with self._lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            yield
        finally:
            with self._lock:
                self.running -= 1


@dataclass
class Account:
    """A signed-up user with the tokens the login service gave them."""

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
    """Signed up and logged in through the services the routes call, as the routes would
    from the test client's address (the routes have tests of their own): two requests fewer
    for every account of every test."""
    database: Database = client.app.state.db
    settings: Settings = client.app.state.settings
    new_user = UserCreate(name="Tester", email=email, password=PASSWORD)
    user = client.call(auth_service.sign_up, database, settings, new_user, PEER[0])
    if admin:
        database.write_sync(
            lambda conn: conn.execute(update(User).where(User.id == user.id).values(is_admin=True))
        )
    tokens = client.call(auth_service.log_in, database, settings, email, PASSWORD)
    return Account(user.id, email, PASSWORD, tokens.access_token, tokens.refresh_token)


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
    """Three active products: 12.50, 3.99 and 0.10, as `POST /product` answers them. Added
    through the service the route calls (the route has tests of its own): three requests
    fewer for most tests."""
    database: Database = client.app.state.db
    return [
        database.write_sync(
            product_service.add, ProductCreate(name=name, price=price), admin.id
        ).model_dump(mode="json")
        for name, price in [("Coffee", "12.50"), ("Tea", "3.99"), ("Sugar", "0.10")]
    ]


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
