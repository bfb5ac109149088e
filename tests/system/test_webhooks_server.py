"""Webhooks through the real server (4 workers, each running the delivery loop) and a real
receiver: events arrive signed and in order, a failing receiver gets its third try, a kill -9
of the whole server mid-load loses no acknowledged order nor its event, and on PostgreSQL two
deliverer processes never send one delivery twice."""

import os
import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import text
from standardwebhooks import Webhook as ReferenceVerifier

from conftest import backend_of, report
from database import make_engine
from tests.system.conftest import FAST_DELIVERY, REPO, WORKERS, Server, concurrently
from waiting import eventually
from webhook_receiver import Receiver, receiver

ONE_ITEM = {"items": [{"product_id": 1, "quantity": 1}]}
TWO_ITEMS = {"items": [{"product_id": 1, "quantity": 2}, {"product_id": 2, "quantity": 1}]}


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


def start(system_database: str, log: Path, workers: int = WORKERS, **env: str) -> Server:
    env = {**FAST_DELIVERY, "SIGNUP_MAX_PER_HOUR": "1000", **env}
    server = Server(system_database, log, workers, env=env).start()
    admin = server.login("admin@example.com")
    for name, price in [("Coffee", "12.50"), ("Tea", "3.99")]:
        body = {"name": name, "price": price}
        response = server.request("POST", "/product", json=body, headers=admin)
        assert response.status_code in (201, 409), response.text  # 409: there after a restart
    return server


def register(server: Server, url: str) -> dict:
    admin = server.login("admin@example.com")
    body = {"url": url, "events": ["order.created", "order.cancelled", "order.finished"]}
    response = server.request("POST", "/webhooks", json=body, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()


def order_ids(requests: list) -> list[int]:
    return [r.json()["data"]["order"]["id"] for r in requests]


def test_events_arrive_signed_and_in_order_and_a_failing_receiver_gets_its_third_try(
    shared_server: Server, hook: Receiver
) -> None:
    server = shared_server
    admin = server.login("admin@example.com")
    webhook = register(server, hook.url)
    try:
        verifier = ReferenceVerifier(webhook["secret"])
        user = server.signup("hooked@example.com")
        placed = []
        for _ in range(12):  # one at a time, each on a new connection: spread over the workers
            response = server.request("POST", "/order", json=ONE_ITEM, headers=user)
            assert response.status_code == 201
            placed.append(response.json()["id"])
        received = hook.wait_for(12)
        assert order_ids(received) == placed  # first attempts in the order of the changes
        for request in received:
            verifier.verify(request.body, request.headers)  # a receiver built from the spec

        hook.fail_next = 2
        response = server.request("POST", "/order", json=ONE_ITEM, headers=user)
        third = hook.wait_for(13)[-1]
        attempts = [
            a for a in hook.attempts if a.headers["webhook-id"] == third.headers["webhook-id"]
        ]
        assert [a.status for a in attempts] == [500, 500, 204]
        # Backs off: 0.3 s, then 0.6 s (±20 % jitter) before the retries.
        assert attempts[1].at - attempts[0].at >= 0.8 * 0.3
        assert attempts[2].at - attempts[1].at >= 0.8 * 0.6
        assert len({a.body for a in attempts}) == 1

        # The receiver keeps a request before it answers: the sender records the attempt after.
        def settled() -> dict | None:
            path = f"/webhooks/{webhook['id']}/deliveries"
            latest = server.request("GET", path, headers=admin).json()["items"][0]
            return latest if latest["status"] != "pending" else None

        latest = eventually(settled, within=10, failure=lambda: "the delivery stayed pending")
        assert latest["attempts"] == 3
        assert latest["status"] == "succeeded"
        assert response.json()["id"] == order_ids([third])[0]
    finally:  # the shared server's later tests place orders of their own
        deleted = server.request("DELETE", f"/webhooks/{webhook['id']}", headers=admin)
        assert deleted.status_code == 204
    report(
        f"{backend_of(shared_server.database_url)}: 13 orders across 4 workers: 13 events "
        "delivered signed, in order; a receiver failing twice got the third try"
    )


def test_a_kill_9_mid_load_loses_no_acknowledged_order_nor_its_event(
    system_database: str, tmp_path: Path, hook: Receiver
) -> None:
    server = start(system_database, tmp_path / "server.log")
    webhook = register(server, hook.url)
    users = [server.signup(f"killed{i}@example.com") for i in range(8)]
    hook.delay = 0.02  # deliveries in flight when the server dies
    acknowledged: dict[int, dict] = {}
    stop = threading.Event()

    def place(user: dict[str, str]) -> None:
        while not stop.is_set():
            try:
                response = server.request("POST", "/order", json=TWO_ITEMS, headers=user)
            except httpx2.TransportError:  # the server died under this request
                return
            if response.status_code == 201:
                acknowledged[response.json()["id"]] = response.json()

    threads = [threading.Thread(target=place, args=(user,)) for user in users]
    for thread in threads:
        thread.start()
    # Killed once orders are going in, with their deliveries going out: after a number of
    # acknowledged orders rather than a time, which a slowed machine stretches.
    eventually(
        lambda: len(acknowledged) > 50,
        within=30,
        failure=lambda: f"{len(acknowledged)} orders acknowledged in 30 s",
    )
    server.stop(signal.SIGKILL)
    stop.set()
    for thread in threads:
        thread.join()
    hook.delay = 0

    if backend_of(system_database) == "sqlite":
        engine = make_engine(system_database, pool_size=1)
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA integrity_check")).scalar() == "ok"
        engine.dispose()

    # One worker is enough to find what the killed server left and deliver it.
    restarted = start(system_database, tmp_path / "restarted.log", workers=1)
    try:
        admin = restarted.login("admin@example.com")
        for order_id, before in acknowledged.items():
            after = restarted.request("GET", f"/order/{order_id}", headers=admin)
            assert after.status_code == 200
            assert after.json() == before
        eventually(
            lambda: set(order_ids(hook.received)) >= set(acknowledged),
            within=60,
            every=0.2,
            failure=lambda: f"undelivered: {set(acknowledged) - set(order_ids(hook.received))}",
        )
        bodies: dict[str, set[bytes]] = defaultdict(set)
        for request in hook.received:
            bodies[request.headers["webhook-id"]].add(request.body)
        assert all(len(sent) == 1 for sent in bodies.values())  # a repeat is the same message
        duplicates = len(hook.received) - len(bodies)
    finally:
        restarted.stop()
    assert restarted.problems() == []
    report(
        f"{backend_of(system_database)}: kill -9 mid-load: {len(acknowledged)} acknowledged "
        "orders, all intact after the restart and every one's event delivered "
        f"({duplicates} sent twice, same id)"
    )
    assert webhook["id"]


def test_two_deliverer_processes_never_send_one_delivery_twice(
    system_database: str, tmp_path: Path
) -> None:
    if backend_of(system_database) != "postgresql":
        pytest.skip("several deliverer processes side by side is a PostgreSQL deployment")
    # The server only takes the orders (one worker is enough); the two deliverers send.
    env = {"WEBHOOK_DELIVER_IN_APP": "false"}
    server = start(system_database, tmp_path / "server.log", workers=1, **env)
    deliverers: list[subprocess.Popen] = []
    with receiver(delay=0.01) as first, receiver(delay=0.01) as second:
        try:
            for hook in (first, second):
                register(server, hook.url)
            users = [server.signup(f"twice{i}@example.com") for i in range(6)]
            responses = concurrently(
                [
                    lambda user=user: server.request("POST", "/order", json=ONE_ITEM, headers=user)
                    for user in users
                    for _ in range(10)
                ]
            )
            assert all(r.status_code == 201 for r in responses)
            process_env = {
                **os.environ,
                **FAST_DELIVERY,
                "DATABASE_URL": system_database,
                "SECRET_KEY": "x" * 32,
            }
            for n in range(2):
                log = (tmp_path / f"deliverer{n}.log").open("wb")
                deliverers.append(
                    subprocess.Popen(
                        [sys.executable, "manage.py", "deliver-webhooks"],
                        cwd=REPO,
                        env=process_env,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )
            for hook in (first, second):
                received = hook.wait_for(60)
                ids = [r.headers["webhook-id"] for r in received]
                assert len(ids) == len(set(ids)) == 60
        finally:
            for process in deliverers:
                process.send_signal(signal.SIGTERM)
            for process in deliverers:
                assert process.wait(timeout=30) == 0
            server.stop()
    assert server.problems() == []
    report("postgresql: 2 deliverer processes, 2 webhooks, 60 events each: each sent once")
