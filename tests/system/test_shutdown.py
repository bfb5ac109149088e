"""SIGTERM, as a deployment stops the server: the request in flight finishes, no new one is
taken, background loops stop, connections close, and every worker exits cleanly."""

import json
import os
import signal
import socket
import time
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import func, select

from conftest import backend_of, report
from database import Database
from models import Order
from settings import Settings
from tests.system.conftest import HTTP, Server

ONE_ITEM = {"items": [{"product_id": 1, "quantity": 1}]}


def test_sigterm_lets_the_request_in_flight_finish(system_database: str, tmp_path: Path) -> None:
    server = Server(system_database, tmp_path / "server.log", workers=2).start()
    admin = server.login("admin@example.com")
    product = server.request(
        "POST", "/product", json={"name": "Tea", "price": "3.99"}, headers=admin
    )
    assert product.status_code == 201

    body = json.dumps(ONE_ITEM).encode()
    head = (
        f"POST /order HTTP/1.1\r\nHost: 127.0.0.1\r\n{_header(admin)}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as client:
        client.sendall(head + body[:5])  # the request is in a worker, waiting for its body
        time.sleep(0.5)
        assert server.process is not None
        os.killpg(server.process.pid, signal.SIGTERM)
        time.sleep(0.5)
        with pytest.raises(httpx2.TransportError):  # no new connection is taken
            HTTP.get(server.base_url + "/health", timeout=1)
        client.sendall(body[5:])
        answer = client.recv(65536).decode()
    assert answer.startswith("HTTP/1.1 201"), answer
    assert server.process.wait(timeout=30) == 0

    log = server.log_path.read_text()
    assert log.count("Application shutdown complete") == 2  # every worker's lifespan ended
    assert server.problems() == []
    settings = Settings(_env_file=None, database_url=system_database, secret_key="x" * 32)
    database = Database(settings)
    try:
        stored = database.read_sync(
            lambda conn: conn.scalar(select(func.count()).select_from(Order))
        )
    finally:
        database.dispose()
    assert stored == 1
    report(f"{backend_of(system_database)}: SIGTERM mid-request: answered 201, clean exit")


def _header(authorization: dict[str, str]) -> str:
    return "\r\n".join(f"{name}: {value}" for name, value in authorization.items())
