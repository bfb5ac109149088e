"""Password hashing: bounded concurrency, parameters, and upgrades of old hashes on login."""

import threading
import time

from fastapi.testclient import TestClient
from passlib.context import CryptContext
from sqlalchemy import text

import security
from conftest import PASSWORD, Account
from database import IMMEDIATE


def test_hashes_use_argon2id_at_the_owasp_minimum() -> None:
    password_hash = security.hash_password(PASSWORD)
    assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert security.verify_password(PASSWORD, password_hash) == (True, None)
    assert security.verify_password("wrong password", password_hash) == (False, None)


def test_no_more_hashes_run_at_once_than_allowed(monkeypatch) -> None:
    running = peak = 0
    lock = threading.Lock()

    def slow_hash(_password: str) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.05)
        with lock:
            running -= 1
        return "hash"

    monkeypatch.setattr(security.pwd_context, "hash", slow_hash)
    security.limit_hash_concurrency(2)
    try:
        threads = [threading.Thread(target=security.hash_password, args=("x",)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        security.limit_hash_concurrency(1)
    assert peak == 2


def test_login_upgrades_a_hash_made_with_older_parameters(
    client: TestClient, alice: Account
) -> None:
    weaker = CryptContext(
        schemes=["argon2"], argon2__type="ID", argon2__memory_cost=8192, argon2__time_cost=1
    ).hash(PASSWORD)
    engine = client.app.state.db.engine.execution_options(**{IMMEDIATE: True})
    with engine.begin() as conn:
        conn.execute(
            text("UPDATE users SET password_hash = :h WHERE id = :id"),
            {"h": weaker, "id": alice.id},
        )
    response = client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert response.status_code == 200
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": alice.id}
        ).scalar_one()
    assert stored != weaker
    assert stored.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    # A hash with the current parameters is left alone.
    assert (
        client.post("/auth/login", json={"email": alice.email, "password": PASSWORD}).status_code
        == 200
    )
    with engine.connect() as conn:
        again = conn.execute(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": alice.id}
        ).scalar_one()
    assert again == stored
