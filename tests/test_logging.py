"""Request ids, one structured access line per request, and no secret in any log line."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from fastapi import APIRouter, FastAPI
from fastapi.responses import PlainTextResponse
from starlette.staticfiles import StaticFiles

import logs
from asgi_client import TestClient
from conftest import PASSWORD, Account
from middleware import RequestContext
from waiting import eventually

REPO = Path(__file__).resolve().parents[1]


def access_entries(lines: list[str]) -> list[dict]:
    entries = [json.loads(line) for line in lines]
    return [e for e in entries if e["logger"] == "orders.access"]


def test_a_sane_request_id_is_echoed(client: TestClient) -> None:
    response = client.get("/health", headers={"X-Request-ID": "trace-42.a_b"})
    assert response.headers["x-request-id"] == "trace-42.a_b"


@pytest.mark.parametrize("sent", [None, "has space", "x" * 129, "semi;colon", ""])
def test_other_requests_get_a_fresh_id(client: TestClient, sent: str | None) -> None:
    headers = {} if sent is None else {"X-Request-ID": sent}
    first = client.get("/health", headers=headers).headers["x-request-id"]
    second = client.get("/health", headers=headers).headers["x-request-id"]
    assert len(first) == 32
    assert first != second
    assert first != sent


def test_errors_carry_a_request_id_too(client: TestClient) -> None:
    assert "x-request-id" in client.get("/order").headers  # 401
    assert "x-request-id" in client.put("/order").headers  # 405
    assert "x-request-id" in client.get("/nowhere").headers  # 404


def test_one_access_line_per_request(
    client: TestClient, alice: Account, log_lines: list[str]
) -> None:
    response = client.get("/order/12345", headers={**alice.headers, "X-Request-ID": "req-1"})
    assert response.status_code == 404
    (entry,) = access_entries(log_lines)
    assert entry["request_id"] == "req-1"
    assert entry["method"] == "GET"
    assert entry["path"] == "/order/{order_id}"  # the template, not the id
    assert entry["status"] == 404
    assert entry["user_id"] == alice.id
    assert isinstance(entry["duration_ms"], float)


@pytest.mark.parametrize(
    ("url", "template", "status"),
    [
        ("/openapi.json", "/openapi.json", 200),
        ("/docs", "/docs", 200),
        ("/docs/oauth2-redirect", "/docs/oauth2-redirect", 200),
        ("/redoc", "/redoc", 200),
        ("/static-offline-docs/swagger-ui.css", "/static-offline-docs/{path}", 200),
        ("/static-offline-docs/made-up.js", "/static-offline-docs/{path}", 404),
        ("/nowhere/made-up.js", "<no route>", 404),
    ],
)
def test_docs_and_their_files_log_a_template(
    client: TestClient, log_lines: list[str], url: str, template: str, status: int
) -> None:
    """FastAPI puts only its APIRoutes in scope["route"]: /openapi.json (a Starlette Route)
    and the Swagger UI files (a Mount) must still log a template, never the file asked for."""
    for _ in range(2):  # the first request reads the routes' templates, the second reuses them
        assert client.get(url).status_code == status
    assert [e["path"] for e in access_entries(log_lines)] == [template, template]


def test_routes_and_mounts_of_an_included_router_log_their_prefix(
    log_lines: list[str], tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("a")

    def plain(request: object) -> PlainTextResponse:
        return PlainTextResponse("plain")

    router = APIRouter()
    router.add_route("/plain/{name}", plain)
    router.mount("/files", StaticFiles(directory=tmp_path))
    outer = APIRouter()
    outer.include_router(router, prefix="/inner")
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    app.include_router(outer, prefix="/outer")
    app.add_middleware(RequestContext)
    with TestClient(app) as client:
        assert client.get("/outer/inner/plain/x").text == "plain"
        assert client.get("/outer/inner/files/a.txt").text == "a"
        assert client.get("/outer/inner/nothing").status_code == 404
    assert [e["path"] for e in access_entries(log_lines)] == [
        "/outer/inner/plain/{name}",
        "/outer/inner/files/{path}",
        "<no route>",
    ]


def test_anonymous_requests_log_no_user(client: TestClient, log_lines: list[str]) -> None:
    client.get("/product")
    (entry,) = access_entries(log_lines)
    assert entry["user_id"] is None
    assert entry["path"] == "/product"


def test_no_password_or_token_reaches_any_log(client: TestClient, log_lines: list[str]) -> None:
    body = {"name": "Secretive", "email": "secret@example.com", "password": PASSWORD}
    assert client.post("/auth/signup", json=body).status_code == 201
    wrong = client.post("/auth/login", json={"email": body["email"], "password": "wrong-pw-1"})
    assert wrong.status_code == 401
    tokens = client.post("/auth/login", json={"email": body["email"], "password": PASSWORD})
    form = client.post(
        "/auth/login-form", data={"username": body["email"], "password": PASSWORD}
    ).json()
    pair = tokens.json()
    refreshed = client.post("/auth/refresh", json={"refresh_token": pair["refresh_token"]}).json()
    bearer = {"Authorization": f"Bearer {refreshed['access_token']}"}
    assert client.get("/auth/me", headers=bearer).status_code == 200
    change = {"current_password": PASSWORD, "new_password": "another long password"}
    assert client.post("/auth/change-password", json=change, headers=bearer).status_code == 204
    short = client.post(
        "/auth/signup", json={**body, "email": "s@example.com", "password": "2short"}
    )
    assert short.status_code == 422
    client.post("/auth/logout", json={"refresh_token": refreshed["refresh_token"]})

    output = "\n".join(log_lines)
    assert len(access_entries(log_lines)) == 9
    secrets = [PASSWORD, "wrong-pw-1", "another long password", "2short"]
    secrets += [pair["access_token"], pair["refresh_token"], form["access_token"]]
    secrets += [refreshed["access_token"], refreshed["refresh_token"]]
    for secret in secrets:
        assert secret not in output
    assert "Bearer" not in output
    assert "authorization" not in output.lower()


def test_redaction_masks_anything_shaped_like_a_token() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"
    assert token not in logs.redact(f"failed with {token}")
    assert "s3cret" not in logs.redact("Authorization: Bearer s3cret")
    assert "hunter22" not in logs.redact('{"password": "hunter22"}')
    assert logs.redact("GET /order/{order_id} 200") == "GET /order/{order_id} 200"


def test_text_format_for_development() -> None:
    record = logging.makeLogRecord(
        {"name": "orders.access", "msg": "GET /health 200", "levelname": "INFO", "user_id": 7}
    )
    line = logs.TextFormatter().format(record)
    assert "orders.access: GET /health 200 user=7" in line
    assert not line.lstrip().startswith("{")


def test_uvicorn_with_the_log_config_writes_json_only(tmp_path: Path) -> None:
    """`uvicorn --workers 2 --log-config log_config.json`: the supervisor, which never imports
    main, formats its lines like the app too, and uvicorn's access log stays off."""
    log_path = tmp_path / "server.log"
    env = {
        **os.environ,
        "SECRET_KEY": "x" * 32,
        "DATABASE_URL": f"sqlite:///{tmp_path / 't.db'}",
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
    }
    # The console script, as people run it: `logs` is found through uvicorn's --app-dir.
    uvicorn = Path(sys.executable).with_name("uvicorn")
    command = [str(uvicorn), "main:app", "--port", "0", "--workers", "2"]
    command += ["--log-config", "log_config.json"]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:

        def started() -> bool:
            assert process.poll() is None, log_path.read_text()
            return log_path.read_text().count("Application startup complete") >= 2

        eventually(started, within=60, failure=lambda: f"no start-up:\n{log_path.read_text()}")
        port = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", log_path.read_text())
        assert port is not None, log_path.read_text()
        with urllib.request.urlopen(f"http://127.0.0.1:{port[1]}/health", timeout=10) as answer:
            assert answer.status == 200
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    lines = [line for line in log_path.read_text().splitlines() if line.strip()]
    entries = []
    for line in lines:
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not JSON: {line!r}")
    for entry in entries:
        assert {"ts", "level", "logger", "message"} <= entry.keys(), entry
    messages = [entry["message"] for entry in entries]
    assert any(m.startswith("Started parent process") for m in messages)  # the supervisor
    assert any(m.startswith("Uvicorn running on") for m in messages)
    assert sum(m.startswith("Started server process") for m in messages) == 2  # the workers
    loggers = [entry["logger"] for entry in entries]
    assert loggers.count("orders.access") == 1
    assert "uvicorn.access" not in loggers
