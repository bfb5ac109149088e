"""System tests: the real server as a user deploys it (`uvicorn main:app --workers 4`),
driven over HTTP, on SQLite and (with TEST_DATABASE_URL) PostgreSQL."""

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest

from conftest import BACKENDS, PASSWORD, TEST_SECRET, empty_database
from manage import create_admin
from settings import Settings
from smtp_server import Inbox, smtp_server
from waiting import eventually

REPO = Path(__file__).resolve().parents[2]
WORKERS = 4
# The one HTTP client of the system tests (safe to share between threads). A client of its
# own per request read the CA bundle each time: tens of milliseconds of the test process's
# CPU, hundreds of times. None of its connections is kept: each request opens its own, so
# a server's load spreads over its workers, as when every request had a client of its own.
HTTP = httpx2.Client(timeout=60, limits=httpx2.Limits(max_keepalive_connections=0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`uvicorn main:app --workers N` in its own process group, logging to a file."""

    def __init__(
        self,
        database_url: str,
        log_path: Path,
        workers: int = WORKERS,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database_url = database_url
        self.env = env or {}
        self.log_path = log_path
        self.workers = workers
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None
        self._ready_lines = 0

    def start(self) -> "Server":
        env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "SECRET_KEY": TEST_SECRET,
            "LOG_LEVEL": "INFO",
            **self.env,
        }
        command = [sys.executable, "-m", "uvicorn", "main:app", "--port", str(self.port)]
        command += ["--workers", str(self.workers)]
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        # Ready when every worker (not only the first to bind) has finished its start-up, and
        # the port takes connections: a single uvicorn process binds it only after start-up.
        self._ready_lines += self.workers
        eventually(
            self._ready,
            within=60,
            every=0.1,
            failure=lambda: f"server did not start:\n{self.log_path.read_text()}",
        )
        return self

    def _ready(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.log_path.read_text()
        started = self.log_path.read_text().count("Application startup complete")
        return started >= self._ready_lines and self._accepting()

    def _accepting(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            self.process.wait(timeout=30)
        self.process = None

    def request(self, method: str, path: str, **kwargs) -> httpx2.Response:
        """One request on a fresh connection, so the load spreads over every worker."""
        headers = {"Connection": "close", **kwargs.pop("headers", {})}
        return HTTP.request(method, self.base_url + path, headers=headers, **kwargs)

    def login(self, email: str, password: str = PASSWORD) -> dict[str, str]:
        body = {"email": email, "password": password}
        response = self.request("POST", "/auth/login", json=body)
        assert response.status_code == 200, response.text
        return {"Authorization": f"Bearer {response.json()['access_token']}"}

    def signup(self, email: str) -> dict[str, str]:
        body = {"name": "Load", "email": email, "password": PASSWORD}
        response = self.request("POST", "/auth/signup", json=body)
        assert response.status_code == 201, response.text
        return self.login(email)

    def problems(self) -> list[str]:
        """Log lines that show a 5xx answer, a crash, or a locked database."""
        return [
            line
            for line in self.log_path.read_text().splitlines()
            if "database is locked" in line
            or "Traceback" in line
            or re.search(r'"status": 5\d\d', line)
        ]


def concurrently(calls: list[Callable[[], object]]) -> list:
    """Run the calls at once, each in its own thread; results in order."""
    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def _prepare(url: str) -> None:
    """Migrate (when a server has not), and add the admin (admin@example.com)."""
    settings = Settings(_env_file=None, database_url=url, secret_key=TEST_SECRET)
    create_admin(settings, "admin@example.com", "Admin", password_source=lambda: PASSWORD)


@pytest.fixture(params=BACKENDS)
def system_database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated database holding an admin (admin@example.com)."""
    with empty_database(request.param, tmp_path) as url:
        _prepare(url)
        yield url


@contextmanager
def _serving(
    url: str, log_path: Path, env: dict[str, str] | None = None, *, empty: bool = False
) -> Iterator[Server]:
    """A running 4-worker server with two products (ids 1 and 2), and no 5xx in its log once
    it stops. On an `empty` database, its workers migrate it, and the admin is added then."""
    running = Server(url, log_path, env=env).start()
    try:
        if empty:
            _prepare(url)
        admin = running.login("admin@example.com")
        for name, price in [("Coffee", "12.50"), ("Tea", "3.99")]:
            body = {"name": name, "price": price}
            response = running.request("POST", "/product", json=body, headers=admin)
            assert response.status_code == 201, response.text
        yield running
    finally:
        running.stop()
    assert running.problems() == []


@pytest.fixture
def server(system_database: str, tmp_path: Path) -> Iterator[Server]:
    """A server of the test's own, on a database of its own."""
    with _serving(system_database, tmp_path / "server.log") as running:
        yield running


# Webhook deliveries at test speed: polled, retried and leased in fractions of the defaults.
FAST_DELIVERY = {
    "WEBHOOK_POLL_SECONDS": "0.2",
    "WEBHOOK_RETRY_BASE_SECONDS": "0.3",
    "WEBHOOK_LEASE_SECONDS": "3",
}


def smtp_env(port: int) -> dict[str, str]:
    """A server's settings for sending its emails to the test SMTP server on `port`."""
    return {
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(port),
        "SMTP_STARTTLS": "false",
        "EMAIL_FROM": "shop@example.com",
        "PASSWORD_RESET_URL": "https://shop.example.com/reset?token={token}",
    }


@pytest.fixture(scope="session")
def shared_inbox() -> Iterator[tuple[Inbox, int]]:
    """The SMTP server the shared servers send their emails to (both backends': a test tells
    its own messages by their recipient)."""
    with smtp_server() as running:
        yield running


@pytest.fixture(scope="session", params=BACKENDS)
def shared_server(
    request: pytest.FixtureRequest,
    tmp_path_factory: pytest.TempPathFactory,
    shared_inbox: tuple[Inbox, int],
) -> Iterator[Server]:
    """One server for the tests that keep out of each other's way: each signs up users of its
    own and counts only what it made (a test that registers a webhook deletes it). Starting 4
    workers costs seconds; the signup limit is raised since those tests together sign up many
    users from one address, webhooks are delivered at test speed, and emails go to
    `shared_inbox`. It starts on an empty database, as a first deployment does: test_startup
    checks that its workers migrated it once."""
    directory = tmp_path_factory.mktemp("shared-server")
    with empty_database(request.param, directory) as url:
        env = {"SIGNUP_MAX_PER_HOUR": "1000", **FAST_DELIVERY, **smtp_env(shared_inbox[1])}
        with _serving(url, directory / "server.log", env, empty=True) as running:
            yield running
