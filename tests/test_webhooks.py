"""Order events and webhooks: the routes, the outbox, and delivery to a real local receiver
(the delivery loop is driven one round at a time here; tests/system/test_webhooks_server.py
runs it in the real server and in `manage.py deliver-webhooks`)."""

import asyncio
import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import Connection, event, func, insert, select, update
from sqlalchemy.exc import OperationalError

import webhook_delivery
import webhook_signing
from asgi_client import TestClient
from certificates import self_signed_certificate
from conftest import Account, query_plan
from database import Database
from models import DeliveryStatus, Webhook, WebhookAttempt, WebhookDelivery, WebhookEvent, utcnow
from settings import Environment, Settings
from webhook_delivery import Deliverer, backoff_seconds
from webhook_receiver import Receiver, receiver

ALL_EVENTS = ["order.created", "order.updated", "order.cancelled", "order.finished"]


@pytest.fixture
def hook() -> Iterator[Receiver]:
    with receiver() as running:
        yield running


def register(client: TestClient, admin: Account, url: str, events: list[str] | None = None) -> dict:
    body = {"url": url, "events": events or ALL_EVENTS, "description": "test receiver"}
    response = client.post("/webhooks", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()


def deliver(client: TestClient, settings: Settings | None = None) -> int:
    """One round of the delivery loop, as a worker runs it."""
    state = client.app.state
    return asyncio.run(Deliverer(state.db, settings or state.settings).run_once())


def place_order(client: TestClient, account: Account, product_id: int) -> dict:
    body = {"items": [{"product_id": product_id, "quantity": 2}]}
    response = client.post("/order", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()


def delivery_log(client: TestClient, admin: Account, webhook: dict) -> dict:
    """GET /webhooks/{id}/deliveries: the page, newest first."""
    response = client.get(f"/webhooks/{webhook['id']}/deliveries", headers=admin.headers)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def public_loopback(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every name resolves to 127.0.0.1, taken as a public address, so that production's
    address guard lets a local receiver through; the names looked up, in order."""
    import webhook_urls

    lookups: list[str] = []

    async def resolve(host: str, _port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"]

    monkeypatch.setattr(webhook_urls, "resolve", resolve)
    monkeypatch.setattr(webhook_urls, "is_allowed", lambda _address: True)
    return lookups


def count(client: TestClient, model: type) -> int:
    return client.app.state.db.read_sync(
        lambda conn: conn.scalar(select(func.count()).select_from(model))
    )


# --- the routes -------------------------------------------------------------------------------


def test_an_admin_registers_a_webhook_and_sees_its_secret_once(
    client: TestClient, admin: Account
) -> None:
    created = register(client, admin, "https://hooks.example.com/orders", ["order.created"])
    assert created["secret"].startswith("whsec_")
    assert set(created) == {
        "id", "url", "events", "description", "is_active", "created_at", "secret"
    }  # fmt: skip
    assert created["events"] == ["order.created"]
    assert created["is_active"] is True
    listed = client.get("/webhooks", headers=admin.headers).json()
    assert [w["id"] for w in listed] == [created["id"]]
    assert "secret" not in listed[0]
    one = client.get(f"/webhooks/{created['id']}", headers=admin.headers).json()
    assert "secret" not in one
    assert one["url"] == "https://hooks.example.com/orders"


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_customers_and_strangers_are_refused(
    client: TestClient, alice: Account, method: str
) -> None:
    body = {"url": "https://hooks.example.com/x", "events": ["order.created"]}
    kwargs = {"json": body} if method == "POST" else {}
    assert client.request(method, "/webhooks", **kwargs).status_code == 401
    response = client.request(method, "/webhooks", headers=alice.headers, **kwargs)
    assert response.status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://hooks.example.com/x", "events": ["order.created"]},
        {"url": "hooks.example.com/x", "events": ["order.created"]},
        {"url": "https://user:pass@hooks.example.com/x", "events": ["order.created"]},
        {"url": "https://hooks.example.com/x", "events": ["order.shipped"]},
        {"url": "https://hooks.example.com/x", "events": []},
        {"url": "https://hooks.example.com/x"},
        {"url": "https://hooks.example.com/x", "events": ["order.created"], "secret": "mine"},
        {"url": "https://hooks.example.com/" + "x" * 2000, "events": ["order.created"]},
    ],
)
def test_bad_registrations_are_422(client: TestClient, admin: Account, body: dict) -> None:
    assert client.post("/webhooks", json=body, headers=admin.headers).status_code == 422


def test_a_webhook_is_changed_rotated_and_deleted(client: TestClient, admin: Account) -> None:
    created = register(client, admin, "https://hooks.example.com/a")
    path = f"/webhooks/{created['id']}"
    changed = client.patch(
        path, json={"events": ["order.finished"], "is_active": False}, headers=admin.headers
    ).json()
    assert changed["events"] == ["order.finished"]
    assert changed["is_active"] is False
    assert changed["secret"] is None
    rotated = client.patch(path, json={"rotate_secret": True}, headers=admin.headers).json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != created["secret"]
    assert rotated_response_headers_no_store(client, admin, path)
    assert client.patch(path, json={"url": "nope"}, headers=admin.headers).status_code == 422
    assert client.patch(path, json={"url": None}, headers=admin.headers).status_code == 422
    assert client.delete(path, headers=admin.headers).status_code == 204
    assert client.get(path, headers=admin.headers).status_code == 404
    assert client.delete(path, headers=admin.headers).status_code == 404
    assert client.patch(path, json={}, headers=admin.headers).status_code == 404
    assert client.get(f"{path}/deliveries", headers=admin.headers).status_code == 404


def test_production_refuses_urls_into_the_private_network(
    client: TestClient, admin: Account, settings: Settings
) -> None:
    client.app.state.settings = settings.model_copy(update={"environment": Environment.production})
    for url in ["http://127.0.0.1:9/x", "http://10.1.2.3/x", "http://169.254.169.254/latest"]:
        response = client.post(
            "/webhooks", json={"url": url, "events": ["order.created"]}, headers=admin.headers
        )
        assert response.status_code == 422, url
        assert response.json()["detail"][0]["loc"] == ["body", "url"]
    allowed = settings.model_copy(
        update={"environment": Environment.production, "webhook_allow_private_urls": True}
    )
    client.app.state.settings = allowed
    register(client, admin, "http://127.0.0.1:9/x")


# --- the outbox -----------------------------------------------------------------------------


def test_every_order_change_records_its_event_with_the_order_as_answered(
    client: TestClient, admin: Account, alice: Account, products: list[dict]
) -> None:
    register(client, admin, "https://hooks.example.com/all")
    order = place_order(client, alice, products[0]["id"])
    added = client.post(
        f"/order/{order['id']}/items",
        json={"product_id": products[1]["id"], "quantity": 1},
        headers=alice.headers,
    ).json()
    cancelled = client.post(f"/order/{order['id']}/cancel", headers=alice.headers).json()
    second = place_order(client, alice, products[0]["id"])
    finished = client.post(f"/order/{second['id']}/finish", headers=alice.headers).json()

    events = client.app.state.db.read_sync(
        lambda conn: conn.execute(
            select(WebhookEvent.type, WebhookEvent.body).order_by(WebhookEvent.id)
        ).all()
    )
    assert [str(t) for t, _ in events] == [
        "order.created",
        "order.updated",
        "order.cancelled",
        "order.created",
        "order.finished",
    ]
    bodies = [json.loads(body) for _, body in events]
    assert [b["data"]["order"] for b in bodies] == [order, added, cancelled, second, finished]
    assert all(
        b["id"].startswith("evt_") and b["type"] == str(t)
        for b, (t, _) in zip(bodies, events, strict=True)
    )
    assert count(client, WebhookDelivery) == 5


def test_a_refused_change_records_no_event(
    client: TestClient, admin: Account, alice: Account, products: list[dict]
) -> None:
    register(client, admin, "https://hooks.example.com/all")
    order = place_order(client, alice, products[0]["id"])
    client.post(f"/order/{order['id']}/cancel", headers=alice.headers)
    assert client.post(f"/order/{order['id']}/finish", headers=alice.headers).status_code == 409
    body = {"items": [{"product_id": 999, "quantity": 1}]}
    assert client.post("/order", json=body, headers=alice.headers).status_code == 422
    assert count(client, WebhookEvent) == 2


def test_an_idempotent_replay_records_nothing_again(
    client: TestClient, alice: Account, products: list[dict]
) -> None:
    body = {"items": [{"product_id": products[0]["id"], "quantity": 1}]}
    headers = {**alice.headers, "Idempotency-Key": "replay-1"}
    assert client.post("/order", json=body, headers=headers).status_code == 201
    assert client.post("/order", json=body, headers=headers).status_code == 200
    assert count(client, WebhookEvent) == 1


def test_events_are_recorded_without_webhooks_and_fan_out_by_subscription(
    client: TestClient, admin: Account, alice: Account, products: list[dict]
) -> None:
    place_order(client, alice, products[0]["id"])
    assert count(client, WebhookEvent) == 1
    assert count(client, WebhookDelivery) == 0
    register(client, admin, "https://a.example.com/", ["order.created"])
    register(client, admin, "https://b.example.com/", ["order.finished"])
    inactive = register(client, admin, "https://c.example.com/", ["order.created"])
    client.patch(f"/webhooks/{inactive['id']}", json={"is_active": False}, headers=admin.headers)
    place_order(client, alice, products[0]["id"])
    assert count(client, WebhookDelivery) == 1  # only the active subscriber of order.created


# --- delivery -------------------------------------------------------------------------------


def test_deliveries_arrive_signed_in_order_and_are_logged(
    client: TestClient, admin: Account, alice: Account, products: list[dict], hook: Receiver
) -> None:
    webhook = register(client, admin, hook.url)
    orders = [place_order(client, alice, products[0]["id"]) for _ in range(3)]
    assert deliver(client) == 3
    received = hook.wait_for(3)
    assert [r.json()["data"]["order"]["id"] for r in received] == [o["id"] for o in orders]
    for request in received:
        assert request.headers["content-type"] == "application/json"
        assert webhook_signing.verify(webhook["secret"], request.headers, request.body)
        assert request.headers["webhook-id"] == request.json()["id"]
    assert deliver(client) == 0  # nothing left

    log = delivery_log(client, admin, webhook)
    assert log["total"] == 3
    assert [d["status"] for d in log["items"]] == ["succeeded"] * 3
    newest = log["items"][0]
    assert newest["event_id"] == received[-1].headers["webhook-id"]
    assert newest["event_type"] == "order.created"
    assert newest["attempts"] == 1
    assert newest["last_status_code"] == 204
    assert newest["next_attempt_at"] is None
    assert newest["delivered_at"] is not None


def test_a_failing_receiver_gets_retried_with_backoff_and_the_same_message(
    client: TestClient, admin: Account, alice: Account, products: list[dict], hook: Receiver
) -> None:
    webhook = register(client, admin, hook.url)
    place_order(client, alice, products[0]["id"])
    hook.fail_next = 2
    for attempt in range(1, 4):
        assert deliver(client) == 1
        make_due(client)
        log = delivery_log(client, admin, webhook)
        assert log["items"][0]["attempts"] == attempt
    attempts = hook.attempts
    assert [a.status for a in attempts] == [500, 500, 204]
    assert len({a.headers["webhook-id"] for a in attempts}) == 1
    assert len({a.body for a in attempts}) == 1
    delivery = log["items"][0]
    assert delivery["status"] == "succeeded"
    assert delivery["last_status_code"] == 204
    logged = client.app.state.db.read_sync(
        lambda conn: conn.execute(
            select(WebhookAttempt.status_code, WebhookAttempt.error).order_by(WebhookAttempt.id)
        ).all()
    )
    assert [tuple(row) for row in logged] == [(500, "HTTP 500"), (500, "HTTP 500"), (204, None)]


def make_due(client: TestClient) -> None:
    """Skip the back-off: every pending delivery is due now."""
    client.app.state.db.write_sync(
        lambda conn: conn.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.status == DeliveryStatus.pending)
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    )


def test_a_retry_waits_its_backoff_and_does_not_hold_back_later_events(
    client: TestClient, admin: Account, alice: Account, products: list[dict], hook: Receiver
) -> None:
    webhook = register(client, admin, hook.url)
    first = place_order(client, alice, products[0]["id"])
    hook.fail_next = 1
    assert deliver(client) == 1
    second = place_order(client, alice, products[0]["id"])
    assert deliver(client) == 1  # the second event; the first waits for its retry
    assert [r.json()["data"]["order"]["id"] for r in hook.received] == [second["id"]]
    log = delivery_log(client, admin, webhook)
    retry = log["items"][1]
    assert retry["status"] == "pending"
    assert retry["last_error"] == "HTTP 500"
    wait = datetime.fromisoformat(retry["next_attempt_at"]) - utcnow()
    assert timedelta(seconds=7) < wait <= timedelta(seconds=12)  # 10 s base, ±20 % jitter
    make_due(client)
    assert deliver(client) == 1
    assert [r.json()["data"]["order"]["id"] for r in hook.received] == [second["id"], first["id"]]


def test_backoff_doubles_with_jitter(settings: Settings) -> None:
    base = settings.webhook_retry_base_seconds
    for attempts in range(1, 6):
        delays = [backoff_seconds(settings, attempts) for _ in range(50)]
        expected = base * 2 ** (attempts - 1)
        assert all(0.8 * expected <= d <= 1.2 * expected for d in delays)
        assert len(set(delays)) > 1


def test_a_delivery_fails_for_good_after_the_last_attempt(
    client: TestClient,
    admin: Account,
    alice: Account,
    products: list[dict],
    hook: Receiver,
    settings: Settings,
    log_lines: list[str],
) -> None:
    webhook = register(client, admin, hook.url)
    place_order(client, alice, products[0]["id"])
    hook.fail_next = 10
    three = settings.model_copy(update={"webhook_max_attempts": 3})
    for _ in range(3):
        assert deliver(client, three) == 1
        make_due(client)
    assert deliver(client, three) == 0
    delivery = delivery_log(client, admin, webhook)
    assert delivery["items"][0]["status"] == "failed"
    assert delivery["items"][0]["attempts"] == 3
    assert delivery["items"][0]["next_attempt_at"] is None
    assert any("failed for good after 3 attempts" in line for line in log_lines)


def test_an_attempt_without_an_answer_in_time_fails_and_waits_its_retry(
    client: TestClient,
    admin: Account,
    alice: Account,
    products: list[dict],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole attempt has a time limit, so a receiver that never answers cannot hold a
    lease (or the sender) for longer."""
    monkeypatch.setattr(webhook_delivery, "SEND_TIMEOUT_SECONDS", 0.2)
    with receiver(delay=2) as silent:
        webhook = register(client, admin, silent.url)
        place_order(client, alice, products[0]["id"])
        assert deliver(client) == 1
        assert len(silent.wait_for_attempts(1)) == 1
    log = delivery_log(client, admin, webhook)
    [delivery] = log["items"]
    assert (delivery["status"], delivery["attempts"]) == ("pending", 1)
    assert delivery["last_error"] == "no answer within 0.2 s"
    assert delivery["next_attempt_at"] is not None


@pytest.mark.parametrize(
    ("failure", "logged"),
    [
        # the database busy, or gone for a moment: a warning
        (
            OperationalError("the lease", {}, Exception("locked")),
            "round failed: OperationalError",
        ),
        # a bug: logged with its traceback
        (RuntimeError("a bug"), '"exception": "Traceback'),
    ],
)
def test_the_delivery_loop_outlives_a_round_that_failed(
    client: TestClient,
    admin: Account,
    alice: Account,
    products: list[dict],
    hook: Receiver,
    settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    log_lines: list[str],
    failure: Exception,
    logged: str,
) -> None:
    """A round that fails is logged, and the loop tries again after its poll interval instead
    of ending (which would stop every webhook's deliveries until a restart)."""
    register(client, admin, hook.url)
    place_order(client, alice, products[0]["id"])
    lease, rounds = webhook_delivery._lease, []

    def refused_once(*args: object) -> list:
        rounds.append(args)
        if len(rounds) == 1:
            raise failure
        return lease(*args)

    monkeypatch.setattr(webhook_delivery, "_lease", refused_once)
    polling = settings.model_copy(update={"webhook_poll_seconds": 0.05})

    async def until_delivered() -> None:
        stop = asyncio.Event()
        loop = asyncio.create_task(Deliverer(client.app.state.db, polling).run(stop))
        try:
            await asyncio.to_thread(hook.wait_for, 1, 10)
        finally:
            stop.set()
            await loop

    asyncio.run(until_delivered())
    assert len(rounds) >= 2
    failed = [line for line in log_lines if "Webhook delivery round failed" in line]
    assert len(failed) == 1
    assert logged in failed[0]


def test_a_host_the_sender_cannot_encode_is_refused_at_registration(
    client: TestClient, admin: Account
) -> None:
    body = {"url": "https://\u2603.example.com/hook", "events": ["order.created"]}
    response = client.post("/webhooks", json=body, headers=admin.headers)
    assert response.status_code == 422, response.text
    assert "the URL is malformed: Invalid IDNA hostname" in response.json()["detail"][0]["msg"]


def test_a_stored_url_the_sender_cannot_parse_fails_its_attempts_alone(
    client: TestClient, admin: Account, alice: Account, products: list[dict], hook: Receiver
) -> None:
    """A URL stored before registration refused its kind (or written to the table by hand)
    fails each attempt with the reason; the other webhooks are served as usual."""
    broken = register(client, admin, "https://hooks.example.com/later-broken")
    register(client, admin, hook.url)
    client.app.state.db.write_sync(
        lambda conn: conn.execute(
            update(Webhook).where(Webhook.id == broken["id"]).values(url="https://xn--zz.example/")
        )
    )
    place_order(client, alice, products[0]["id"])
    assert deliver(client) == 2
    assert len(hook.wait_for(1)) == 1
    [attempt] = delivery_log(client, admin, broken)["items"]
    assert (attempt["status"], attempt["attempts"]) == ("pending", 1)
    assert attempt["last_error"] == "the URL is malformed: Invalid A-label"


def test_an_unreachable_receiver_is_an_error_not_a_crash(
    client: TestClient, admin: Account, alice: Account, products: list[dict]
) -> None:
    from smtp_server import free_port

    webhook = register(client, admin, f"http://127.0.0.1:{free_port()}/gone")
    place_order(client, alice, products[0]["id"])
    assert deliver(client) == 1
    item = delivery_log(client, admin, webhook)
    assert item["items"][0]["last_error"].startswith("ConnectError")
    assert item["items"][0]["last_status_code"] is None


def test_a_redirect_is_a_failed_attempt_never_followed(
    client: TestClient, admin: Account, alice: Account, products: list[dict], hook: Receiver
) -> None:
    webhook = register(client, admin, hook.url)
    place_order(client, alice, products[0]["id"])
    hook.fail_next, hook.status = 1, 302
    assert deliver(client) == 1
    item = delivery_log(client, admin, webhook)
    assert item["items"][0]["last_status_code"] == 302
    assert item["items"][0]["status"] == "pending"


def test_an_inactive_webhook_waits_and_a_deleted_one_drops_its_deliveries(
    client: TestClient, admin: Account, alice: Account, products: list[dict], hook: Receiver
) -> None:
    webhook = register(client, admin, hook.url)
    path = f"/webhooks/{webhook['id']}"
    place_order(client, alice, products[0]["id"])
    client.patch(path, json={"is_active": False}, headers=admin.headers)
    assert deliver(client) == 0
    client.patch(path, json={"is_active": True}, headers=admin.headers)
    assert deliver(client) == 1
    assert len(hook.received) == 1

    place_order(client, alice, products[0]["id"])
    assert client.delete(path, headers=admin.headers).status_code == 204
    assert count(client, WebhookDelivery) == 0
    assert deliver(client) == 0


def test_a_rotated_secret_signs_the_next_attempt(
    client: TestClient, admin: Account, alice: Account, products: list[dict], hook: Receiver
) -> None:
    webhook = register(client, admin, hook.url)
    place_order(client, alice, products[0]["id"])
    rotated = client.patch(
        f"/webhooks/{webhook['id']}", json={"rotate_secret": True}, headers=admin.headers
    ).json()["secret"]
    deliver(client)
    [request] = hook.wait_for(1)
    assert webhook_signing.verify(rotated, request.headers, request.body)
    assert not webhook_signing.verify(webhook["secret"], request.headers, request.body)


def test_a_lease_held_by_a_live_process_is_respected_and_an_expired_one_taken_over(
    client: TestClient, admin: Account, alice: Account, products: list[dict], hook: Receiver
) -> None:
    webhook = register(client, admin, hook.url)
    place_order(client, alice, products[0]["id"])

    def lease(until: timedelta) -> None:
        client.app.state.db.write_sync(
            lambda conn: conn.execute(
                update(Webhook).values(lease_owner="another:1:x", lease_until=utcnow() + until)
            )
        )

    lease(timedelta(seconds=30))  # another process is sending to this webhook
    assert deliver(client) == 0
    lease(timedelta(seconds=-1))  # ... and died: its lease ran out
    assert deliver(client) == 1
    assert len(hook.received) == 1
    owners = client.app.state.db.read_sync(
        lambda conn: conn.execute(select(Webhook.lease_owner, Webhook.lease_until)).one()
    )
    assert tuple(owners) == (None, None)  # released after the round
    assert webhook["id"]


def test_production_checks_the_address_again_when_sending(
    client: TestClient,
    admin: Account,
    alice: Account,
    products: list[dict],
    hook: Receiver,
    settings: Settings,
) -> None:
    webhook = register(client, admin, hook.url)  # development: a loopback URL is fine
    place_order(client, alice, products[0]["id"])
    production = settings.model_copy(update={"environment": Environment.production})
    assert deliver(client, production) == 1
    assert hook.attempts == []
    item = delivery_log(client, admin, webhook)
    assert "127.0.0.1" in item["items"][0]["last_error"]


def test_production_connects_to_the_address_it_checked(
    client: TestClient,
    admin: Account,
    alice: Account,
    products: list[dict],
    hook: Receiver,
    settings: Settings,
    public_loopback: list[str],
) -> None:
    """The name is resolved once per attempt, and the request goes to that address: a DNS
    answer that changes between the check and the connection (rebinding) is never used."""
    port = hook.url.split(":")[2].split("/")[0]
    webhook = register(client, admin, f"http://orders-hook.example:{port}/hook")
    place_order(client, alice, products[0]["id"])
    production = settings.model_copy(update={"environment": Environment.production})
    assert deliver(client, production) == 1
    [request] = hook.wait_for(1)
    assert request.headers["host"] == f"orders-hook.example:{port}"
    assert public_loopback == ["orders-hook.example"]
    assert webhook_signing.verify(webhook["secret"], request.headers, request.body)


@pytest.mark.usefixtures("fresh_tls", "public_loopback")
def test_production_verifies_tls_against_the_name_in_the_url_not_the_address(
    client: TestClient,
    admin: Account,
    alice: Account,
    products: list[dict],
    settings: Settings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The sender connects to the address it checked, yet verifies the receiver's certificate
    against the URL's host: a trusted certificate for that name is accepted; a trusted one for
    another name (though valid for the address connected to) and an untrusted one for the
    right name are refused before a byte of the event is sent."""
    host = "orders-hook.example"
    right = self_signed_certificate(tmp_path / "right", host)
    misnamed = self_signed_certificate(tmp_path / "misnamed", "elsewhere.example")
    untrusted = self_signed_certificate(tmp_path / "untrusted", host)
    bundle = tmp_path / "trusted.pem"
    bundle.write_bytes(right.cert.read_bytes() + misnamed.cert.read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
    production = settings.model_copy(update={"environment": Environment.production})
    with (
        receiver(tls=right.server_context()) as good,
        receiver(tls=misnamed.server_context()) as wrong_name,
        receiver(tls=untrusted.server_context()) as unknown,
    ):
        webhooks = {
            name: register(client, admin, running.url.replace("127.0.0.1", host))
            for name, running in (("good", good), ("wrong_name", wrong_name), ("unknown", unknown))
        }
        place_order(client, alice, products[0]["id"])
        deliver(client, production)
        [request] = good.wait_for(1)
        assert request.headers["host"].startswith(f"{host}:")
        assert wrong_name.attempts == []
        assert unknown.attempts == []

    def latest(name: str) -> dict:
        return delivery_log(client, admin, webhooks[name])["items"][0]

    assert latest("good")["status"] == "succeeded"
    for name, reason in (("wrong_name", "Hostname mismatch"), ("unknown", "self-signed")):
        failed = latest(name)
        assert (failed["status"], failed["attempts"]) == ("pending", 1)
        assert "CERTIFICATE_VERIFY_FAILED" in failed["last_error"], failed
        assert reason in failed["last_error"], failed


def rotated_response_headers_no_store(client: TestClient, admin: Account, path: str) -> bool:
    """Answers that show a secret are never cached."""
    response = client.patch(path, json={"rotate_secret": True}, headers=admin.headers)
    return response.headers["cache-control"] == "no-store"


def test_the_created_answer_is_not_cached(client: TestClient, admin: Account) -> None:
    body = {"url": "HTTPS://hooks.example.com/Upper", "events": ["order.created"]}
    response = client.post("/webhooks", json=body, headers=admin.headers)
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"


def test_pruning_removes_old_succeeded_deliveries_and_their_events(
    client: TestClient, admin: Account, alice: Account, products: list[dict], hook: Receiver
) -> None:
    from webhook_delivery import _prune

    webhook = register(client, admin, hook.url)
    place_order(client, alice, products[0]["id"])
    hook.fail_next = 1
    place_order(client, alice, products[0]["id"])
    path = f"/webhooks/{webhook['id']}"
    client.patch(path, json={"events": ["order.finished"]}, headers=admin.headers)
    place_order(client, alice, products[0]["id"])  # an event no webhook takes
    assert deliver(client) == 2  # one succeeded, one waits for its retry
    later = utcnow() + timedelta(days=8)
    client.app.state.db.write_sync(_prune, later)
    assert count(client, WebhookDelivery) == 1  # the pending one stays
    assert count(client, WebhookEvent) == 1  # and its event; the other two went


def test_a_prune_reads_no_event_within_the_retention(
    client: TestClient, alice: Account, products: list[dict], settings: Settings
) -> None:
    """Most events are within the retention, and the deliverer prunes every minute, on the
    event loop on SQLite: the work of a prune must not grow with them (SQLite's steps,
    counted). It did: it read every event kept to find none old enough."""
    if not settings.database_url.startswith("sqlite"):
        pytest.skip("SQLite's virtual machine steps")
    database = client.app.state.db
    order = place_order(client, alice, products[0]["id"])
    before = utcnow() - timedelta(days=7)

    def steps_of_a_prune() -> int:
        steps = 0

        def step() -> int:
            nonlocal steps
            steps += 1
            return 0

        def prune(conn: Connection) -> int:
            driver = conn.connection.dbapi_connection
            driver.set_progress_handler(step, 1)
            try:
                return webhook_delivery._prune(conn, before)
            finally:
                driver.set_progress_handler(None, 1)

        assert database.write_sync(prune) == 0  # nothing is old enough
        return steps

    with_one_event = steps_of_a_prune()
    young = {"type": "order.created", "order_id": order["id"], "body": "{}", "created_at": utcnow()}
    database.write_sync(
        lambda conn: conn.execute(
            insert(WebhookEvent), [young | {"uid": f"evt_{n}"} for n in range(500)]
        )
    )
    # Reading each of the 500 took several steps; a few more steps allow for a deeper tree.
    assert steps_of_a_prune() <= with_one_event + 20


def test_what_is_due_is_found_through_the_index_of_pending_deliveries(
    client: TestClient,
) -> None:
    """Which webhooks have something due, and a webhook's oldest due delivery: neither walks
    the deliveries already made nor sorts the backlog, so their cost does not grow with them."""
    database = client.app.state.db
    lease = timedelta(seconds=30)
    leased = _plan(database, database.write_sync, webhook_delivery._lease, "x", utcnow(), lease, 5)
    next_due = _plan(database, database.read_sync, webhook_delivery._next_due, 1, utcnow())
    for found in (leased, next_due):
        assert "ix_webhook_deliveries_webhook_id_status_id" in found, found
    # One webhook's pending deliveries come in id order: the oldest due one ends the walk.
    assert "TEMP B-TREE" not in next_due, next_due
    assert "Sort" not in next_due, next_due


def _plan(database: Database, run: Callable, function: Callable, *args: object) -> str:
    """The plan of the one statement on webhook_deliveries that `run(function, *args)` sends."""
    statements: list[tuple[str, object]] = []

    def capture(_conn, _cursor, statement: str, parameters: object, *_: object) -> None:
        if "webhook_deliveries" in statement:
            statements.append((statement, parameters))

    event.listen(database.engine, "before_cursor_execute", capture)
    try:
        run(function, *args)
    finally:
        event.remove(database.engine, "before_cursor_execute", capture)
    [(statement, parameters)] = statements
    return query_plan(database, statement, parameters)
