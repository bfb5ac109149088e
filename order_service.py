"""The order rules: who sees which orders, what an order may contain, what a line costs,
which transitions exist.

A line takes its unit price from the catalogue when it is created and keeps it; what lines
and orders add up to is computed in one place, `order_queries.line_total`, for every read.

Every command here is a function of a connection in a write transaction that
`Database.write` began (holding the write lock on SQLite) and commits when the command
returns; a command that raises leaves nothing behind. The inserts every new order makes are
precompiled (`precompiled.py`).

Every change to an order starts with a conditional UPDATE of its row (`... WHERE status =
'pending'`). That statement both checks the rule and locks the row (PostgreSQL) or holds the
write lock (SQLite), so concurrent requests are settled by the database: exactly one of two
racing transitions wins, and no item slips into an order that was just finished.
"""

import hashlib
import json
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import Connection, bindparam, delete, exists, insert, select, update
from sqlalchemy.exc import IntegrityError

import inventory
import order_queries
import outbox
from errors import Conflict, Forbidden, NotFound, Unprocessable
from models import (
    MAX_QUANTITY,
    EventType,
    IdempotencyRecord,
    Order,
    OrderItem,
    OrderStatus,
    OrderStatusChange,
    Product,
    utcnow,
)
from precompiled import Precompiled, bound
from schemas import OrderItemIn, OrderPublic, UserPublic

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.pending: frozenset({OrderStatus.cancelled, OrderStatus.finished}),
    OrderStatus.cancelled: frozenset(),
    OrderStatus.finished: frozenset(),
}
# An order's lines may change while it can still move on: a pending one.
CHANGEABLE = frozenset(status for status, targets in TRANSITIONS.items() if targets)


# --- who sees which orders ----------------------------------------------------------------


def owner_scope(user: UserPublic) -> int | None:
    """Whose orders the user may see and change: their own, or everyone's (None) for an admin."""
    return None if user.is_admin else user.id


def may_access(user: UserPublic, order: OrderPublic) -> bool:
    scope = owner_scope(user)
    return scope is None or scope == order.user_id


def listed_owner(user: UserPublic, requested: int | None) -> int | None:
    """The owner a list of orders is restricted to (None: everyone), for a requested one."""
    scope = owner_scope(user)
    if requested is None:
        return scope
    if scope is not None:
        raise Forbidden("Only admins may filter by user")
    return requested


_PRICES: dict[int, Precompiled] = {}


def _active_prices_of(ids: Sequence[int]) -> Precompiled:
    """Price and tracking of the active products among `ids`: a statement per number of ids,
    precompiled once (an expanding IN is compiled again on every run)."""
    statement = _PRICES.get(len(ids))
    if statement is None:
        wanted = [bindparam(f"id{n}") for n in range(len(ids))]
        statement = _PRICES[len(ids)] = Precompiled(
            select(Product.id, Product.price, Product.stock.is_not(None).label("tracked")).where(
                Product.id.in_(wanted), Product.is_active
            )
        )
    return statement


def _prices(conn: Connection, ids: Sequence[int]) -> list[Sequence]:
    return _active_prices_of(ids).all(conn, {f"id{n}": id_ for n, id_ in enumerate(ids)})


# The writes of every new order are precompiled: through Core they cost most of the request.
_INSERT_ORDER = Precompiled(
    insert(Order)
    .values(bound("user_id", "status", created_at="now", updated_at="now"))
    .returning(Order.id)
)
_INSERT_LINE = Precompiled(
    insert(OrderItem).values(bound("order_id", "product_id", "quantity", "unit_price"))
)
_INSERT_CHANGE = Precompiled(
    insert(OrderStatusChange).values(
        bound("order_id", "from_status", "to_status", "changed_by", changed_at="now")
    )
)
_INSERT_KEY = insert(IdempotencyRecord)
_ORDER_LINE = select(OrderItem.id, OrderItem.quantity).where(
    OrderItem.order_id == bindparam("order_id"), OrderItem.product_id == bindparam("product_id")
)
_STORED_KEY = select(IdempotencyRecord.request_hash, IdempotencyRecord.order_id).where(
    IdempotencyRecord.user_id == bindparam("user_id"), IdempotencyRecord.key == bindparam("key")
)


def create_order(
    conn: Connection,
    user: UserPublic,
    items: Sequence[OrderItemIn],
    idempotency_key: str | None = None,
) -> tuple[OrderPublic, bool]:
    """Place an order; returns it and whether it was replayed for a repeated idempotency key."""
    quantities = _merge(items)
    fingerprint = ""  # of the request, to tell a retry from another order under the same key
    if idempotency_key is not None:
        fingerprint = _fingerprint(items)
        replay = _replay(conn, user, idempotency_key, fingerprint)
        if replay is not None:
            return replay, True
        try:
            # A savepoint: if a concurrent retry with the same key commits first (PostgreSQL:
            # the unique index makes the key's insert wait for it), this order is undone and
            # that one is answered instead.
            with conn.begin_nested():
                order_id = _insert_order(
                    conn, user, quantities, items, idempotency_key, fingerprint
                )
        except IntegrityError:
            replay = _replay(conn, user, idempotency_key, fingerprint)
            if replay is None:
                raise
            return replay, True
    else:
        order_id = _insert_order(conn, user, quantities, items, None, fingerprint)
    return _changed(conn, order_id, EventType.order_created), False


def _insert_order(
    conn: Connection,
    user: UserPublic,
    quantities: dict[int, int],
    items: Sequence[OrderItemIn],
    idempotency_key: str | None,
    fingerprint: str,
) -> int:
    prices, tracked = _active_prices(conn, items)
    now = utcnow()
    ((order_id,),) = _INSERT_ORDER.all(
        conn, {"user_id": user.id, "status": OrderStatus.pending, "now": now}
    )
    if tracked:
        inventory.reserve(conn, order_id, user.id, {pid: quantities[pid] for pid in tracked})
    if quantities:
        _INSERT_LINE.execute_many(
            conn,
            [
                {
                    "order_id": order_id,
                    "product_id": product_id,
                    "quantity": quantity,
                    "unit_price": prices[product_id],
                }
                for product_id, quantity in quantities.items()
            ],
        )
    _INSERT_CHANGE.execute(
        conn,
        {
            "order_id": order_id,
            "from_status": None,
            "to_status": OrderStatus.pending,
            "changed_by": user.id,
            "now": now,
        },
    )
    if idempotency_key is not None:
        conn.execute(
            _INSERT_KEY,
            {
                "user_id": user.id,
                "key": idempotency_key,
                "request_hash": fingerprint,
                "order_id": order_id,
                "created_at": now,
            },
        )
    return order_id


def add_item(
    conn: Connection, order_id: int, actor: UserPublic, product_id: int, quantity: int
) -> OrderPublic:
    """Add a product to a pending order, or raise the quantity of its existing line; the
    units are taken from a tracked product's stock."""
    _lock_changeable(conn, order_id)
    found = _prices(conn, [product_id])
    if not found:
        raise _unavailable(["body", "product_id"], product_id)
    [(_, price, tracked)] = found
    line = conn.execute(_ORDER_LINE, {"order_id": order_id, "product_id": product_id}).first()
    if line is not None and line.quantity + quantity > MAX_QUANTITY:
        raise _too_many(["body", "quantity"])
    if tracked:
        inventory.reserve(conn, order_id, actor.id, {product_id: quantity})
    if line is None:
        _INSERT_LINE.execute(
            conn,
            {
                "order_id": order_id,
                "product_id": product_id,
                "quantity": quantity,
                "unit_price": price,
            },
        )
    else:
        # The line keeps the unit price it was created with.
        conn.execute(
            update(OrderItem)
            .where(OrderItem.id == line.id)
            .values(quantity=OrderItem.quantity + quantity)
        )
    return _changed(conn, order_id, EventType.order_updated)


def remove_item(conn: Connection, order_id: int, actor: UserPublic, item_id: int) -> OrderPublic:
    """Remove a line from a pending order, giving back the units it took."""
    _lock_changeable(conn, order_id)
    product_id = conn.scalar(
        delete(OrderItem)
        .where(OrderItem.id == item_id, OrderItem.order_id == order_id)
        .returning(OrderItem.product_id)
    )
    if product_id is None:
        raise NotFound("Item not found in this order")
    inventory.release(conn, order_id, actor.id, product_id)
    return _changed(conn, order_id, EventType.order_updated)


def change_status(
    conn: Connection, order_id: int, actor: UserPublic, target: OrderStatus
) -> OrderPublic:
    """Move an order along an allowed transition; a compare-and-set decides concurrent races."""
    now = utcnow()
    sources = [source for source, targets in TRANSITIONS.items() if target in targets]
    for source in sources:
        moved = conn.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == source)
            .values(status=target, updated_at=now)
        ).rowcount
        if moved:
            break
    else:
        current = conn.scalar(select(Order.status).where(Order.id == order_id))
        allowed = " or ".join(sorted(sources))
        raise Conflict(f"Order is {current}; only a {allowed} order can be {target}")

    if target is OrderStatus.finished and not conn.scalar(
        select(exists().where(OrderItem.order_id == order_id))
    ):
        raise Conflict("An order without items cannot be finished")
    if target is OrderStatus.cancelled:
        inventory.release(conn, order_id, actor.id)  # a finished order keeps what it took

    _INSERT_CHANGE.execute(
        conn,
        {
            "order_id": order_id,
            "from_status": source,
            "to_status": target,
            "changed_by": actor.id,
            "now": now,
        },
    )
    return _changed(conn, order_id, _EVENT_OF[target])


# --- helpers ----------------------------------------------------------------------------


_LOCK_CHANGEABLE = (
    update(Order)
    .where(Order.id == bindparam("order_id"), Order.status.in_(sorted(CHANGEABLE)))
    .values(updated_at=bindparam("now"))
)
_NOT_CHANGEABLE = f"Only a {' or '.join(sorted(CHANGEABLE))} order can be changed"


def _lock_changeable(conn: Connection, order_id: int) -> None:
    if not conn.execute(_LOCK_CHANGEABLE, {"order_id": order_id, "now": utcnow()}).rowcount:
        raise Conflict(_NOT_CHANGEABLE)


_EVENT_OF = {
    OrderStatus.cancelled: EventType.order_cancelled,
    OrderStatus.finished: EventType.order_finished,
}


def _changed(conn: Connection, order_id: int, event: EventType) -> OrderPublic:
    """The order as this transaction leaves it (read before the commit releases the lock),
    its event recorded in the same transaction: the outbox."""
    order = order_queries.get(conn, order_id)
    assert order is not None
    outbox.record(conn, event, order)
    return order


def _merge(items: Sequence[OrderItemIn]) -> dict[int, int]:
    """Quantities per product: a product listed twice becomes one line."""
    quantities: dict[int, int] = {}
    for index, item in enumerate(items):
        quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
        if quantities[item.product_id] > MAX_QUANTITY:
            raise _too_many(["body", "items", index, "quantity"])
    return quantities


def _active_prices(
    conn: Connection, items: Sequence[OrderItemIn]
) -> tuple[dict[int, Decimal], set[int]]:
    """The catalogue price of each product ordered, and which of them track their stock; 422
    for one missing or inactive."""
    ids = {item.product_id for item in items}
    rows = _prices(conn, sorted(ids)) if ids else []
    prices = {product_id: price for product_id, price, _ in rows}
    for index, item in enumerate(items):
        if item.product_id not in prices:
            raise _unavailable(["body", "items", index, "product_id"], item.product_id)
    return prices, {product_id for product_id, _, tracked in rows if tracked}


def _fingerprint(items: Sequence[OrderItemIn]) -> str:
    body = json.dumps([item.model_dump() for item in items], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _replay(conn: Connection, user: UserPublic, key: str, fingerprint: str) -> OrderPublic | None:
    stored = conn.execute(_STORED_KEY, {"user_id": user.id, "key": key}).one_or_none()
    if stored is None:
        return None
    if stored.request_hash != fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request body",
            loc=["header", "Idempotency-Key"],
            type="idempotency_key_reused",
        )
    return order_queries.get(conn, stored.order_id)


def _unavailable(loc: list[str | int], product_id: int) -> Unprocessable:
    return Unprocessable(
        f"Product {product_id} does not exist or is not available",
        loc=loc,
        type="product_unavailable",
    )


def _too_many(loc: list[str | int]) -> Unprocessable:
    return Unprocessable(
        f"An order line holds at most {MAX_QUANTITY} units of a product",
        loc=loc,
        type="quantity_too_large",
    )
