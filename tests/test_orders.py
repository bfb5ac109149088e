"""/order: creating, reading, changing and racing orders, against the contract in API.md."""

import re
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial

import pytest
from httpx2 import Response

from asgi_client import TestClient
from conftest import Account, make_account

MONEY = re.compile(r"^\d+\.\d{2}$")
ORDER_FIELDS = {"id", "user_id", "status", "items", "total", "created_at", "updated_at"}
ITEM_FIELDS = {"id", "product_id", "product_name", "quantity", "unit_price", "line_total"}
HISTORY_FIELDS = {"from_status", "to_status", "changed_by", "changed_at"}
MISSING_ID = 999_999
THREADS = 10


# --- helpers ------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _never_a_server_error(client: TestClient) -> Iterator[None]:
    """Every response in this module, from any thread, must be below 500."""

    def check(response: Response) -> None:
        assert response.status_code < 500, (
            f"{response.request.method} {response.request.url} -> {response.status_code}"
        )

    client.event_hooks["response"].append(check)
    yield
    client.event_hooks["response"].remove(check)


def line(product: dict, quantity: int) -> dict:
    return {"product_id": product["id"], "quantity": quantity}


def create_order(
    client: TestClient, account: Account, items: list[dict] | None = None, *, key: str | None = None
) -> Response:
    headers = dict(account.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    return client.post("/order", json={"items": items or []}, headers=headers)


def place(client: TestClient, account: Account, items: list[dict] | None = None) -> dict:
    """Create an order that must succeed; returns its body."""
    response = create_order(client, account, items)
    assert response.status_code == 201, response.text
    return response.json()


def get_order(client: TestClient, account: Account, order_id: int) -> Response:
    return client.get(f"/order/{order_id}", headers=account.headers)


def add_item(client: TestClient, account: Account, order_id: int, body: dict) -> Response:
    return client.post(f"/order/{order_id}/items", json=body, headers=account.headers)


def remove_item(client: TestClient, account: Account, order_id: int, item_id: object) -> Response:
    return client.delete(f"/order/{order_id}/items/{item_id}", headers=account.headers)


def transition(client: TestClient, account: Account, order_id: int, action: str) -> Response:
    return client.post(f"/order/{order_id}/{action}", headers=account.headers)


def history(client: TestClient, account: Account, order_id: int) -> list[dict]:
    response = client.get(f"/order/{order_id}/history", headers=account.headers)
    assert response.status_code == 200, response.text
    return response.json()


def list_orders(client: TestClient, account: Account, **params: object) -> Response:
    return client.get("/order", params=params, headers=account.headers)


def order_count(client: TestClient, account: Account) -> int:
    response = list_orders(client, account)
    assert response.status_code == 200, response.text
    return response.json()["total"]


def update_product(client: TestClient, admin: Account, product: dict, **changes: object) -> None:
    response = client.patch(f"/product/{product['id']}", json=changes, headers=admin.headers)
    assert response.status_code == 200, response.text


def create_product(client: TestClient, admin: Account, name: str, price: str) -> dict:
    response = client.post("/product", json={"name": name, "price": price}, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()


def assert_validation_error(response: Response, *, loc_contains: object = None) -> None:
    """A 422 in FastAPI's shape: `detail` is a list of {loc, msg, type} objects."""
    assert response.status_code == 422, response.text
    detail = response.json()["detail"]
    assert isinstance(detail, list)
    assert detail
    for error in detail:
        assert {"loc", "msg", "type"} <= error.keys()
        assert isinstance(error["loc"], list)
        assert isinstance(error["msg"], str)
        assert isinstance(error["type"], str)
    if loc_contains is not None:
        assert any(loc_contains in error["loc"] for error in detail), detail


def assert_money(value: object) -> None:
    assert isinstance(value, str)
    assert MONEY.match(value), value


def parse_timestamp(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() is not None, f"{value} has no UTC offset"
    return parsed


def run_concurrently(calls: list[Callable[[], Response]]) -> list[Response]:
    """Run the calls on their own threads, released together to maximise contention."""
    barrier = threading.Barrier(len(calls), timeout=30)

    def run(call: Callable[[], Response]) -> Response:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))


@pytest.fixture
def coffee(products: list[dict]) -> dict:
    return products[0]


@pytest.fixture
def tea(products: list[dict]) -> dict:
    return products[1]


@pytest.fixture
def sugar(products: list[dict]) -> dict:
    return products[2]


# --- authentication -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/order"),
        ("GET", "/order"),
        ("GET", "/order/1"),
        ("POST", "/order/1/items"),
        ("DELETE", "/order/1/items/1"),
        ("POST", "/order/1/cancel"),
        ("POST", "/order/1/finish"),
        ("GET", "/order/1/history"),
    ],
)
def test_order_routes_without_token_are_401_with_bearer_challenge(
    client: TestClient, method: str, path: str
) -> None:
    body = {"items": []} if path == "/order" else {"product_id": 1, "quantity": 1}
    response = client.request(method, path, json=body if method == "POST" else None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert isinstance(response.json()["detail"], str)


def test_create_order_with_malformed_token_is_401(client: TestClient) -> None:
    response = client.post(
        "/order", json={"items": []}, headers={"Authorization": "Bearer not-a-jwt"}
    )
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_create_order_with_refresh_token_is_401(client: TestClient, alice: Account) -> None:
    headers = {"Authorization": f"Bearer {alice.refresh_token}"}
    response = client.post("/order", json={"items": []}, headers=headers)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert order_count(client, alice) == 0


# --- POST /order --------------------------------------------------------------------------


def test_create_order_returns_pending_order_with_priced_lines(
    client: TestClient, alice: Account, coffee: dict, tea: dict
) -> None:
    response = create_order(client, alice, [line(coffee, 2), line(tea, 1)])
    assert response.status_code == 201, response.text
    order = response.json()
    assert set(order) == ORDER_FIELDS
    assert order["user_id"] == alice.id
    assert order["status"] == "pending"
    assert order["total"] == "28.99"
    assert [set(item) for item in order["items"]] == [ITEM_FIELDS, ITEM_FIELDS]
    by_product = {item["product_id"]: item for item in order["items"]}
    assert by_product[coffee["id"]]["product_name"] == "Coffee"
    assert by_product[coffee["id"]]["quantity"] == 2
    assert by_product[coffee["id"]]["unit_price"] == "12.50"
    assert by_product[coffee["id"]]["line_total"] == "25.00"
    assert by_product[tea["id"]]["product_name"] == "Tea"
    assert by_product[tea["id"]]["quantity"] == 1
    assert by_product[tea["id"]]["unit_price"] == "3.99"
    assert by_product[tea["id"]]["line_total"] == "3.99"
    for item in order["items"]:
        assert isinstance(item["id"], int)
        assert_money(item["unit_price"])
        assert_money(item["line_total"])
    assert_money(order["total"])
    assert parse_timestamp(order["created_at"]) <= parse_timestamp(order["updated_at"])


def test_created_order_can_be_read_back(client: TestClient, alice: Account, tea: dict) -> None:
    created = place(client, alice, [line(tea, 3)])
    response = get_order(client, alice, created["id"])
    assert response.status_code == 200
    assert response.json() == created


@pytest.mark.parametrize(
    ("quantities", "total"),
    [
        ({"sugar": 3, "tea": 1}, "4.29"),
        ({"sugar": 7}, "0.70"),
        ({"sugar": 3}, "0.30"),
        ({"sugar": 100}, "10.00"),
        ({"tea": 100}, "399.00"),
        ({"coffee": 100, "tea": 100, "sugar": 100}, "1659.00"),
    ],
)
def test_create_order_totals_are_exact_decimals(
    client: TestClient,
    alice: Account,
    coffee: dict,
    tea: dict,
    sugar: dict,
    quantities: dict[str, int],
    total: str,
) -> None:
    catalogue = {"coffee": coffee, "tea": tea, "sugar": sugar}
    order = place(client, alice, [line(catalogue[name], qty) for name, qty in quantities.items()])
    assert order["total"] == total
    line_totals = {item["product_name"].lower(): item["line_total"] for item in order["items"]}
    for name, qty in quantities.items():
        assert line_totals[name] == str(Decimal(catalogue[name]["price"]) * qty)


@pytest.mark.parametrize("body", [{"items": []}, {}])
def test_create_order_without_items_has_zero_total(
    client: TestClient, alice: Account, body: dict
) -> None:
    response = client.post("/order", json=body, headers=alice.headers)
    assert response.status_code == 201, response.text
    order = response.json()
    assert order["status"] == "pending"
    assert order["items"] == []
    assert order["total"] == "0.00"


def test_create_order_merges_a_product_listed_twice_into_one_line(
    client: TestClient, alice: Account, sugar: dict, tea: dict
) -> None:
    order = place(client, alice, [line(sugar, 3), line(tea, 1), line(sugar, 4)])
    sugar_lines = [item for item in order["items"] if item["product_id"] == sugar["id"]]
    assert len(order["items"]) == 2
    assert len(sugar_lines) == 1
    assert sugar_lines[0]["quantity"] == 7
    assert sugar_lines[0]["line_total"] == "0.70"
    assert order["total"] == "4.69"


def test_create_order_accepts_100_lines_merging_to_quantity_100(
    client: TestClient, alice: Account, sugar: dict
) -> None:
    order = place(client, alice, [line(sugar, 1)] * 100)
    assert len(order["items"]) == 1
    assert order["items"][0]["quantity"] == 100
    assert order["total"] == "10.00"


def test_create_order_rejects_merged_quantity_over_100(
    client: TestClient, alice: Account, sugar: dict
) -> None:
    response = create_order(client, alice, [line(sugar, 60), line(sugar, 41)])
    assert_validation_error(response, loc_contains="quantity")
    assert order_count(client, alice) == 0


def test_create_order_rejects_more_than_100_lines(
    client: TestClient, alice: Account, sugar: dict
) -> None:
    response = create_order(client, alice, [line(sugar, 1)] * 101)
    assert_validation_error(response, loc_contains="items")
    assert order_count(client, alice) == 0


@pytest.mark.parametrize("quantity", [0, 101, -1, "2", 1.5, True, 2.0, None])
def test_create_order_rejects_bad_quantity(
    client: TestClient, alice: Account, tea: dict, quantity: object
) -> None:
    response = create_order(client, alice, [{"product_id": tea["id"], "quantity": quantity}])
    assert_validation_error(response, loc_contains="quantity")
    assert order_count(client, alice) == 0


@pytest.mark.parametrize("quantity", [1, 100])
def test_create_order_accepts_quantity_bounds(
    client: TestClient, alice: Account, tea: dict, quantity: int
) -> None:
    order = place(client, alice, [line(tea, quantity)])
    assert order["items"][0]["quantity"] == quantity


def test_create_order_rejects_missing_product(
    client: TestClient, alice: Account, tea: dict
) -> None:
    response = create_order(
        client, alice, [line(tea, 1), {"product_id": MISSING_ID, "quantity": 1}]
    )
    assert_validation_error(response, loc_contains="product_id")
    assert order_count(client, alice) == 0


def test_create_order_rejects_inactive_product(
    client: TestClient, alice: Account, admin: Account, tea: dict
) -> None:
    update_product(client, admin, tea, is_active=False)
    response = create_order(client, alice, [line(tea, 1)])
    assert_validation_error(response, loc_contains="product_id")
    assert order_count(client, alice) == 0


@pytest.mark.parametrize("product_id", [0, -1, 2**31, "1", 1.5, None, True])
def test_create_order_rejects_bad_product_id(
    client: TestClient, alice: Account, products: list[dict], product_id: object
) -> None:
    response = create_order(client, alice, [{"product_id": product_id, "quantity": 1}])
    assert_validation_error(response, loc_contains="product_id")
    assert order_count(client, alice) == 0


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ({"status": "finished"}, "order"),
        ({"user_id": 1}, "order"),
        ({"total": "0.01"}, "order"),
        ({"id": 42}, "order"),
        ({"created_at": "2020-01-01T00:00:00Z"}, "order"),
        ({"unit_price": "0.01"}, "item"),
        ({"line_total": "0.01"}, "item"),
        ({"id": 7}, "item"),
    ],
)
def test_create_order_rejects_unknown_fields(
    client: TestClient, alice: Account, coffee: dict, extra: dict, where: str
) -> None:
    item = line(coffee, 1)
    body = {"items": [item]}
    if where == "order":
        body.update(extra)
    else:
        item.update(extra)
    response = client.post("/order", json=body, headers=alice.headers)
    assert_validation_error(response, loc_contains=next(iter(extra)))
    assert order_count(client, alice) == 0


@pytest.mark.parametrize(
    "body",
    [
        [],
        "items",
        {"items": None},
        {"items": "abc"},
        {"items": [1]},
        {"items": [{"product_id": 1}]},
        {"items": [{"quantity": 1}]},
        {"items": {"product_id": 1, "quantity": 1}},
    ],
)
def test_create_order_rejects_malformed_bodies(
    client: TestClient, alice: Account, products: list[dict], body: object
) -> None:
    response = client.post("/order", json=body, headers=alice.headers)
    assert_validation_error(response)
    assert order_count(client, alice) == 0


def test_create_order_rejects_invalid_json(client: TestClient, alice: Account) -> None:
    headers = {**alice.headers, "Content-Type": "application/json"}
    response = client.post("/order", content=b'{"items": [', headers=headers)
    assert_validation_error(response)


def test_create_order_rejects_a_form_body(client: TestClient, alice: Account) -> None:
    response = client.post("/order", data={"items": "1"}, headers=alice.headers)
    assert_validation_error(response)
    assert order_count(client, alice) == 0


# --- price snapshot -----------------------------------------------------------------------


def test_order_keeps_its_unit_price_after_a_price_change(
    client: TestClient, alice: Account, admin: Account, sugar: dict
) -> None:
    old = place(client, alice, [line(sugar, 3)])
    update_product(client, admin, sugar, price="0.25")

    kept = get_order(client, alice, old["id"]).json()
    assert kept["items"][0]["unit_price"] == "0.10"
    assert kept["items"][0]["line_total"] == "0.30"
    assert kept["total"] == "0.30"

    new = place(client, alice, [line(sugar, 3)])
    assert new["items"][0]["unit_price"] == "0.25"
    assert new["items"][0]["line_total"] == "0.75"
    assert new["total"] == "0.75"


def test_order_line_of_a_deactivated_product_is_still_shown(
    client: TestClient, alice: Account, admin: Account, tea: dict
) -> None:
    order = place(client, alice, [line(tea, 2)])
    update_product(client, admin, tea, is_active=False, name="Old tea")
    response = get_order(client, alice, order["id"])
    assert response.status_code == 200
    assert response.json()["items"][0]["product_id"] == tea["id"]
    assert response.json()["items"][0]["unit_price"] == "3.99"
    assert response.json()["total"] == "7.98"


# --- Idempotency-Key ----------------------------------------------------------------------


def test_idempotent_retry_returns_the_same_order_with_200(
    client: TestClient, alice: Account, tea: dict
) -> None:
    items = [line(tea, 2)]
    first = create_order(client, alice, items, key="order-123")
    assert first.status_code == 201, first.text
    assert "Idempotent-Replayed" not in first.headers

    second = create_order(client, alice, items, key="order-123")
    assert second.status_code == 200, second.text
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["items"] == first.json()["items"]
    assert second.json()["total"] == "7.98"
    assert order_count(client, alice) == 1


def test_idempotency_key_with_a_different_body_is_422(
    client: TestClient, alice: Account, tea: dict
) -> None:
    assert create_order(client, alice, [line(tea, 2)], key="k1").status_code == 201
    response = create_order(client, alice, [line(tea, 3)], key="k1")
    assert_validation_error(response)
    assert "Idempotent-Replayed" not in response.headers
    assert order_count(client, alice) == 1


def test_same_idempotency_key_from_another_user_creates_a_separate_order(
    client: TestClient, alice: Account, bob: Account, tea: dict
) -> None:
    items = [line(tea, 1)]
    mine = create_order(client, alice, items, key="shared-key")
    theirs = create_order(client, bob, items, key="shared-key")
    assert mine.status_code == 201
    assert theirs.status_code == 201
    assert "Idempotent-Replayed" not in theirs.headers
    assert theirs.json()["id"] != mine.json()["id"]
    assert theirs.json()["user_id"] == bob.id
    assert order_count(client, alice) == 1
    assert order_count(client, bob) == 1


def test_requests_without_idempotency_key_always_create_new_orders(
    client: TestClient, alice: Account, tea: dict
) -> None:
    first = place(client, alice, [line(tea, 1)])
    second = place(client, alice, [line(tea, 1)])
    assert first["id"] != second["id"]
    assert order_count(client, alice) == 2


def test_idempotency_key_is_spelled_one_way_in_every_refusal(
    client: TestClient, alice: Account, tea: dict
) -> None:
    assert create_order(client, alice, [line(tea, 2)], key="k1").status_code == 201
    reused = create_order(client, alice, [line(tea, 3)], key="k1").json()["detail"][0]["loc"]
    malformed = create_order(client, alice, [], key="has space").json()["detail"][0]["loc"]
    assert reused == malformed == ["header", "Idempotency-Key"]


@pytest.mark.parametrize("key", ["k" * 256, "has space", "", "tab\tkey"])
def test_invalid_idempotency_key_is_422(client: TestClient, alice: Account, key: str) -> None:
    response = create_order(client, alice, [], key=key)
    assert_validation_error(response, loc_contains="header")
    assert order_count(client, alice) == 0


def test_idempotency_key_of_255_characters_is_accepted(client: TestClient, alice: Account) -> None:
    key = "k" * 255
    assert create_order(client, alice, [], key=key).status_code == 201
    replay = create_order(client, alice, [], key=key)
    assert replay.status_code == 200
    assert replay.headers["Idempotent-Replayed"] == "true"


def test_concurrent_idempotent_retries_create_exactly_one_order(
    client: TestClient, alice: Account, tea: dict, sugar: dict
) -> None:
    items = [line(tea, 1), line(sugar, 5)]
    calls = [partial(create_order, client, alice, items, key="retry-me")] * THREADS
    responses = run_concurrently(calls)

    codes = sorted(r.status_code for r in responses)
    assert codes == [200] * (THREADS - 1) + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    for response in responses:
        assert response.json()["total"] == "4.49"
        if response.status_code == 200:
            assert response.headers["Idempotent-Replayed"] == "true"
    assert order_count(client, alice) == 1


def test_concurrent_retries_with_different_bodies_create_one_order(
    client: TestClient, alice: Account, tea: dict, sugar: dict
) -> None:
    bodies = [[line(tea, 1)], [line(sugar, 1)]] * (THREADS // 2)
    calls = [partial(create_order, client, alice, items, key="k") for items in bodies]
    responses = run_concurrently(calls)

    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 1, [r.text for r in responses]
    winner = created[0].json()
    winning_product = winner["items"][0]["product_id"]
    for items, response in zip(bodies, responses, strict=True):
        if items[0]["product_id"] == winning_product:
            assert response.status_code in {200, 201}
            assert response.json()["id"] == winner["id"]
        else:
            assert_validation_error(response, loc_contains="header")
    assert order_count(client, alice) == 1


# --- GET /order ---------------------------------------------------------------------------


def test_list_orders_is_a_page_newest_first(client: TestClient, alice: Account) -> None:
    ids = [place(client, alice)["id"] for _ in range(3)]
    response = list_orders(client, alice)
    assert response.status_code == 200
    page = response.json()
    assert set(page) == {"items", "total", "limit", "offset", "next_cursor"}
    assert page["next_cursor"] is None  # the last page
    assert page["total"] == 3
    assert page["limit"] == 20
    assert page["offset"] == 0
    assert [order["id"] for order in page["items"]] == sorted(ids, reverse=True)
    assert all(set(order) == ORDER_FIELDS for order in page["items"])


def test_list_orders_default_limit_is_20(client: TestClient, alice: Account) -> None:
    for _ in range(21):
        place(client, alice)
    page = list_orders(client, alice).json()
    assert page["total"] == 21
    assert page["limit"] == 20
    assert len(page["items"]) == 20


def test_list_orders_shows_only_the_callers_orders(
    client: TestClient, alice: Account, bob: Account
) -> None:
    mine = place(client, alice)
    place(client, bob)
    page = list_orders(client, alice).json()
    assert page["total"] == 1
    assert [order["id"] for order in page["items"]] == [mine["id"]]
    assert all(order["user_id"] == alice.id for order in page["items"])


def test_admin_lists_every_users_orders(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    ids = [place(client, alice)["id"], place(client, bob)["id"], place(client, admin)["id"]]
    page = list_orders(client, admin).json()
    assert page["total"] == 3
    assert [order["id"] for order in page["items"]] == sorted(ids, reverse=True)
    assert {order["user_id"] for order in page["items"]} == {alice.id, bob.id, admin.id}


def test_list_orders_filters_by_status(client: TestClient, alice: Account, tea: dict) -> None:
    pending = place(client, alice, [line(tea, 1)])
    cancelled = place(client, alice, [line(tea, 1)])
    finished = place(client, alice, [line(tea, 1)])
    assert transition(client, alice, cancelled["id"], "cancel").status_code == 200
    assert transition(client, alice, finished["id"], "finish").status_code == 200

    for status, order in [("pending", pending), ("cancelled", cancelled), ("finished", finished)]:
        response = list_orders(client, alice, status=status)
        assert response.status_code == 200
        page = response.json()
        assert page["total"] == 1
        assert [o["id"] for o in page["items"]] == [order["id"]]
        assert page["items"][0]["status"] == status


@pytest.mark.parametrize("status", ["shipped", "PENDING", "", "1"])
def test_list_orders_rejects_an_unknown_status(
    client: TestClient, alice: Account, status: str
) -> None:
    assert_validation_error(list_orders(client, alice, status=status), loc_contains="status")


def test_admin_filters_orders_by_user_id(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    alices = [place(client, alice)["id"] for _ in range(2)]
    place(client, bob)
    response = list_orders(client, admin, user_id=alice.id)
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 2
    assert [order["id"] for order in page["items"]] == sorted(alices, reverse=True)


def test_admin_combines_user_id_and_status_filters(
    client: TestClient, alice: Account, bob: Account, admin: Account
) -> None:
    kept = place(client, alice)
    dropped = place(client, alice)
    place(client, bob)
    assert transition(client, alice, dropped["id"], "cancel").status_code == 200
    page = list_orders(client, admin, user_id=alice.id, status="pending").json()
    assert page["total"] == 1
    assert [order["id"] for order in page["items"]] == [kept["id"]]


@pytest.mark.parametrize("user_id", ["self", "other"])
def test_user_id_filter_from_a_non_admin_is_403(
    client: TestClient, alice: Account, bob: Account, user_id: str
) -> None:
    place(client, bob)
    target = alice.id if user_id == "self" else bob.id
    response = list_orders(client, alice, user_id=target)
    assert response.status_code == 403
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize("user_id", [0, -1, 2**31, "abc"])
def test_admin_rejects_an_invalid_user_id_filter(
    client: TestClient, admin: Account, user_id: object
) -> None:
    assert_validation_error(list_orders(client, admin, user_id=user_id), loc_contains="user_id")


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("limit", 0),
        ("limit", 101),
        ("limit", -1),
        ("limit", "abc"),
        ("offset", -1),
        ("offset", "x"),
    ],
)
def test_list_orders_rejects_bad_paging(
    client: TestClient, alice: Account, param: str, value: object
) -> None:
    assert_validation_error(list_orders(client, alice, **{param: value}), loc_contains=param)


@pytest.mark.parametrize("limit", [1, 100])
def test_list_orders_accepts_limit_bounds(client: TestClient, alice: Account, limit: int) -> None:
    place(client, alice)
    place(client, alice)
    response = list_orders(client, alice, limit=limit)
    assert response.status_code == 200
    page = response.json()
    assert page["limit"] == limit
    assert page["total"] == 2
    assert len(page["items"]) == min(limit, 2)


def test_list_orders_pages_with_limit_and_offset(client: TestClient, alice: Account) -> None:
    ids = sorted((place(client, alice)["id"] for _ in range(5)), reverse=True)
    response = list_orders(client, alice, limit=2, offset=2)
    assert response.status_code == 200
    page = response.json()
    assert page["total"] == 5
    assert page["limit"] == 2
    assert page["offset"] == 2
    assert [order["id"] for order in page["items"]] == ids[2:4]


def test_list_orders_offset_past_the_end_is_an_empty_page(
    client: TestClient, alice: Account
) -> None:
    place(client, alice)
    page = list_orders(client, alice, offset=5).json()
    assert page["items"] == []
    assert page["total"] == 1


def test_admin_filter_for_a_user_without_orders_is_an_empty_page(
    client: TestClient, alice: Account, admin: Account
) -> None:
    place(client, alice)
    page = list_orders(client, admin, user_id=MISSING_ID).json()
    assert page["items"] == []
    assert page["total"] == 0


def test_list_orders_with_a_huge_offset_is_not_a_server_error(
    client: TestClient, alice: Account
) -> None:
    place(client, alice)
    response = list_orders(client, alice, offset=2**63)
    assert response.status_code in {200, 422}
    if response.status_code == 200:
        assert response.json()["items"] == []
    else:
        assert_validation_error(response, loc_contains="offset")


# --- GET /order/{id} ----------------------------------------------------------------------


def test_owner_reads_their_order(client: TestClient, alice: Account, coffee: dict) -> None:
    order = place(client, alice, [line(coffee, 1)])
    response = get_order(client, alice, order["id"])
    assert response.status_code == 200
    assert response.json()["id"] == order["id"]
    assert response.json()["total"] == "12.50"


def test_admin_reads_any_order(
    client: TestClient, alice: Account, admin: Account, coffee: dict
) -> None:
    order = place(client, alice, [line(coffee, 1)])
    response = get_order(client, admin, order["id"])
    assert response.status_code == 200
    assert response.json() == order


def test_another_users_order_is_404_like_a_missing_one(
    client: TestClient, alice: Account, bob: Account
) -> None:
    order = place(client, alice)
    foreign = get_order(client, bob, order["id"])
    missing = get_order(client, bob, MISSING_ID)
    assert foreign.status_code == 404
    assert missing.status_code == 404
    assert foreign.json() == missing.json()
    assert isinstance(foreign.json()["detail"], str)


@pytest.mark.parametrize("order_id", ["abc", 0, -1, 2**31, "1.5"])
def test_get_order_rejects_invalid_ids(
    client: TestClient, alice: Account, order_id: object
) -> None:
    assert_validation_error(get_order(client, alice, order_id), loc_contains="order_id")


# --- POST /order/{id}/items ---------------------------------------------------------------


def test_add_item_returns_201_with_the_updated_order(
    client: TestClient, alice: Account, coffee: dict, sugar: dict
) -> None:
    order = place(client, alice, [line(coffee, 1)])
    response = add_item(client, alice, order["id"], line(sugar, 7))
    assert response.status_code == 201, response.text
    updated = response.json()
    assert set(updated) == ORDER_FIELDS
    assert updated["id"] == order["id"]
    assert updated["status"] == "pending"
    assert len(updated["items"]) == 2
    added = next(item for item in updated["items"] if item["product_id"] == sugar["id"])
    assert added["product_name"] == "Sugar"
    assert added["quantity"] == 7
    assert added["unit_price"] == "0.10"
    assert added["line_total"] == "0.70"
    assert updated["total"] == "13.20"
    assert get_order(client, alice, order["id"]).json() == updated


def test_add_item_to_an_empty_order(client: TestClient, alice: Account, tea: dict) -> None:
    order = place(client, alice)
    response = add_item(client, alice, order["id"], line(tea, 2))
    assert response.status_code == 201
    assert response.json()["total"] == "7.98"


def test_adding_an_existing_product_raises_its_quantity_at_the_original_price(
    client: TestClient, alice: Account, admin: Account, sugar: dict
) -> None:
    order = place(client, alice, [line(sugar, 3)])
    original_line_id = order["items"][0]["id"]
    update_product(client, admin, sugar, price="0.25")

    response = add_item(client, alice, order["id"], line(sugar, 4))
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert len(items) == 1
    assert items[0]["id"] == original_line_id
    assert items[0]["quantity"] == 7
    assert items[0]["unit_price"] == "0.10"
    assert items[0]["line_total"] == "0.70"
    assert response.json()["total"] == "0.70"


def test_added_line_of_a_new_product_takes_the_current_price(
    client: TestClient, alice: Account, admin: Account, tea: dict, sugar: dict
) -> None:
    order = place(client, alice, [line(sugar, 1)])
    update_product(client, admin, tea, price="4.00")
    response = add_item(client, alice, order["id"], line(tea, 1))
    assert response.status_code == 201
    added = next(item for item in response.json()["items"] if item["product_id"] == tea["id"])
    assert added["unit_price"] == "4.00"
    assert response.json()["total"] == "4.10"


def test_add_item_rejects_merged_quantity_over_100(
    client: TestClient, alice: Account, sugar: dict
) -> None:
    order = place(client, alice, [line(sugar, 60)])
    assert_validation_error(add_item(client, alice, order["id"], line(sugar, 41)))
    assert get_order(client, alice, order["id"]).json()["items"][0]["quantity"] == 60

    response = add_item(client, alice, order["id"], line(sugar, 40))
    assert response.status_code == 201
    assert response.json()["items"][0]["quantity"] == 100


@pytest.mark.parametrize("which", ["missing", "inactive"])
def test_add_item_rejects_unavailable_products(
    client: TestClient, alice: Account, admin: Account, tea: dict, sugar: dict, which: str
) -> None:
    order = place(client, alice, [line(sugar, 1)])
    if which == "inactive":
        update_product(client, admin, tea, is_active=False)
        body = line(tea, 1)
    else:
        body = {"product_id": MISSING_ID, "quantity": 1}
    response = add_item(client, alice, order["id"], body)
    assert_validation_error(response, loc_contains="product_id")
    assert get_order(client, alice, order["id"]).json()["items"] == order["items"]


@pytest.mark.parametrize(
    "body",
    [
        {"product_id": 1, "quantity": 1, "unit_price": "0.01"},
        {"product_id": 1, "quantity": 1, "order_id": 2},
        {"product_id": 1, "quantity": 0},
        {"product_id": 1, "quantity": 101},
        {"product_id": 1, "quantity": "2"},
        {"product_id": 1, "quantity": 1.5},
        {"product_id": 1, "quantity": True},
        {"product_id": 0, "quantity": 1},
        {"product_id": 2**31, "quantity": 1},
        {"product_id": 1},
        {"items": [{"product_id": 1, "quantity": 1}]},
    ],
)
def test_add_item_rejects_invalid_bodies(
    client: TestClient, alice: Account, products: list[dict], body: dict
) -> None:
    order = place(client, alice)
    assert_validation_error(add_item(client, alice, order["id"], body))
    assert get_order(client, alice, order["id"]).json()["items"] == []


def test_add_item_to_another_users_order_is_404(
    client: TestClient, alice: Account, bob: Account, tea: dict
) -> None:
    order = place(client, alice)
    response = add_item(client, bob, order["id"], line(tea, 1))
    assert response.status_code == 404
    assert response.json() == get_order(client, bob, MISSING_ID).json()
    assert get_order(client, alice, order["id"]).json()["items"] == []


def test_add_item_to_a_missing_order_is_404(client: TestClient, alice: Account, tea: dict) -> None:
    response = add_item(client, alice, MISSING_ID, line(tea, 1))
    assert response.status_code == 404
    assert isinstance(response.json()["detail"], str)


def test_admin_adds_an_item_to_any_order(
    client: TestClient, alice: Account, admin: Account, tea: dict
) -> None:
    order = place(client, alice)
    response = add_item(client, admin, order["id"], line(tea, 1))
    assert response.status_code == 201
    assert response.json()["user_id"] == alice.id
    assert response.json()["total"] == "3.99"


@pytest.mark.parametrize("action", ["cancel", "finish"])
def test_add_item_to_a_closed_order_is_409(
    client: TestClient, alice: Account, tea: dict, sugar: dict, action: str
) -> None:
    order = place(client, alice, [line(tea, 1)])
    assert transition(client, alice, order["id"], action).status_code == 200
    response = add_item(client, alice, order["id"], line(sugar, 1))
    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)
    assert get_order(client, alice, order["id"]).json()["items"] == order["items"]


def test_adding_an_item_moves_updated_at_forward(
    client: TestClient, alice: Account, tea: dict
) -> None:
    order = place(client, alice)
    updated = add_item(client, alice, order["id"], line(tea, 1)).json()
    assert parse_timestamp(updated["updated_at"]) > parse_timestamp(order["updated_at"])
    assert updated["created_at"] == order["created_at"]


# --- DELETE /order/{id}/items/{item_id} ---------------------------------------------------


def test_remove_item_returns_the_order_without_that_line(
    client: TestClient, alice: Account, coffee: dict, sugar: dict
) -> None:
    order = place(client, alice, [line(coffee, 1), line(sugar, 3)])
    coffee_line = next(item for item in order["items"] if item["product_id"] == coffee["id"])
    response = remove_item(client, alice, order["id"], coffee_line["id"])
    assert response.status_code == 200, response.text
    updated = response.json()
    assert [item["product_id"] for item in updated["items"]] == [sugar["id"]]
    assert updated["total"] == "0.30"
    assert get_order(client, alice, order["id"]).json() == updated


def test_removing_the_last_item_leaves_a_zero_total(
    client: TestClient, alice: Account, tea: dict
) -> None:
    order = place(client, alice, [line(tea, 2)])
    response = remove_item(client, alice, order["id"], order["items"][0]["id"])
    assert response.status_code == 200
    assert response.json()["items"] == []
    assert response.json()["total"] == "0.00"


def test_remove_an_item_of_another_order_is_404(
    client: TestClient, alice: Account, tea: dict, sugar: dict
) -> None:
    first = place(client, alice, [line(tea, 1)])
    second = place(client, alice, [line(sugar, 1)])
    response = remove_item(client, alice, first["id"], second["items"][0]["id"])
    assert response.status_code == 404
    assert isinstance(response.json()["detail"], str)
    assert get_order(client, alice, second["id"]).json()["items"] == second["items"]
    assert get_order(client, alice, first["id"]).json()["items"] == first["items"]


def test_remove_a_missing_item_is_404(client: TestClient, alice: Account, tea: dict) -> None:
    order = place(client, alice, [line(tea, 1)])
    response = remove_item(client, alice, order["id"], MISSING_ID)
    assert response.status_code == 404
    assert isinstance(response.json()["detail"], str)


def test_remove_an_already_removed_item_is_404(
    client: TestClient, alice: Account, tea: dict
) -> None:
    order = place(client, alice, [line(tea, 1)])
    item_id = order["items"][0]["id"]
    assert remove_item(client, alice, order["id"], item_id).status_code == 200
    assert remove_item(client, alice, order["id"], item_id).status_code == 404


def test_remove_item_from_another_users_order_is_404(
    client: TestClient, alice: Account, bob: Account, tea: dict
) -> None:
    order = place(client, alice, [line(tea, 1)])
    response = remove_item(client, bob, order["id"], order["items"][0]["id"])
    assert response.status_code == 404
    assert response.json() == get_order(client, bob, MISSING_ID).json()
    assert get_order(client, alice, order["id"]).json()["items"] == order["items"]


@pytest.mark.parametrize("action", ["cancel", "finish"])
def test_remove_item_from_a_closed_order_is_409(
    client: TestClient, alice: Account, tea: dict, action: str
) -> None:
    order = place(client, alice, [line(tea, 1)])
    assert transition(client, alice, order["id"], action).status_code == 200
    response = remove_item(client, alice, order["id"], order["items"][0]["id"])
    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)
    assert get_order(client, alice, order["id"]).json()["items"] == order["items"]


@pytest.mark.parametrize("item_id", ["abc", 0, -1, 2**31])
def test_remove_item_rejects_invalid_item_ids(
    client: TestClient, alice: Account, tea: dict, item_id: object
) -> None:
    order = place(client, alice, [line(tea, 1)])
    assert_validation_error(
        remove_item(client, alice, order["id"], item_id), loc_contains="item_id"
    )


# --- cancel / finish ----------------------------------------------------------------------


@pytest.mark.parametrize(("action", "status"), [("cancel", "cancelled"), ("finish", "finished")])
def test_owner_changes_a_pending_orders_status(
    client: TestClient, alice: Account, tea: dict, action: str, status: str
) -> None:
    order = place(client, alice, [line(tea, 1)])
    response = transition(client, alice, order["id"], action)
    assert response.status_code == 200, response.text
    changed = response.json()
    assert changed["status"] == status
    assert changed["id"] == order["id"]
    assert changed["items"] == order["items"]
    assert changed["total"] == "3.99"
    assert parse_timestamp(changed["updated_at"]) > parse_timestamp(order["updated_at"])
    assert get_order(client, alice, order["id"]).json()["status"] == status


def test_cancelling_an_empty_order_is_allowed(client: TestClient, alice: Account) -> None:
    order = place(client, alice)
    response = transition(client, alice, order["id"], "cancel")
    assert response.status_code == 200
    assert response.json()["status"] == "cancelled"


def test_finishing_an_empty_order_is_409(client: TestClient, alice: Account) -> None:
    order = place(client, alice)
    response = transition(client, alice, order["id"], "finish")
    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)
    assert get_order(client, alice, order["id"]).json()["status"] == "pending"
    assert len(history(client, alice, order["id"])) == 1


def test_finishing_an_order_emptied_by_removing_items_is_409(
    client: TestClient, alice: Account, tea: dict
) -> None:
    order = place(client, alice, [line(tea, 1)])
    assert remove_item(client, alice, order["id"], order["items"][0]["id"]).status_code == 200
    assert transition(client, alice, order["id"], "finish").status_code == 409
    assert get_order(client, alice, order["id"]).json()["status"] == "pending"


@pytest.mark.parametrize(
    ("first", "final", "second"),
    [
        ("cancel", "cancelled", "cancel"),
        ("cancel", "cancelled", "finish"),
        ("finish", "finished", "cancel"),
        ("finish", "finished", "finish"),
    ],
)
def test_changing_a_closed_order_is_409(
    client: TestClient, alice: Account, tea: dict, first: str, final: str, second: str
) -> None:
    order = place(client, alice, [line(tea, 1)])
    assert transition(client, alice, order["id"], first).status_code == 200
    response = transition(client, alice, order["id"], second)
    assert response.status_code == 409
    assert isinstance(response.json()["detail"], str)
    assert get_order(client, alice, order["id"]).json()["status"] == final
    assert len(history(client, alice, order["id"])) == 2


@pytest.mark.parametrize("action", ["cancel", "finish"])
def test_another_user_cannot_change_an_order(
    client: TestClient, alice: Account, bob: Account, tea: dict, action: str
) -> None:
    order = place(client, alice, [line(tea, 1)])
    response = transition(client, bob, order["id"], action)
    assert response.status_code == 404
    assert response.json() == get_order(client, bob, MISSING_ID).json()
    assert get_order(client, alice, order["id"]).json()["status"] == "pending"


@pytest.mark.parametrize("action", ["cancel", "finish"])
def test_changing_a_missing_order_is_404(client: TestClient, alice: Account, action: str) -> None:
    response = transition(client, alice, MISSING_ID, action)
    assert response.status_code == 404
    assert isinstance(response.json()["detail"], str)


@pytest.mark.parametrize(("action", "status"), [("cancel", "cancelled"), ("finish", "finished")])
def test_admin_changes_any_users_order(
    client: TestClient, alice: Account, admin: Account, tea: dict, action: str, status: str
) -> None:
    order = place(client, alice, [line(tea, 1)])
    response = transition(client, admin, order["id"], action)
    assert response.status_code == 200
    assert response.json()["status"] == status
    assert response.json()["user_id"] == alice.id


@pytest.mark.parametrize("order_id", ["abc", 0, -1, 2**31])
def test_changing_an_invalid_order_id_is_422(
    client: TestClient, alice: Account, order_id: object
) -> None:
    response = client.post(f"/order/{order_id}/cancel", headers=alice.headers)
    assert_validation_error(response, loc_contains="order_id")


# --- history ------------------------------------------------------------------------------


def test_history_starts_with_the_creation(client: TestClient, alice: Account) -> None:
    order = place(client, alice)
    entries = history(client, alice, order["id"])
    assert len(entries) == 1
    assert set(entries[0]) == HISTORY_FIELDS
    assert entries[0]["from_status"] is None
    assert entries[0]["to_status"] == "pending"
    assert entries[0]["changed_by"] == alice.id
    assert parse_timestamp(entries[0]["changed_at"]) == parse_timestamp(order["created_at"])


def test_history_records_the_admin_who_finished_the_order(
    client: TestClient, alice: Account, admin: Account, tea: dict
) -> None:
    order = place(client, alice, [line(tea, 1)])
    assert transition(client, admin, order["id"], "finish").status_code == 200
    entries = history(client, alice, order["id"])
    assert [(e["from_status"], e["to_status"], e["changed_by"]) for e in entries] == [
        (None, "pending", alice.id),
        ("pending", "finished", admin.id),
    ]
    assert parse_timestamp(entries[0]["changed_at"]) <= parse_timestamp(entries[1]["changed_at"])


def test_history_records_the_owner_who_cancelled(
    client: TestClient, alice: Account, admin: Account
) -> None:
    order = place(client, alice)
    assert transition(client, alice, order["id"], "cancel").status_code == 200
    entries = history(client, admin, order["id"])
    assert [(e["from_status"], e["to_status"], e["changed_by"]) for e in entries] == [
        (None, "pending", alice.id),
        ("pending", "cancelled", alice.id),
    ]


def test_history_timestamps_are_iso_8601_in_utc(
    client: TestClient, alice: Account, tea: dict
) -> None:
    order = place(client, alice, [line(tea, 1)])
    assert transition(client, alice, order["id"], "finish").status_code == 200
    for entry in history(client, alice, order["id"]):
        assert parse_timestamp(entry["changed_at"]).utcoffset() == timedelta(0)


def test_order_timestamps_are_iso_8601_in_utc(client: TestClient, alice: Account) -> None:
    order = place(client, alice)
    for field in ("created_at", "updated_at"):
        assert parse_timestamp(order[field]).utcoffset() == timedelta(0)


def test_item_changes_do_not_add_history_entries(
    client: TestClient, alice: Account, tea: dict, sugar: dict
) -> None:
    order = place(client, alice, [line(tea, 1)])
    assert add_item(client, alice, order["id"], line(sugar, 1)).status_code == 201
    assert remove_item(client, alice, order["id"], order["items"][0]["id"]).status_code == 200
    assert len(history(client, alice, order["id"])) == 1


def test_history_of_another_users_order_is_404(
    client: TestClient, alice: Account, bob: Account
) -> None:
    order = place(client, alice)
    response = client.get(f"/order/{order['id']}/history", headers=bob.headers)
    assert response.status_code == 404
    assert response.json() == get_order(client, bob, MISSING_ID).json()


def test_history_of_a_missing_order_is_404(client: TestClient, alice: Account) -> None:
    response = client.get(f"/order/{MISSING_ID}/history", headers=alice.headers)
    assert response.status_code == 404


# --- races --------------------------------------------------------------------------------


def test_racing_status_changes_have_exactly_one_winner(
    client: TestClient, alice: Account, tea: dict
) -> None:
    for _ in range(5):
        order = place(client, alice, [line(tea, 1)])
        actions = ["cancel", "finish"] * (THREADS // 2)
        calls = [partial(transition, client, alice, order["id"], action) for action in actions]
        responses = run_concurrently(calls)

        codes = sorted(r.status_code for r in responses)
        assert codes == [200] + [409] * (THREADS - 1), [r.text for r in responses]
        winner = next(r.json() for r in responses if r.status_code == 200)
        assert winner["status"] in {"cancelled", "finished"}
        assert get_order(client, alice, order["id"]).json()["status"] == winner["status"]
        entries = history(client, alice, order["id"])
        assert len(entries) == 2
        assert entries[1]["from_status"] == "pending"
        assert entries[1]["to_status"] == winner["status"]


def test_racing_owner_and_admin_have_exactly_one_winner(
    client: TestClient, alice: Account, admin: Account, tea: dict
) -> None:
    order = place(client, alice, [line(tea, 1)])
    calls = [
        partial(transition, client, who, order["id"], "cancel")
        for who in [alice, admin] * (THREADS // 2)
    ]
    responses = run_concurrently(calls)
    assert sorted(r.status_code for r in responses) == [200] + [409] * (THREADS - 1)
    assert len(history(client, alice, order["id"])) == 2


def test_racing_additions_to_one_line_are_all_counted(
    client: TestClient, alice: Account, sugar: dict
) -> None:
    # Regression: each increment must be applied to the quantity read under the row lock, not
    # to a copy loaded before it (lost updates, seen on PostgreSQL).
    for _ in range(3):
        order = place(client, alice, [line(sugar, 50)])
        calls = [partial(add_item, client, alice, order["id"], line(sugar, 20))] * THREADS
        responses = run_concurrently(calls)

        codes = sorted(r.status_code for r in responses)
        assert codes == [201, 201] + [422] * (THREADS - 2), [r.text for r in responses]
        # Each accepted addition answers with an order that includes it.
        assert all(
            r.json()["items"][0]["quantity"] >= 70 for r in responses if r.status_code == 201
        )
        final = get_order(client, alice, order["id"]).json()
        assert final["items"][0]["quantity"] == 90
        assert final["total"] == "9.00"


def test_racing_removals_of_one_item_have_exactly_one_winner(
    client: TestClient, alice: Account, tea: dict, sugar: dict
) -> None:
    order = place(client, alice, [line(tea, 1), line(sugar, 1)])
    tea_line = next(item for item in order["items"] if item["product_id"] == tea["id"])
    calls = [partial(remove_item, client, alice, order["id"], tea_line["id"])] * THREADS
    responses = run_concurrently(calls)
    assert sorted(r.status_code for r in responses) == [200] + [404] * (THREADS - 1)
    final = get_order(client, alice, order["id"]).json()
    assert [item["product_id"] for item in final["items"]] == [sugar["id"]]
    assert final["total"] == "0.10"


def test_no_item_change_slips_into_an_order_closed_in_a_race(
    client: TestClient, alice: Account, admin: Account, coffee: dict, tea: dict
) -> None:
    # Each adder brings a product of its own, so every accepted addition is a new line.
    extras = [create_product(client, admin, f"Extra {n}", "1.00") for n in range(THREADS - 3)]
    for _ in range(3):
        order = place(client, alice, [line(coffee, 1), line(tea, 1)])
        tea_line = next(item for item in order["items"] if item["product_id"] == tea["id"])
        calls = [
            partial(transition, client, alice, order["id"], "finish"),
            partial(transition, client, alice, order["id"], "cancel"),
            partial(remove_item, client, alice, order["id"], tea_line["id"]),
        ] + [partial(add_item, client, alice, order["id"], line(extra, 1)) for extra in extras]
        responses = run_concurrently(calls)

        transitions = [r.status_code for r in responses[:2]]
        assert sorted(transitions) == [200, 409]
        winner = responses[transitions.index(200)].json()
        # Every item change either happened before the status changed (and is in the winner's
        # answer) or was refused with 409; nothing changes after.
        assert get_order(client, alice, order["id"]).json() == winner
        assert responses[2].status_code in {200, 409}
        assert all(r.status_code in {201, 409} for r in responses[3:])
        added = {
            extra["id"]
            for extra, r in zip(extras, responses[3:], strict=True)
            if r.status_code == 201
        }
        extra_ids = {extra["id"] for extra in extras}
        assert {i["product_id"] for i in winner["items"]} & extra_ids == added
        tea_kept = any(i["product_id"] == tea["id"] for i in winner["items"])
        assert tea_kept == (responses[2].status_code == 409)


def test_concurrent_orders_from_several_users_are_all_created(
    client: TestClient, tea: dict
) -> None:
    accounts = [make_account(client, f"user{n}@example.com") for n in range(3)]
    calls = [partial(create_order, client, who, [line(tea, 1)]) for who in accounts * 3]
    responses = run_concurrently(calls)
    assert [r.status_code for r in responses] == [201] * len(calls)
    assert len({r.json()["id"] for r in responses}) == len(calls)
    for account in accounts:
        assert order_count(client, account) == 3
