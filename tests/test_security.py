"""Password hashing: bounded concurrency, parameters, and upgrades of old hashes on login."""

import asyncio
import time

import pytest
from passlib.context import CryptContext
from sqlalchemy import text

import security
from asgi_client import TestClient
from conftest import CHEAP_HASHING, PASSWORD, TEST_SECRET, Account, AtOnce
from main import create_app
from settings import Settings


def test_hashes_use_argon2id_at_the_owasp_minimum_by_default(monkeypatch) -> None:
    for name in CHEAP_HASHING:
        monkeypatch.delenv(name)
    create_app(Settings(_env_file=None, secret_key=TEST_SECRET, migrate_on_startup=False))

    async def check() -> tuple[str, tuple, tuple]:
        password_hash = await security.hash_password(PASSWORD)
        right = await security.verify_password(PASSWORD, password_hash)
        return password_hash, right, await security.verify_password("wrong", password_hash)

    try:
        password_hash, right, wrong = asyncio.run(check())
    finally:
        security.configure_hashing(memory_kib=64, time_cost=1, parallelism=1, concurrency=1)
    assert password_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert right == (True, None)
    assert wrong == (False, None)


def test_hash_memory_must_cover_its_lanes() -> None:
    with pytest.raises(ValueError, match="at least 8 per lane"):
        Settings(
            _env_file=None,
            secret_key=TEST_SECRET,
            password_hash_memory_kib=16,
            password_hash_parallelism=4,
        )


def test_no_more_hashes_run_at_once_than_allowed(monkeypatch) -> None:
    at_once = AtOnce()

    def slow_hash(_password: str) -> str:
        with at_once.one():
            time.sleep(0.05)
        return "hash"

    monkeypatch.setattr(security.pwd_context, "hash", slow_hash)
    security.hasher.resize(2)

    async def hashes() -> list[str]:
        return await asyncio.gather(*(security.hash_password("x") for _ in range(8)))

    try:
        assert asyncio.run(hashes()) == ["hash"] * 8
    finally:
        security.hasher.resize(1)
    assert at_once.most == 2


def test_login_upgrades_a_hash_made_with_older_parameters(
    client: TestClient, alice: Account
) -> None:
    settings = client.app.state.settings
    current = (
        f"$argon2id$v=19$m={settings.password_hash_memory_kib},"
        f"t={settings.password_hash_time_cost},p={settings.password_hash_parallelism}$"
    )
    weaker = CryptContext(
        schemes=["argon2"], argon2__type="ID", argon2__memory_cost=32, argon2__time_cost=1
    ).hash(PASSWORD)
    assert not weaker.startswith(current)
    client.app.state.db.write_sync(
        lambda conn: conn.execute(
            text("UPDATE users SET password_hash = :h WHERE id = :id"),
            {"h": weaker, "id": alice.id},
        )
    )
    engine = client.app.state.db.engine
    response = client.post("/auth/login", json={"email": alice.email, "password": PASSWORD})
    assert response.status_code == 200
    with engine.connect() as conn:
        stored = conn.execute(
            text("SELECT password_hash FROM users WHERE id = :id"), {"id": alice.id}
        ).scalar_one()
    assert stored != weaker
    assert stored.startswith(current)
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
