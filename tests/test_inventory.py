"""Inventory: stock taken with the order, given back by removed lines and cancelled orders,
kept by finished ones; admins set, adjust and audit it. A product's movements always add up
to its stock."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from asgi_client import TestClient
from conftest import Account


def product(client: TestClient, admin: Account, name: str, stock: int | None) -> dict:
    body = {"name": name, "price": "2.50", "stock": stock}
    response = client.post("/product", json=body, headers=admin.headers)
    assert response.status_code == 201, response.text
    return response.json()


def stock_of(client: TestClient, product_id: int) -> int | None:
    return client.get(f"/product/{product_id}").json()["stock"]


def movements(client: TestClient, admin: Account, product_id: int) -> list[dict]:
    items, offset = [], 0
    while True:
        page = client.get(
            f"/product/{product_id}/stock-movements",
            params={"limit": 100, "offset": offset},
            headers=admin.headers,
        ).json()
        items += page["items"]
        offset += 100
        if offset >= page["total"]:
            return items


def assert_movements_add_up(client: TestClient, admin: Account, product_id: int) -> None:
    total = sum(m["delta"] for m in movements(client, admin, product_id))
    assert total == (stock_of(client, product_id) or 0)


def order(client: TestClient, who: Account, *lines: tuple[dict, int]):
    items = [{"product_id": p["id"], "quantity": q} for p, q in lines]
    return client.post("/order", json={"items": items}, headers=who.headers)


@pytest.fixture
def beans(client: TestClient, admin: Account) -> dict:
    return product(client, admin, "Beans", 10)


@pytest.fixture
def tea(client: TestClient, admin: Account) -> dict:
    return product(client, admin, "Tea", None)


# --- the catalogue ------------------------------------------------------------------------


def test_stock_is_null_unless_set(client: TestClient, admin: Account, tea: dict) -> None:
    assert tea["stock"] is None
    assert movements(client, admin, tea["id"]) == []


def test_setting_stock_records_the_difference(
    client: TestClient, admin: Account, beans: dict
) -> None:
    path = f"/product/{beans['id']}"
    assert client.patch(path, json={"stock": 4}, headers=admin.headers).json()["stock"] == 4
    assert client.patch(path, json={"stock": None}, headers=admin.headers).json()["stock"] is None
    assert client.patch(path, json={"stock": 7}, headers=admin.headers).json()["stock"] == 7
    deltas = [m["delta"] for m in reversed(movements(client, admin, beans["id"]))]
    assert deltas == [10, -6, -4, 7]
    assert {m["reason"] for m in movements(client, admin, beans["id"])} == {"adjustment"}
    assert_movements_add_up(client, admin, beans["id"])


@pytest.mark.parametrize("stock", [-1, 1_000_000_001, "5", 2.5, True])
def test_a_bad_stock_is_422(client: TestClient, admin: Account, stock: object) -> None:
    body = {"name": "Bad", "price": "1.00", "stock": stock}
    assert client.post("/product", json=body, headers=admin.headers).status_code == 422


def test_an_admin_adjusts_stock_atomically_with_a_note(
    client: TestClient, admin: Account, beans: dict
) -> None:
    path = f"/product/{beans['id']}/stock"
    response = client.post(path, json={"delta": -3, "note": "damaged"}, headers=admin.headers)
    assert response.status_code == 200
    assert response.json()["stock"] == 7
    latest = movements(client, admin, beans["id"])[0]
    assert (latest["delta"], latest["reason"], latest["note"]) == (-3, "adjustment", "damaged")
    assert latest["changed_by"] == admin.id
    assert latest["order_id"] is None


@pytest.mark.parametrize(
    ("delta", "status", "detail"),
    [(-11, 409, "below 0"), (0, 422, None), (1_000_001, 422, None)],
)
def test_adjustments_that_cannot_apply_are_refused(
    client: TestClient, admin: Account, beans: dict, delta: int, status: int, detail: str | None
) -> None:
    response = client.post(
        f"/product/{beans['id']}/stock", json={"delta": delta}, headers=admin.headers
    )
    assert response.status_code == status
    if detail:
        assert detail in response.json()["detail"]
    assert stock_of(client, beans["id"]) == 10


def test_an_adjustment_past_the_largest_stock_is_409(client: TestClient, admin: Account) -> None:
    full = product(client, admin, "Full", 1_000_000_000)
    response = client.post(f"/product/{full['id']}/stock", json={"delta": 1}, headers=admin.headers)
    assert response.status_code == 409
    assert "above 1000000000" in response.json()["detail"]
    assert stock_of(client, full["id"]) == 1_000_000_000


def test_adjusting_an_untracked_or_missing_product(
    client: TestClient, admin: Account, tea: dict
) -> None:
    untracked = client.post(f"/product/{tea['id']}/stock", json={"delta": 5}, headers=admin.headers)
    assert untracked.status_code == 409
    assert "not tracked" in untracked.json()["detail"]
    missing = client.post("/product/999999/stock", json={"delta": 5}, headers=admin.headers)
    assert missing.status_code == 404
    assert client.get("/product/999999/stock-movements", headers=admin.headers).status_code == 404


def test_only_admins_adjust_or_read_movements(
    client: TestClient, alice: Account, beans: dict
) -> None:
    path = f"/product/{beans['id']}"
    assert client.post(f"{path}/stock", json={"delta": 1}, headers=alice.headers).status_code == 403
    assert client.get(f"{path}/stock-movements", headers=alice.headers).status_code == 403
    assert client.post(f"{path}/stock", json={"delta": 1}).status_code == 401
    assert client.get(f"{path}/stock-movements").status_code == 401


def test_in_stock_filters_the_catalogue(client: TestClient, admin: Account, tea: dict) -> None:
    empty = product(client, admin, "Empty", 0)
    full = product(client, admin, "Full", 3)
    ids = lambda **params: [p["id"] for p in client.get("/product", params=params).json()]  # noqa: E731
    assert ids(in_stock="true") == [tea["id"], full["id"]]
    assert ids(in_stock="false") == [empty["id"]]
    assert ids() == [tea["id"], empty["id"], full["id"]]
    assert client.get("/product", params={"in_stock": "maybe"}).status_code == 422


# --- orders take and give back --------------------------------------------------------------


def test_an_order_takes_its_units_and_records_them(
    client: TestClient, admin: Account, alice: Account, beans: dict, tea: dict
) -> None:
    placed = order(client, alice, (beans, 3), (tea, 50))
    assert placed.status_code == 201
    assert stock_of(client, beans["id"]) == 7
    assert stock_of(client, tea["id"]) is None  # untracked: never limited, never recorded
    taken = movements(client, admin, beans["id"])[0]
    assert (taken["delta"], taken["reason"]) == (-3, "order")
    assert (taken["order_id"], taken["changed_by"]) == (placed.json()["id"], alice.id)
    assert movements(client, admin, tea["id"]) == []


def test_a_short_product_refuses_the_whole_order(
    client: TestClient, admin: Account, alice: Account, beans: dict
) -> None:
    other = product(client, admin, "Other", 5)
    response = order(client, alice, (other, 2), (beans, 11))
    assert response.status_code == 409
    assert str(beans["id"]) in response.json()["detail"]
    assert (stock_of(client, beans["id"]), stock_of(client, other["id"])) == (10, 5)
    assert client.get("/order", headers=alice.headers).json()["total"] == 0
    assert_movements_add_up(client, admin, other["id"])


def test_added_items_take_and_removed_lines_give_back(
    client: TestClient, admin: Account, alice: Account, beans: dict
) -> None:
    placed = order(client, alice, (beans, 2)).json()
    path = f"/order/{placed['id']}"
    more = client.post(
        f"{path}/items", json={"product_id": beans["id"], "quantity": 3}, headers=alice.headers
    )
    assert more.status_code == 201
    assert stock_of(client, beans["id"]) == 5
    too_many = client.post(
        f"{path}/items", json={"product_id": beans["id"], "quantity": 6}, headers=alice.headers
    )
    assert too_many.status_code == 409
    assert stock_of(client, beans["id"]) == 5
    item_id = more.json()["items"][0]["id"]
    assert client.delete(f"{path}/items/{item_id}", headers=alice.headers).status_code == 200
    assert stock_of(client, beans["id"]) == 10
    assert [m["reason"] for m in movements(client, admin, beans["id"])][:1] == ["release"]
    assert_movements_add_up(client, admin, beans["id"])


def test_cancelling_gives_back_and_finishing_keeps(
    client: TestClient, admin: Account, alice: Account, beans: dict
) -> None:
    cancelled = order(client, alice, (beans, 4)).json()
    finished = order(client, alice, (beans, 5)).json()
    assert stock_of(client, beans["id"]) == 1
    assert client.post(f"/order/{cancelled['id']}/cancel", headers=alice.headers).status_code == 200
    assert client.post(f"/order/{finished['id']}/finish", headers=alice.headers).status_code == 200
    assert stock_of(client, beans["id"]) == 5
    assert_movements_add_up(client, admin, beans["id"])


def test_a_release_gives_back_what_the_order_took_even_if_tracking_changed(
    client: TestClient, admin: Account, alice: Account, tea: dict
) -> None:
    placed = order(client, alice, (tea, 2)).json()  # tea untracked: nothing taken
    client.patch(f"/product/{tea['id']}", json={"stock": 10}, headers=admin.headers)
    assert client.post(f"/order/{placed['id']}/cancel", headers=alice.headers).status_code == 200
    assert stock_of(client, tea["id"]) == 10  # nothing to give back
    assert_movements_add_up(client, admin, tea["id"])


def test_an_idempotent_replay_takes_nothing_again(
    client: TestClient, alice: Account, beans: dict
) -> None:
    headers = {**alice.headers, "Idempotency-Key": "once"}
    body = {"items": [{"product_id": beans["id"], "quantity": 4}]}
    assert client.post("/order", json=body, headers=headers).status_code == 201
    replay = client.post("/order", json=body, headers=headers)
    assert replay.status_code == 200
    assert stock_of(client, beans["id"]) == 6


def test_concurrent_orders_never_oversell(
    client: TestClient, admin: Account, alice: Account, beans: dict
) -> None:
    with ThreadPoolExecutor(max_workers=10) as pool:
        codes = list(pool.map(lambda _: order(client, alice, (beans, 1)).status_code, range(25)))
    assert codes.count(201) == 10
    assert codes.count(409) == 15
    assert stock_of(client, beans["id"]) == 0
    assert_movements_add_up(client, admin, beans["id"])
