"""GET /metrics: what it counts, by route template, and who may read it."""

import asyncio
import os
import secrets
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import SecretStr

import metrics
from asgi_client import TestClient
from conftest import Account
from settings import Settings
from webhook_delivery import Deliverer
from webhook_receiver import receiver


def sample(client: TestClient, name: str, **labels: str) -> float:
    """One sample's value from /metrics (0 when it has not been counted yet)."""
    for family in text_string_to_metric_families(client.get("/metrics").text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return found.value
    return 0.0


def test_requests_are_counted_by_route_template_method_and_status(
    client: TestClient, alice: Account
) -> None:
    labels = {"method": "GET", "route": "/order/{order_id}", "status": "404"}
    before = sample(client, "http_requests_total", **labels)
    for order_id in (9101, 9102, 9103):
        assert client.get(f"/order/{order_id}", headers=alice.headers).status_code == 404
    assert sample(client, "http_requests_total", **labels) == before + 3
    text = client.get("/metrics").text
    assert "/order/9101" not in text  # ids never become labels
    buckets = (
        'http_request_duration_seconds_bucket{le="+Inf",method="GET",route="/order/{order_id}"}'
    )
    assert buckets in text
    assert client.get("/metrics").headers["content-type"].startswith("text/plain")


def test_made_up_methods_are_counted_as_one(client: TestClient) -> None:
    """Anyone may send a method of their own (h11 takes any token): each may not become a
    series of its own, or a burst of them would grow the worker without bound."""
    labels = {"method": "other", "route": "/health", "status": "405"}
    before = sample(client, "http_requests_total", **labels)
    made_up = [f"BREW{secrets.token_hex(4).upper()}" for _ in range(3)]  # this run's own
    for method in made_up:
        assert client.request(method, "/health").status_code == 405
    assert sample(client, "http_requests_total", **labels) == before + 3
    text = client.get("/metrics").text
    for method in made_up:
        assert method not in text
    assert client.get("/health").status_code == 200
    assert sample(client, "http_requests_total", method="GET", route="/health", status="200") > 0


def test_order_changes_failed_logins_and_throttles_are_counted(
    client: TestClient, alice: Account, products: list[dict]
) -> None:
    created = sample(client, "orders_total", event="created")
    cancelled = sample(client, "orders_total", event="cancelled")
    finished = sample(client, "orders_total", event="finished")
    body = {"items": [{"product_id": products[0]["id"], "quantity": 1}]}
    first = client.post("/order", json=body, headers=alice.headers).json()
    second = client.post("/order", json=body, headers=alice.headers).json()
    client.post(f"/order/{first['id']}/cancel", headers=alice.headers)
    client.post(f"/order/{second['id']}/finish", headers=alice.headers)
    assert client.post(f"/order/{second['id']}/finish", headers=alice.headers).status_code == 409
    assert sample(client, "orders_total", event="created") == created + 2
    assert sample(client, "orders_total", event="cancelled") == cancelled + 1
    assert sample(client, "orders_total", event="finished") == finished + 1

    failed = sample(client, "auth_failed_logins_total")
    limited = sample(client, "rate_limited_total", route="/auth/login")
    for _ in range(7):
        client.post("/auth/login", json={"email": alice.email, "password": "not the password"})
    assert sample(client, "auth_failed_logins_total") == failed + 5
    assert sample(client, "rate_limited_total", route="/auth/login") == limited + 2


def test_webhook_deliveries_are_counted_by_outcome(
    client: TestClient, admin: Account, alice: Account, products: list[dict]
) -> None:
    with receiver() as hook:
        body = {"url": hook.url, "events": ["order.created"]}
        assert client.post("/webhooks", json=body, headers=admin.headers).status_code == 201
        succeeded = sample(client, "webhook_deliveries_total", outcome="succeeded")
        retrying = sample(client, "webhook_deliveries_total", outcome="retrying")
        hook.fail_next = 1
        order = {"items": [{"product_id": products[0]["id"], "quantity": 1}]}
        client.post("/order", json=order, headers=alice.headers)
        client.post("/order", json=order, headers=alice.headers)
        state = client.app.state
        assert asyncio.run(Deliverer(state.db, state.settings).run_once()) == 2
    assert sample(client, "webhook_deliveries_total", outcome="retrying") == retrying + 1
    assert sample(client, "webhook_deliveries_total", outcome="succeeded") == succeeded + 1


def test_a_metrics_token_is_required_when_set(client: TestClient, settings: Settings) -> None:
    client.app.state.settings = settings.model_copy(
        update={"metrics_token": SecretStr("scrape-secret")}
    )
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics").headers["www-authenticate"] == "Bearer"
    wrong = client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    basic = client.get("/metrics", headers={"Authorization": "Basic scrape-secret"})
    assert basic.status_code == 401
    right = client.get("/metrics", headers={"Authorization": "Bearer scrape-secret"})
    assert right.status_code == 200
    assert "http_requests_total" in right.text


def test_an_empty_metrics_token_means_none_and_a_short_one_is_refused() -> None:
    import pytest
    from pydantic import ValidationError

    assert Settings(_env_file=None, secret_key="k" * 32, metrics_token="").metrics_token is None
    with pytest.raises(ValidationError, match="METRICS_TOKEN"):
        Settings(_env_file=None, secret_key="k" * 32, metrics_token="short")


def test_each_server_counts_in_a_directory_of_its_own_and_clears_those_of_stopped_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers share their process group's directory; one a stopped server left behind is
    removed by the next server to start, and a running server's is left alone."""
    monkeypatch.setattr(metrics, "BASE_DIR", tmp_path)
    base = tmp_path / ".metrics"
    base.mkdir()
    stopped = subprocess.Popen(["true"], start_new_session=True)
    stopped.wait()
    running = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        left = base / f"orders-metrics-{stopped.pid}"
        kept = base / f"orders-metrics-{running.pid}"
        other = base / "orders-metrics-not-a-group"
        for directory in (left, kept, other):
            directory.mkdir()
        own = metrics._own_directory()
        assert own == str(base / f"orders-metrics-{os.getpgid(0)}")
        assert sorted(p.name for p in base.iterdir()) == sorted(
            [Path(own).name, kept.name, other.name]
        )
        assert stat.S_IMODE(Path(own).stat().st_mode) == 0o700
    finally:
        running.kill()
        running.wait()


def test_a_read_only_checkout_counts_in_a_private_temporary_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / ".metrics").write_text("not a directory: mkdir fails as on a read-only disk")
    monkeypatch.setattr(metrics, "BASE_DIR", tmp_path)
    own = Path(metrics._own_directory())
    try:
        assert own.name.startswith("orders-metrics-")
        assert own.parent == Path(tempfile.gettempdir())
        assert stat.S_IMODE(own.stat().st_mode) == 0o700
    finally:
        own.rmdir()
