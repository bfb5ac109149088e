"""deploy/nginx.conf.template in front of the real server: nginx refuses what uvicorn would
wait for or read whole (huge headers, huge bodies, stalled clients), passes the rest on, and
tells the app the client address it saw, whatever the client claims in X-Forwarded-For."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

import httpx2
import pytest

from conftest import PASSWORD, report
from tests.system.conftest import HTTP, REPO, Server, concurrently, free_port
from waiting import eventually

# Debian puts nginx in /usr/sbin, which a plain user's PATH may lack.
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")
pytestmark = pytest.mark.skipif(
    NGINX is None, reason="nginx is not installed (CI installs Debian's: apt-get install nginx)"
)

TEMPLATE = REPO / "deploy" / "nginx.conf.template"
HEADER_TIMEOUT = 2  # seconds; the template's production value is 10 s
APP_HEADER_LIMIT = 64 * 1024  # middleware.MAX_HEADER_BYTES: the app's own 431
SIGNUP_LIMIT = 20


def render(listen: str, upstream: str, client_timeout: str) -> str:
    text = TEMPLATE.read_text()
    values = {"@@LISTEN@@": listen, "@@UPSTREAM@@": upstream, "@@CLIENT_TIMEOUT@@": client_timeout}
    for placeholder, value in values.items():
        assert placeholder in text, placeholder
        text = text.replace(placeholder, value)
    assert "@@" not in text, "a placeholder the test does not fill"
    return text


class Nginx:
    """nginx in the foreground (`daemon off`) in its own process group, its prefix (pid, logs,
    temporary files) in a directory of its own."""

    def __init__(self, upstream_port: int, prefix: Path) -> None:
        self.prefix = prefix
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.config = prefix / "nginx.conf"
        self.config.write_text(
            render(f"127.0.0.1:{self.port}", f"127.0.0.1:{upstream_port}", f"{HEADER_TIMEOUT}s")
        )
        self.process: subprocess.Popen | None = None

    def start(self) -> "Nginx":
        command = [NGINX, "-c", str(self.config), "-p", f"{self.prefix}/"]
        with (self.prefix / "nginx.out").open("ab") as out:
            self.process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )
        eventually(
            self._answering, within=15, failure=lambda: f"nginx did not answer:\n{self.logs()}"
        )
        return self

    def _answering(self) -> bool:
        assert self.process is not None
        assert self.process.poll() is None, self.logs()
        try:
            return HTTP.get(self.base_url + "/health", timeout=2).status_code == 200
        except httpx2.TransportError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # fast shutdown; SIGQUIT is graceful
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        self.process = None

    def logs(self) -> str:
        return "\n".join(
            f"--- {name}\n{(self.prefix / name).read_text(errors='replace')[-4000:]}"
            for name in ("nginx.out", "error.log", "access.log")
            if (self.prefix / name).exists()
        )

    def problems(self) -> list[str]:
        """nginx's own failures (a temporary file it cannot write, a crash) and its 5xx."""
        error_log = (self.prefix / "error.log").read_text()
        access_log = (self.prefix / "access.log").read_text()
        return [
            line for line in error_log.splitlines() if re.search(r"\[(crit|alert|emerg)\]", line)
        ] + [line for line in access_log.splitlines() if re.search(r'" 5\d\d ', line)]


@contextmanager
def _proxying(directory: Path) -> Iterator[tuple[Nginx, Server]]:
    """A one-worker server on a fresh SQLite database, and nginx in front of it; neither
    logged a failure once they stop."""
    server = Server(f"sqlite:///{directory / 'proxy.db'}", directory / "server.log", workers=1)
    # Started as root, nginx runs its workers as `nobody`: they must reach their temporary
    # files, which pytest's private tmp_path (mode 0700) would not let them.
    prefix = Path(tempfile.mkdtemp(prefix="orders-nginx-"))
    prefix.chmod(0o755)
    nginx = None
    try:
        # What uvicorn trusts and the limit the signup test counts to, whatever the caller's
        # environment.
        with pytest.MonkeyPatch.context() as env:
            env.delenv("FORWARDED_ALLOW_IPS", raising=False)
            env.setenv("SIGNUP_MAX_PER_HOUR", str(SIGNUP_LIMIT))
            server.start()
        nginx = Nginx(server.port, prefix).start()
        yield nginx, server
        assert nginx.problems() == [], nginx.logs()
        assert server.problems() == []
    finally:
        if nginx is not None:
            nginx.stop()
        server.stop()
        shutil.rmtree(prefix, ignore_errors=True)


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Nginx, Server]]:
    """One pair for the tests of sizes and times, which count nothing: starting them costs
    more than most of those tests."""
    with _proxying(tmp_path_factory.mktemp("proxy")) as pair:
        yield pair


@pytest.fixture
def own_proxied(tmp_path: Path) -> Iterator[tuple[Nginx, Server]]:
    """A pair of the test's own, for the tests that count against a limit (nginx's rate of
    /auth/ requests, the app's signups per address) from its start."""
    with _proxying(tmp_path) as pair:
        yield pair


def access_lines(server: Server) -> list[dict]:
    """The app's access log: one JSON line per request that reached it."""
    lines = []
    for line in server.log_path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("logger") == "orders.access":
            lines.append(entry)
    return lines


def _through_a_marker(nginx: Nginx, server: Server) -> tuple[list[dict], int]:
    """Send a request with an id of our own and wait for its access line: every request
    answered before it has its line by then. The lines, and the marker's index in them."""
    marker = f"marker-{os.urandom(8).hex()}"
    response = HTTP.get(nginx.base_url + "/health", headers={"X-Request-ID": marker})
    assert response.status_code == 200

    def found() -> tuple[list[dict], int] | None:
        lines = access_lines(server)
        for index, line in enumerate(lines):
            if line.get("request_id") == marker:
                return lines, index
        return None

    return eventually(
        found, within=5, every=0.02, failure=lambda: "the marker request left no access line"
    )


def app_log_position(nginx: Nginx, server: Server) -> int:
    """Where the app's access log stands now, every earlier request's line included."""
    _, index = _through_a_marker(nginx, server)
    return index + 1


def reached_the_app_since(nginx: Nginx, server: Server, position: int) -> list[dict]:
    """The access lines of the requests that reached the app since `position`."""
    lines, index = _through_a_marker(nginx, server)
    return lines[position:index]


def send_raw(port: int, request: bytes, timeout: float = 10) -> bytes:
    """Send bytes as they are, read until the server closes the connection."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def get_with_headers(headers: list[tuple[str, str]]) -> bytes:
    lines = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return f"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{lines}\r\n".encode()


def status_and_headers(answer: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers: dict[str, list[str]] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers.setdefault(name.strip().lower(), []).append(value.strip())
    return int(status_line.split()[1]), headers, body


# --- a. a request goes through --------------------------------------------------------------


def test_a_request_goes_through_nginx_without_uvicorns_banner(proxied) -> None:
    nginx, server = proxied
    direct = HTTP.get(server.base_url + "/health")
    assert direct.headers.get_list("server") == ["uvicorn"]  # what nginx has to keep back

    response = HTTP.get(nginx.base_url + "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}
    rid = response.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", rid)
    assert response.headers.get_list("server") == ["nginx"]  # no version, no uvicorn
    assert response.headers["x-content-type-options"] == "nosniff"
    # nginx's access line carries the app's request id, so the two logs can be joined.
    lines, _ = _through_a_marker(nginx, server)
    assert rid in [line.get("request_id") for line in lines]
    assert f"rid={rid}" in (nginx.prefix / "access.log").read_text()


# --- b. limits on size -----------------------------------------------------------------------


def packed_headers() -> list[tuple[str, str]]:
    """Header lines packed to fill nginx's 1 KiB buffer and then 4 of 16 KiB, one line in
    each: 66,433 bytes of names and values, over the app's 64 KiB. With
    `large_client_header_buffers 4 16k` nginx passes them on (and the app answers 431
    itself); with the template's 3 it refuses them."""
    return [("X-Small", "s" * 930)] + [(f"X-Big{i}", "b" * 16368) for i in range(4)]


@pytest.mark.parametrize(
    ("case", "headers"),
    [
        ("one header of 40 KB", [("X-Big", "a" * 40_000)]),
        ("8 headers of 10 KB", [(f"X-Big{i}", "a" * 10_000) for i in range(8)]),
        ("headers packed into the most buffers", packed_headers()),
    ],
)
def test_headers_over_the_limit_are_refused_by_nginx(proxied, case: str, headers) -> None:
    nginx, server = proxied
    seen = app_log_position(nginx, server)
    status, answer_headers, body = status_and_headers(
        send_raw(nginx.port, get_with_headers(headers))
    )
    assert status == 431, (case, status, body)
    assert answer_headers["server"] == ["nginx"]
    assert "x-request-id" not in answer_headers  # nginx answered, not the app
    assert json.loads(body) == {"detail": "Request headers are too large"}
    assert reached_the_app_since(nginx, server, seen) == []
    sent = sum(len(name) + len(value) for name, value in headers)
    report(f"nginx: {case} ({sent:,} bytes) refused with {status}, never reached the app")


def test_headers_nginx_passes_stay_under_the_apps_limit(proxied) -> None:
    """The most the template's buffers hold (1 KiB, then 3 lines of 16 KiB: 50,059 bytes)
    passes, well under the app's 64 KiB: nginx never leaves a refusal to the app."""
    nginx, _ = proxied
    headers = packed_headers()[:-1]
    status, answer_headers, _ = status_and_headers(send_raw(nginx.port, get_with_headers(headers)))
    assert status == 200
    assert "x-request-id" in answer_headers  # the app answered
    assert sum(len(name) + len(value) for name, value in headers) < APP_HEADER_LIMIT * 0.8


def test_bodies_over_1_mib_are_refused_by_nginx(proxied) -> None:
    nginx, server = proxied
    url = nginx.base_url + "/auth/login"
    json_type = {"Content-Type": "application/json"}
    # Over client_body_buffer_size: spooled to client_body_temp/, then passed on whole.
    spooled = HTTP.post(url, content=b'{"email": "' + b"a" * 100_000 + b'"}', headers=json_type)
    assert spooled.status_code == 422
    assert "x-request-id" in spooled.headers

    seen = app_log_position(nginx, server)
    body = b"x" * (1024 * 1024 + 1)
    response = HTTP.post(url, content=body, headers=json_type)
    assert response.status_code == 413
    assert "x-request-id" not in response.headers
    assert response.json() == {"detail": "Request body is larger than 1048576 bytes"}
    assert reached_the_app_since(nginx, server, seen) == []


# --- c. limits on time -----------------------------------------------------------------------


STALLS = {
    "request line": b"GET /hea",
    "headers": b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: ",
}


def test_clients_that_stall_are_disconnected(proxied) -> None:
    """One client stalls in its request line, another in its headers, at the same time."""
    nginx, server = proxied
    seen = app_log_position(nginx, server)

    def stall(beginning: bytes) -> tuple[bytes, float]:
        address = ("127.0.0.1", nginx.port)
        with socket.create_connection(address, timeout=HEADER_TIMEOUT + 5) as sock:
            sock.sendall(beginning)
            started = time.monotonic()
            try:
                answer = sock.recv(65536)  # b"" once nginx closes; a timeout fails the test
            except ConnectionResetError:  # reset_timedout_connection: closed with a RST
                answer = b""
            return answer, time.monotonic() - started

    outcomes = concurrently([partial(stall, sent) for sent in STALLS.values()])
    for (case, sent), (answer, waited) in zip(STALLS.items(), outcomes, strict=True):
        assert answer == b"" or answer.startswith(b"HTTP/1.1 408"), (case, answer[:200])
        assert HEADER_TIMEOUT - 0.5 <= waited <= HEADER_TIMEOUT + 2, (case, waited)
        report(f"nginx: a client stalled after {sent!r} disconnected after {waited:.2f} s")
    assert reached_the_app_since(nginx, server, seen) == []


# --- d. the client address ------------------------------------------------------------------


def test_forged_forwarded_for_does_not_escape_the_signup_limit(own_proxied) -> None:
    """Each signup claims another address; the app counts them all against 127.0.0.1, the
    address nginx saw, so the limit holds. (Were nginx to append to the client's header,
    uvicorn would take the forged address, a new one each time, and all would pass.)"""
    nginx, _ = own_proxied
    url = nginx.base_url + "/auth/signup"

    def signup(n: int) -> httpx2.Response:
        body = {"name": f"Signup {n}", "email": f"s{n}@example.com", "password": PASSWORD}
        forged = [("X-Forwarded-For", f"203.0.113.{n}")]
        if n % 2:  # a second header too: nginx drops every one the client sent
            forged.append(("X-Forwarded-For", f"198.51.100.{n}, 192.0.2.{n}"))
        return HTTP.post(url, json=body, headers=forged)

    statuses = [signup(n).status_code for n in range(1, SIGNUP_LIMIT + 1)]
    assert statuses == [201] * SIGNUP_LIMIT
    refused = signup(SIGNUP_LIMIT + 1)
    assert refused.status_code == 429, refused.text
    # The app's limit (nginx's own 429 has neither an id nor a Retry-After).
    assert "x-request-id" in refused.headers
    assert 3500 < int(refused.headers["retry-after"]) <= 3600
    assert "signups" in refused.json()["detail"]
    report(f"nginx: {SIGNUP_LIMIT} signups with forged X-Forwarded-For were 201, the next 429")


def test_auth_requests_from_one_address_are_rate_limited_by_nginx(own_proxied) -> None:
    nginx, server = own_proxied
    seen = app_log_position(nginx, server)
    with httpx2.Client(base_url=nginx.base_url) as client:
        responses = [client.get("/auth/me") for _ in range(40)]
        assert client.get("/health").status_code == 200  # outside /auth/: not limited
    statuses = [response.status_code for response in responses]
    # The first request and a burst of 20 more pass at once (then one more each 0.2 s).
    assert statuses[:21] == [401] * 21, statuses
    assert 429 in statuses, statuses
    assert set(statuses[21:]) <= {401, 429}, statuses
    refused = next(response for response in responses if response.status_code == 429)
    assert "x-request-id" not in refused.headers  # nginx answered, not the app
    assert refused.json() == {"detail": "Too many requests from this address; slow down"}
    reached = [line["status"] for line in reached_the_app_since(nginx, server, seen)]
    assert sorted(reached) == [200] + [401] * statuses.count(401)
    report(f"nginx: {statuses.count(429)} of 40 quick requests to /auth/ refused with 429")
