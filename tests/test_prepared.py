"""Prepared statements return exactly what SQLAlchemy Core returns for the same statement."""

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Select, bindparam, select

import order_queries
from conftest import Account, signup
from models import Order, OrderStatus, User
from prepared import Prepared

BY_STATUS = select(Order.id).where(Order.status == bindparam("status")).order_by(Order.id)


@pytest.mark.parametrize(
    ("statement", "params"),
    [
        # typed columns: UTC timestamps, the status enum, money, booleans
        (order_queries._ORDER_LINES.order_by(Order.id, "item_id"), {}),
        (select(User.id, User.is_active, User.is_admin, User.created_at).order_by(User.id), {}),
        # an enum bound as a parameter
        (BY_STATUS, {"status": OrderStatus.pending}),
    ],
)
def test_prepared_rows_equal_core_rows(
    client: TestClient,
    alice: Account,
    products: list[dict],
    statement: Select,
    params: dict,
) -> None:
    items = [{"product_id": p["id"], "quantity": 2} for p in products]
    for _ in range(2):
        assert (
            client.post("/order", json={"items": items}, headers=alice.headers).status_code == 201
        )
    with client.app.state.db.engine.connect() as conn:
        core = [tuple(row) for row in conn.execute(statement, params).all()]
        prepared = [tuple(row) for row in Prepared(statement).all(conn, params)]
    assert len(core) >= 2
    assert prepared == core
    assert [[type(value) for value in row] for row in prepared] == [
        [type(value) for value in row] for row in core
    ]


def test_no_rows_and_too_many_rows(client: TestClient, alice: Account) -> None:
    signup(client, "bob@example.com")
    with client.app.state.db.engine.connect() as conn:
        assert Prepared(BY_STATUS).all(conn, {"status": OrderStatus.finished}) == []
        assert Prepared(select(User.id).where(User.id == 0)).one_or_none(conn, {}) is None
        with pytest.raises(ValueError, match="more than one row"):
            Prepared(select(User.id)).one_or_none(conn, {})
