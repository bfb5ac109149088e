"""Reading orders: one round trip for orders and their lines, straight into the response models.

These are the hottest paths of the API, so they skip the ORM's identity map and relationship
loaders: a Core SELECT joins each order to its lines and product names, and the rows are
folded into `OrderPublic` objects by one pydantic validation. An offset page of orders costs
two queries (count and rows) whatever its size, a keyset page one.
"""

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import ColumnElement, Connection, bindparam, func, select

from models import Order, OrderItem, OrderStatus, OrderStatusChange, Product, UTCDateTime
from precompiled import Precompiled
from schemas import OrderPublic, StatusChangePublic

_ORDERS = TypeAdapter(list[OrderPublic])
_HISTORY_ENTRIES = TypeAdapter(list[StatusChangePublic])

_ORDER_LINES = (
    select(
        Order.id,
        Order.user_id,
        Order.status,
        Order.created_at,
        Order.updated_at,
        OrderItem.id.label("item_id"),
        OrderItem.product_id,
        Product.name.label("product_name"),
        OrderItem.quantity,
        OrderItem.unit_price,
    )
    .select_from(Order)
    .outerjoin(OrderItem, OrderItem.order_id == Order.id)
    .outerjoin(Product, Product.id == OrderItem.product_id)
)


# Each order's columns, beside each of its lines.
_REPEATED = ("status", "created_at", "updated_at")

# Statements are built once: building and hashing a statement costs more than running it.
_ONE_ORDER = Precompiled(
    _ORDER_LINES.where(Order.id == bindparam("order_id")).order_by(OrderItem.id),
    repeated=_REPEATED,
)


def get(conn: Connection, order_id: int) -> OrderPublic | None:
    orders = _assemble(_ONE_ORDER.all(conn, {"order_id": order_id}))
    return orders[0] if orders else None


_HISTORY = (
    select(
        OrderStatusChange.from_status,
        OrderStatusChange.to_status,
        OrderStatusChange.changed_by,
        OrderStatusChange.changed_at,
    )
    .where(OrderStatusChange.order_id == bindparam("order_id"))
    .order_by(OrderStatusChange.id)
)


def history(conn: Connection, order_id: int) -> list[StatusChangePublic]:
    """Every status change of the order, oldest first (creation included)."""
    rows = conn.execute(_HISTORY, {"order_id": order_id}).mappings().all()
    return _HISTORY_ENTRIES.validate_python(rows)


@dataclass(frozen=True)
class OrderFilter:
    """What a list of orders is restricted to; None: not restricted by it."""

    user_id: int | None = None
    status: OrderStatus | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None


@cache
def _page_statements(
    by_user: bool, by_status: bool, by_from: bool, by_to: bool, keyset: bool
) -> tuple[Precompiled, Precompiled]:
    """The count and the rows of a page, for one combination of filters. A keyset page
    (`keyset`) starts after the id `after`, by the primary key, whatever its depth."""
    filters: list[ColumnElement[bool]] = []
    if by_user:
        filters.append(Order.user_id == bindparam("user_id"))
    if by_status:
        filters.append(Order.status == bindparam("status", type_=Order.status.type))
    if by_from:
        filters.append(Order.created_at >= bindparam("created_from", type_=UTCDateTime()))
    if by_to:
        filters.append(Order.created_at <= bindparam("created_to", type_=UTCDateTime()))
    count = select(func.count()).select_from(Order).where(*filters)
    if keyset:
        filters.append(Order.id < bindparam("after"))
    ids = (
        select(Order.id)
        .where(*filters)
        .order_by(Order.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery()
    )
    rows = _ORDER_LINES.join(ids, ids.c.id == Order.id).order_by(Order.id.desc(), OrderItem.id)
    return Precompiled(count), Precompiled(rows, repeated=_REPEATED)


# An offset page counts every match and skips `offset` rows: on the event loop only while the
# orders table is this small (about a millisecond of work), on the heavy reads' pool beyond.
INLINE_ORDERS = 20_000
_NEWEST = Precompiled(select(func.max(Order.id)))


def small_enough_inline(conn: Connection) -> bool:
    """Whether a count over every order is cheap: the newest id bounds the number of orders
    (one step down the primary key)."""
    ((newest,),) = _NEWEST.all(conn, {})
    return (newest or 0) <= INLINE_ORDERS


def page(
    conn: Connection,
    where: OrderFilter,
    *,
    limit: int,
    offset: int = 0,
    after: int | None = None,
) -> tuple[list[OrderPublic], int | None, bool]:
    """Newest first: the orders, their total (None on a keyset page, where counting every
    match is what makes deep pages slow), and whether more follow."""
    count, rows = _page_statements(
        where.user_id is not None,
        where.status is not None,
        where.created_from is not None,
        where.created_to is not None,
        after is not None,
    )
    # One more than the page: whether another page follows, without counting.
    params = {**asdict(where), "after": after, "limit": limit + 1, "offset": offset}
    total = None if after is not None else count.all(conn, params)[0][0]
    orders = _assemble(rows.all(conn, params))
    return orders[:limit], total, len(orders) > limit


def line_total(unit_price: Decimal, quantity: int) -> Decimal:
    """What a line costs: the unit price it was created with, times its quantity."""
    return unit_price * quantity


def _assemble(rows: Iterable[Sequence[Any]]) -> list[OrderPublic]:
    """Fold (order, line) rows, ordered by order, into orders with their lines and totals.

    Rows are unpacked as tuples and the orders built as plain dicts that pydantic validates
    in one call: attribute access on rows and a model_construct per object cost several
    times as much (the README's performance section has the figures).
    """
    orders: list[dict] = []
    last_id = None
    lines: list[dict] = []
    for (
        order_id,
        user_id,
        status,
        created_at,
        updated_at,
        item_id,
        product_id,
        product_name,
        quantity,
        unit_price,
    ) in rows:
        if order_id != last_id:
            last_id, lines = order_id, []
            orders.append(
                {
                    "id": order_id,
                    "user_id": user_id,
                    "status": status,
                    "items": lines,
                    "created_at": created_at,
                    "updated_at": updated_at,
                }
            )
        if item_id is not None:
            lines.append(
                {
                    "id": item_id,
                    "product_id": product_id,
                    "product_name": product_name,
                    "quantity": quantity,
                    "unit_price": unit_price,
                    "line_total": line_total(unit_price, quantity),
                }
            )
    for order in orders:
        order["total"] = sum((line["line_total"] for line in order["items"]), Decimal("0.00"))
    return _ORDERS.validate_python(orders)
