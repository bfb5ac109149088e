"""The order rules: what an order may contain, how its total is priced, which transitions exist.

Every change to an order starts with a conditional UPDATE of its row (`... WHERE status =
'pending'`). That statement both checks the rule and locks the row (PostgreSQL) or holds the
write lock (SQLite), so concurrent requests are settled by the database: exactly one of two
racing transitions wins, and no item slips into an order that was just finished.
"""

import hashlib
import json
from collections.abc import Sequence

from sqlalchemy import exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import order_queries
from database import begin_write
from errors import Conflict, NotFound, Unprocessable
from models import (
    MAX_QUANTITY,
    IdempotencyKey,
    Order,
    OrderItem,
    OrderStatus,
    OrderStatusChange,
    Product,
    utcnow,
)
from schemas import OrderItemIn, OrderPublic, UserPublic

TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.pending: frozenset({OrderStatus.cancelled, OrderStatus.finished}),
    OrderStatus.cancelled: frozenset(),
    OrderStatus.finished: frozenset(),
}


def history(db: Session, order_id: int) -> list[OrderStatusChange]:
    return list(
        db.scalars(
            select(OrderStatusChange)
            .where(OrderStatusChange.order_id == order_id)
            .order_by(OrderStatusChange.id)
        )
    )


def create_order(
    db: Session, user: UserPublic, items: Sequence[OrderItemIn], idempotency_key: str | None = None
) -> tuple[OrderPublic, bool]:
    """Place an order; returns it and whether it was replayed for a repeated idempotency key."""
    fingerprint = _fingerprint(items)
    begin_write(db)
    if idempotency_key is not None:
        replay = _replay(db, user, idempotency_key, fingerprint)
        if replay is not None:
            return replay, True

    quantities = _merge(items)
    products = _active_products(db, items)
    order = Order(
        user_id=user.id,
        status=OrderStatus.pending,
        items=[
            OrderItem(product=products[pid], quantity=qty, unit_price=products[pid].price)
            for pid, qty in quantities.items()
        ],
    )
    db.add(order)
    db.flush()
    db.add(
        OrderStatusChange(
            order_id=order.id,
            from_status=None,
            to_status=OrderStatus.pending,
            changed_by=user.id,
            changed_at=order.created_at,
        )
    )
    if idempotency_key is not None:
        db.add(
            IdempotencyKey(
                user_id=user.id, key=idempotency_key, request_hash=fingerprint, order_id=order.id
            )
        )
    try:
        db.commit()
    except IntegrityError:
        # A concurrent retry with the same key committed first (PostgreSQL: the unique index
        # made us wait for it); answer with its order instead of placing a second one.
        db.rollback()
        replay = _replay(db, user, idempotency_key, fingerprint) if idempotency_key else None
        if replay is None:
            raise
        return replay, True
    return OrderPublic.model_validate(order), False


def add_item(db: Session, order_id: int, product_id: int, quantity: int) -> OrderPublic:
    """Add a product to a pending order, or raise the quantity of its existing line."""
    _lock_pending(db, order_id)
    product = db.get(Product, product_id)
    if product is None or not product.is_active:
        raise _unavailable(["body", "product_id"], product_id)
    line = db.scalar(
        select(OrderItem).where(OrderItem.order_id == order_id, OrderItem.product_id == product_id)
    )
    if line is None:
        db.add(
            OrderItem(
                order_id=order_id, product=product, quantity=quantity, unit_price=product.price
            )
        )
    elif line.quantity + quantity > MAX_QUANTITY:
        raise _too_many(["body", "quantity"])
    else:
        # The line keeps the unit price it was created with.
        line.quantity += quantity
    db.commit()
    return _reloaded(db, order_id)


def remove_item(db: Session, order_id: int, item_id: int) -> OrderPublic:
    _lock_pending(db, order_id)
    line = db.scalar(
        select(OrderItem).where(OrderItem.id == item_id, OrderItem.order_id == order_id)
    )
    if line is None:
        raise NotFound("Item not found in this order")
    db.delete(line)
    db.commit()
    return _reloaded(db, order_id)


def change_status(
    db: Session, order_id: int, actor: UserPublic, target: OrderStatus
) -> OrderPublic:
    """Move an order along an allowed transition; a compare-and-set decides concurrent races."""
    now = utcnow()
    begin_write(db)
    sources = [source for source, targets in TRANSITIONS.items() if target in targets]
    for source in sources:
        moved = db.execute(
            update(Order)
            .where(Order.id == order_id, Order.status == source)
            .values(status=target, updated_at=now)
        ).rowcount
        if moved:
            break
    else:
        current = db.scalar(select(Order.status).where(Order.id == order_id))
        db.rollback()
        raise Conflict(f"Order is {current}; only a pending order can be {target}")

    if target is OrderStatus.finished and not db.scalar(
        select(exists().where(OrderItem.order_id == order_id))
    ):
        db.rollback()
        raise Conflict("An order without items cannot be finished")

    db.add(
        OrderStatusChange(
            order_id=order_id,
            from_status=source,
            to_status=target,
            changed_by=actor.id,
            changed_at=now,
        )
    )
    db.commit()
    return _reloaded(db, order_id)


# --- helpers ----------------------------------------------------------------------------


def _lock_pending(db: Session, order_id: int) -> None:
    begin_write(db)
    locked = db.execute(
        update(Order)
        .where(Order.id == order_id, Order.status == OrderStatus.pending)
        .values(updated_at=utcnow())
    ).rowcount
    if not locked:
        db.rollback()
        raise Conflict("Only a pending order can be changed")


def _reloaded(db: Session, order_id: int) -> OrderPublic:
    fresh = order_queries.get(db.connection(), order_id)
    assert fresh is not None
    return fresh


def _merge(items: Sequence[OrderItemIn]) -> dict[int, int]:
    """Quantities per product: a product listed twice becomes one line."""
    quantities: dict[int, int] = {}
    for index, item in enumerate(items):
        quantities[item.product_id] = quantities.get(item.product_id, 0) + item.quantity
        if quantities[item.product_id] > MAX_QUANTITY:
            raise _too_many(["body", "items", index, "quantity"])
    return quantities


def _active_products(db: Session, items: Sequence[OrderItemIn]) -> dict[int, Product]:
    ids = {item.product_id for item in items}
    found = (
        {p.id: p for p in db.scalars(select(Product).where(Product.id.in_(ids), Product.is_active))}
        if ids
        else {}
    )
    for index, item in enumerate(items):
        if item.product_id not in found:
            raise _unavailable(["body", "items", index, "product_id"], item.product_id)
    return found


def _fingerprint(items: Sequence[OrderItemIn]) -> str:
    body = json.dumps([item.model_dump() for item in items], sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()


def _replay(db: Session, user: UserPublic, key: str, fingerprint: str) -> OrderPublic | None:
    stored = db.scalar(
        select(IdempotencyKey).where(IdempotencyKey.user_id == user.id, IdempotencyKey.key == key)
    )
    if stored is None:
        return None
    if stored.request_hash != fingerprint:
        raise Unprocessable(
            "This Idempotency-Key was already used with a different request body",
            loc=["header", "idempotency-key"],
            type="idempotency_key_reused",
        )
    return order_queries.get(db.connection(), stored.order_id)


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
