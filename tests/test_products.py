import pytest

from asgi_client import TestClient
from conftest import Account


def create(client: TestClient, admin: Account, **body: object):
    return client.post("/product", json=body, headers=admin.headers)


def test_admin_creates_a_product(client: TestClient, admin: Account) -> None:
    response = create(client, admin, name=" Coffee ", price="12.5", description="Whole beans")
    assert response.status_code == 201
    assert response.json() == {
        "id": response.json()["id"],
        "name": "Coffee",
        "description": "Whole beans",
        "price": "12.50",
        "is_active": True,
        "stock": None,
    }


@pytest.mark.parametrize(
    ("price", "expected"),
    [(12.5, "12.50"), (3, "3.00"), ("0.01", "0.01"), ("99999999.99", "99999999.99")],
)
def test_price_accepts_numbers_and_decimal_strings(
    client: TestClient, admin: Account, price: object, expected: str
) -> None:
    response = create(client, admin, name="Item", price=price)
    assert response.status_code == 201, response.text
    assert response.json()["price"] == expected


@pytest.mark.parametrize(
    "price", [0, -1, "0.00", "1.234", 1.005, "abc", None, True, "NaN", "Infinity", "100000000.00"]
)
def test_bad_prices_are_422(client: TestClient, admin: Account, price: object) -> None:
    assert create(client, admin, name="Item", price=price).status_code == 422


@pytest.mark.parametrize(
    "body",
    [
        {"name": "", "price": "1.00"},
        {"name": "   ", "price": "1.00"},
        {"name": "x" * 201, "price": "1.00"},
        {"name": "Bad\u0000name", "price": "1.00"},
        {"name": "Item", "price": "1.00", "description": "x" * 2001},
        {"name": "Item", "price": "1.00", "is_active": False},
        {"name": "Item", "price": "1.00", "id": 7},
        {"price": "1.00"},
    ],
)
def test_invalid_product_bodies_are_422(client: TestClient, admin: Account, body: dict) -> None:
    response = client.post("/product", json=body, headers=admin.headers)
    assert response.status_code == 422
    assert isinstance(response.json()["detail"], list)


def test_lone_surrogate_in_json_is_422(client: TestClient, admin: Account) -> None:
    # Valid JSON, but no database can store it: refused before it gets that far.
    response = client.post(
        "/product",
        content=b'{"name": "Bad\\ud800name", "price": "1.00"}',
        headers={**admin.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 422
    assert client.get("/product").json() == []


def test_duplicate_name_is_409(client: TestClient, admin: Account) -> None:
    assert create(client, admin, name="Tea", price="1.00").status_code == 201
    response = create(client, admin, name="Tea", price="2.00")
    assert response.status_code == 409
    assert response.json() == {"detail": "A product with this name already exists"}


def test_only_admins_write_the_catalogue(client: TestClient, alice: Account) -> None:
    response = create(client, alice, name="Tea", price="1.00")
    assert response.status_code == 403
    assert client.post("/product", json={"name": "Tea", "price": "1.00"}).status_code == 401
    response = client.patch("/product/1", json={"price": "1.00"}, headers=alice.headers)
    assert response.status_code == 403


def test_anyone_lists_active_products(client: TestClient, products: list[dict]) -> None:
    response = client.get("/product")
    assert response.status_code == 200
    assert [p["name"] for p in response.json()] == ["Coffee", "Tea", "Sugar"]


def test_inactive_products_leave_the_list_but_stay_readable(
    client: TestClient, admin: Account, products: list[dict]
) -> None:
    tea = products[1]
    response = client.patch(
        f"/product/{tea['id']}", json={"is_active": False}, headers=admin.headers
    )
    assert response.status_code == 200
    assert response.json()["is_active"] is False
    assert [p["name"] for p in client.get("/product").json()] == ["Coffee", "Sugar"]
    response = client.get(f"/product/{tea['id']}")
    assert response.status_code == 200
    assert response.json()["name"] == "Tea"


def test_patch_changes_only_given_fields(
    client: TestClient, admin: Account, products: list[dict]
) -> None:
    coffee = products[0]
    response = client.patch(
        f"/product/{coffee['id']}",
        json={"price": "13", "description": "Dark roast"},
        headers=admin.headers,
    )
    assert response.status_code == 200
    assert response.json() == {**coffee, "price": "13.00", "description": "Dark roast"}
    response = client.patch(
        f"/product/{coffee['id']}", json={"description": None}, headers=admin.headers
    )
    assert response.json()["description"] is None


@pytest.mark.parametrize(
    "body",
    [
        {"name": None},
        {"price": None},
        {"is_active": None},
        {"price": "0"},
        {"id": 3},
        {"is_active": "no"},
    ],
)
def test_patch_refuses_bad_values(
    client: TestClient, admin: Account, products: list[dict], body: dict
) -> None:
    response = client.patch(f"/product/{products[0]['id']}", json=body, headers=admin.headers)
    assert response.status_code == 422


def test_patch_to_a_taken_name_is_409(
    client: TestClient, admin: Account, products: list[dict]
) -> None:
    response = client.patch(
        f"/product/{products[0]['id']}", json={"name": "Tea"}, headers=admin.headers
    )
    assert response.status_code == 409
    assert client.get(f"/product/{products[0]['id']}").json()["name"] == "Coffee"


def test_missing_product_is_404(client: TestClient, admin: Account) -> None:
    assert client.get("/product/999").json() == {"detail": "Product not found"}
    assert client.get("/product/999").status_code == 404
    response = client.patch("/product/999", json={"price": "1"}, headers=admin.headers)
    assert response.status_code == 404


@pytest.mark.parametrize("product_id", ["abc", "0", "-1", str(2**31), "1.5"])
def test_bad_product_ids_are_422(client: TestClient, product_id: str) -> None:
    assert client.get(f"/product/{product_id}").status_code == 422


@pytest.mark.parametrize("name", ["\u200b", "\u200b \u200d", "Two\u2028lines"])
def test_invisible_or_multi_line_names_are_422(
    client: TestClient, admin: Account, name: str
) -> None:
    assert create(client, admin, name=name, price="1.00").status_code == 422
