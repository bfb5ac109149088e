"""The list route costs the same number of SQL statements whatever the page size."""

import pytest
from sqlalchemy import event

from asgi_client import TestClient
from conftest import Account


@pytest.fixture
def statements(client: TestClient) -> list[str]:
    """Every statement the database runs from now on, as the driver sees it.

    On SQLite the hot reads bypass SQLAlchemy's events (prepared.py), so statements are
    traced by SQLite itself, on connections opened after the app's are closed here.
    """
    seen: list[str] = []
    db = client.app.state.db
    if db.engine.dialect.name == "sqlite":
        db.dispose()

        def trace(dbapi_connection, _record) -> None:
            dbapi_connection.set_trace_callback(seen.append)

        event.listen(db.engine, "connect", trace)
        yield seen
        event.remove(db.engine, "connect", trace)
    else:

        def record(_conn, _cursor, statement, *_args) -> None:
            seen.append(statement)

        event.listen(db.engine, "before_cursor_execute", record)
        yield seen
        event.remove(db.engine, "before_cursor_execute", record)


def test_order_list_runs_a_constant_number_of_queries(
    client: TestClient,
    alice: Account,
    admin: Account,
    products: list[dict],
    statements: list[str],
) -> None:
    items = [{"product_id": p["id"], "quantity": 1} for p in products]
    for _ in range(25):
        assert (
            client.post("/order", json={"items": items}, headers=alice.headers).status_code == 201
        )

    counts = {}
    for limit in (1, 5, 25):
        for who in (alice, admin):
            statements.clear()
            response = client.get("/order", params={"limit": limit}, headers=who.headers)
            assert response.status_code == 200
            assert len(response.json()["items"]) == limit
            assert all(len(order["items"]) == 3 for order in response.json()["items"])
            counts[(limit, who.email)] = len(statements)
    assert len(set(counts.values())) == 1, counts
    # the current user, the count, and the page with its lines; on SQLite first the newest
    # id, which says whether the count may run on the event loop; on PostgreSQL first the
    # heavy read's setting (no parallel workers)
    assert set(counts.values()) == {4}


def test_one_order_is_read_in_one_query(
    client: TestClient, alice: Account, products: list[dict], statements: list[str]
) -> None:
    items = [{"product_id": p["id"], "quantity": 2} for p in products]
    order = client.post("/order", json={"items": items}, headers=alice.headers).json()
    statements.clear()
    assert client.get(f"/order/{order['id']}", headers=alice.headers).status_code == 200
    assert len(statements) == 2  # the current user, then the order with its lines
