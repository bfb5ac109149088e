"""Precompiled statements return exactly what SQLAlchemy Core returns for the same statement,
and the engine's cursor listeners see them."""

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Connection, Select, bindparam, delete, event, insert, select, text
from sqlalchemy.exc import IntegrityError

import order_queries
from asgi_client import TestClient
from conftest import Account, signup
from models import Order, OrderStatus, OrderStatusChange, User
from precompiled import Precompiled

BY_STATUS = select(Order.id).where(Order.status == bindparam("status")).order_by(Order.id)


ORDER_LINES = order_queries._ORDER_LINES.order_by(Order.id, "item_id")


@pytest.mark.parametrize(
    ("statement", "params", "repeated"),
    [
        # typed columns: UTC timestamps, the status enum, money, booleans
        (ORDER_LINES, {}, ()),
        # the same, each order's columns converted once for all its lines
        (ORDER_LINES, {}, order_queries._REPEATED),
        (select(User.id, User.is_active, User.is_admin, User.created_at).order_by(User.id), {}, ()),
        # an enum bound as a parameter
        (BY_STATUS, {"status": OrderStatus.pending}, ()),
    ],
)
def test_precompiled_rows_equal_core_rows(
    client: TestClient,
    alice: Account,
    products: list[dict],
    statement: Select,
    params: dict,
    repeated: tuple[str, ...],
) -> None:
    items = [{"product_id": p["id"], "quantity": 2} for p in products]
    for _ in range(2):
        assert (
            client.post("/order", json={"items": items}, headers=alice.headers).status_code == 201
        )
    with client.app.state.db.engine.connect() as conn:
        core = [tuple(row) for row in conn.execute(statement, params).all()]
        precompiled = [
            tuple(row) for row in Precompiled(statement, repeated=repeated).all(conn, params)
        ]
    assert len(core) >= 2
    assert precompiled == core
    assert [[type(value) for value in row] for row in precompiled] == [
        [type(value) for value in row] for row in core
    ]
    # A repeated column's equal values are one converted object: on SQLite, where the
    # statement is precompiled (elsewhere Core runs it and converts every row).
    if client.app.state.db.inline:
        for key in repeated:
            index = statement.selected_columns.keys().index(key)
            shared = {id(row[index]) for row in precompiled}
            assert len(shared) == len({row[index] for row in core})


def test_no_rows_and_too_many_rows(client: TestClient, alice: Account) -> None:
    signup(client, "bob@example.com")
    with client.app.state.db.engine.connect() as conn:
        assert Precompiled(BY_STATUS).all(conn, {"status": OrderStatus.finished}) == []
        assert Precompiled(select(User.id).where(User.id == 0)).one_or_none(conn, {}) is None
        with pytest.raises(ValueError, match="more than one row"):
            Precompiled(select(User.id)).one_or_none(conn, {})


def test_precompiled_writes_store_what_core_stores(
    client: TestClient, alice: Account, products: list[dict]
) -> None:
    items = [{"product_id": products[0]["id"], "quantity": 1}]
    order_id = client.post("/order", json={"items": items}, headers=alice.headers).json()["id"]
    change = insert(OrderStatusChange).values(
        order_id=bindparam("order_id"),
        from_status=bindparam("from_status"),
        to_status=bindparam("to_status"),
        changed_by=bindparam("changed_by"),
        changed_at=bindparam("at"),
    )
    at = datetime(2026, 5, 1, 9, 30, 0, 123456, tzinfo=timezone(timedelta(hours=-3)))
    params = {
        "order_id": order_id,
        "from_status": OrderStatus.pending,
        "to_status": OrderStatus.cancelled,
        "changed_by": alice.id,
        "at": at,
    }

    def both(conn: Connection) -> list[tuple]:
        Precompiled(change).execute_many(conn, [params])
        conn.execute(change, params)
        stored = conn.execute(
            text(
                "SELECT from_status, to_status, changed_by, changed_at FROM order_status_changes"
                " WHERE to_status = 'cancelled' ORDER BY id"
            )
        ).all()
        return [tuple(row) for row in stored]

    by_precompiled, by_core = asyncio.run(client.app.state.db.write(both))
    assert by_precompiled == by_core
    assert by_precompiled[:2] == ("pending", "cancelled")


def test_a_precompiled_write_outside_a_write_transaction_is_refused(client: TestClient) -> None:
    db = client.app.state.db
    if db.engine.dialect.name != "sqlite":
        pytest.skip("SQLite's write discipline")
    statement = Precompiled(delete(User).where(User.id == bindparam("id")))
    with pytest.raises(RuntimeError, match=r"Database\.write"):
        db.read_sync(statement.execute_many, [{"id": 1}])


def test_a_precompiled_statement_fails_with_the_error_core_raises(
    client: TestClient, alice: Account
) -> None:
    """The driver's error comes wrapped as Core wraps it, so an `except IntegrityError` (or
    the one handler that answers 503 for an OperationalError) sees it either way."""
    # Precompiled statements get no Python-side defaults: every column is given.
    duplicate = insert(User).values(
        email=bindparam("email"),
        name="Twin",
        password_hash="x",
        is_active=True,
        is_admin=False,
        created_at=datetime.now(UTC),
    )

    def fails(run: Callable[[Connection], object]) -> type[BaseException]:
        with pytest.raises(IntegrityError, match=r"(?i)unique") as raised:
            asyncio.run(client.app.state.db.write(run))
        return type(raised.value)

    by_core = fails(lambda conn: conn.execute(duplicate, {"email": alice.email}))
    by_precompiled = fails(
        lambda conn: Precompiled(duplicate).execute_many(conn, [{"email": alice.email}])
    )
    assert by_precompiled is by_core


def test_cursor_listeners_see_precompiled_statements(client: TestClient, alice: Account) -> None:
    db = client.app.state.db
    seen: list[tuple[str, str]] = []

    def before(_conn, _cursor, statement, _params, _context, _many) -> None:
        seen.append(("before", statement))

    def after(_conn, _cursor, statement, _params, _context, _many) -> None:
        seen.append(("after", statement))

    event.listen(db.engine, "before_cursor_execute", before)
    event.listen(db.engine, "after_cursor_execute", after)
    try:
        assert client.get("/auth/me", headers=alice.headers).status_code == 200
    finally:
        event.remove(db.engine, "before_cursor_execute", before)
        event.remove(db.engine, "after_cursor_execute", after)
    assert [when for when, _ in seen] == ["before", "after"]
    assert "FROM users" in seen[0][1]
    assert seen[0][1] == seen[1][1]
