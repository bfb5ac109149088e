"""Races across worker processes: the database settles them, and nothing is lost or doubled."""

import uuid
from collections import Counter

import pytest

from conftest import backend_of, report
from tests.system.conftest import Server, concurrently

ONE_ITEM = {"items": [{"product_id": 1, "quantity": 1}]}


@pytest.fixture
def server(shared_server: Server) -> Server:
    """The tests of this module share one server (see shared_server)."""
    return shared_server


def status_codes(responses: list) -> Counter:
    return Counter(r.status_code for r in responses)


def test_racing_transitions_have_exactly_one_winner(server: Server) -> None:
    user = server.signup("racer@example.com")
    rounds = 5
    for _ in range(rounds):
        order = server.request("POST", "/order", json=ONE_ITEM, headers=user).json()
        actions = ["cancel", "finish"] * 10
        responses = concurrently(
            [
                lambda path=f"/order/{order['id']}/{action}": server.request(
                    "POST", path, headers=user
                )
                for action in actions
            ]
        )
        assert status_codes(responses) == {200: 1, 409: 19}
        history = server.request("GET", f"/order/{order['id']}/history", headers=user).json()
        assert [h["from_status"] for h in history] == [None, "pending"]
    report(
        f"{backend_of(server.database_url)}: {rounds} orders x 20 racing transitions: "
        "exactly one 200 each"
    )


def test_concurrent_idempotent_retries_make_one_order(server: Server) -> None:
    user = server.signup("retry@example.com")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    responses = concurrently(
        [lambda: server.request("POST", "/order", json=ONE_ITEM, headers={**user, **key})] * 10
    )
    assert status_codes(responses) == {201: 1, 200: 9}
    assert len({r.json()["id"] for r in responses}) == 1
    assert server.request("GET", "/order", headers=user).json()["total"] == 1
    report(f"{backend_of(server.database_url)}: 10 concurrent retries of one key: 1 order")


def test_concurrent_signups_with_one_email(server: Server) -> None:
    body = {"name": "Twin", "email": "twin@example.com", "password": "correct horse battery"}
    responses = concurrently([lambda: server.request("POST", "/auth/signup", json=body)] * 10)
    assert status_codes(responses) == {201: 1, 409: 9}
    report(f"{backend_of(server.database_url)}: 10 concurrent signups of one email: one 201")


def test_concurrent_orders_are_all_counted(server: Server) -> None:
    users = [server.signup(f"buyer{i}@example.com") for i in range(5)]
    admin = server.login("admin@example.com")
    before = server.request("GET", "/order", headers=admin).json()["total"]
    responses = concurrently(
        [
            lambda user=user: server.request("POST", "/order", json=ONE_ITEM, headers=user)
            for user in users
            for _ in range(10)
        ]
    )
    assert status_codes(responses) == {201: 50}
    assert len({r.json()["id"] for r in responses}) == 50
    for user in users:
        assert server.request("GET", "/order", headers=user).json()["total"] == 10
    assert server.request("GET", "/order", headers=admin).json()["total"] == before + 50
    report(f"{backend_of(server.database_url)}: 50 concurrent orders by 5 users: 50 stored")


def test_login_throttling_holds_across_workers(server: Server) -> None:
    server.signup("guess@example.com")
    wrong = {"email": "guess@example.com", "password": "not the password"}
    codes = [server.request("POST", "/auth/login", json=wrong).status_code for _ in range(5)]
    assert codes == [401] * 5
    right = {"email": "guess@example.com", "password": "correct horse battery"}
    response = server.request("POST", "/auth/login", json=right)
    assert response.status_code == 429
    assert 0 < int(response.headers["Retry-After"]) <= 900
    report(f"{backend_of(server.database_url)}: 6th login across 4 workers: 429")


def test_a_burst_of_guesses_across_workers_gets_at_most_the_limit_of_401s(server: Server) -> None:
    server.signup("burst@example.com")
    wrong = {"email": "burst@example.com", "password": "not the password"}
    codes = concurrently(
        [lambda: server.request("POST", "/auth/login", json=wrong).status_code] * 50
    )
    assert codes.count(401) <= 5
    assert codes.count(401) + codes.count(429) == 50
    report(
        f"{backend_of(server.database_url)}: 50 concurrent guesses across 4 workers: "
        f"{codes.count(401)} checked, {codes.count(429)} refused"
    )
