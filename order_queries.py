"""Reading orders: one round trip for orders and their lines, straight into the response models.

These are the hottest paths of the API, so they skip the ORM's identity map and relationship
loaders: a Core SELECT joins each order to its lines and product names, and the rows become
`OrderPublic` objects without a second validation pass (the database already guarantees
their shape). A page of orders costs two queries (count and rows) whatever its size.
"""

from collections.abc import Sequence
from decimal import Decimal
from functools import cache

from sqlalchemy import ColumnElement, Connection, Row, Select, bindparam, func, select

from models import Order, OrderItem, OrderStatus, Product
from schemas import OrderItemPublic, OrderPublic

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


# Statements are built once: building and hashing a statement costs more than running it.
_ONE_ORDER = _ORDER_LINES.where(Order.id == bindparam("order_id")).order_by(OrderItem.id)


def get(conn: Connection, order_id: int) -> OrderPublic | None:
    rows = conn.execute(_ONE_ORDER, {"order_id": order_id})
    views = _assemble(rows.all())
    return views[0] if views else None


@cache
def _page_statements(by_user: bool, by_status: bool) -> tuple[Select, Select]:
    """The count and the rows of a page, for one combination of filters."""
    filters: list[ColumnElement[bool]] = []
    if by_user:
        filters.append(Order.user_id == bindparam("user_id"))
    if by_status:
        filters.append(Order.status == bindparam("status", type_=Order.status.type))
    count = select(func.count()).select_from(Order).where(*filters)
    ids = (
        select(Order.id)
        .where(*filters)
        .order_by(Order.id.desc())
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery()
    )
    rows = _ORDER_LINES.join(ids, ids.c.id == Order.id).order_by(Order.id.desc(), OrderItem.id)
    return count, rows


def page(
    conn: Connection,
    *,
    user_id: int | None,
    status: OrderStatus | None,
    limit: int,
    offset: int,
) -> tuple[list[OrderPublic], int]:
    """Newest first; `user_id=None` means every user's orders."""
    count, rows = _page_statements(user_id is not None, status is not None)
    params = {"user_id": user_id, "status": status, "limit": limit, "offset": offset}
    total = conn.execute(count, params).scalar_one()
    return _assemble(conn.execute(rows, params).all()), total


def _assemble(rows: Sequence[Row]) -> list[OrderPublic]:
    """Fold (order, line) rows, ordered by order, into orders with their lines and totals."""
    orders: list[OrderPublic] = []
    current: OrderPublic | None = None
    for row in rows:
        if current is None or current.id != row.id:
            current = OrderPublic.model_construct(
                id=row.id,
                user_id=row.user_id,
                status=row.status,
                items=[],
                total=Decimal("0.00"),
                created_at=row.created_at,
                updated_at=row.updated_at,
            )
            orders.append(current)
        if row.item_id is not None:
            line_total = row.unit_price * row.quantity
            current.items.append(
                OrderItemPublic.model_construct(
                    id=row.item_id,
                    product_id=row.product_id,
                    product_name=row.product_name,
                    quantity=row.quantity,
                    unit_price=row.unit_price,
                    line_total=line_total,
                )
            )
            current.total += line_total
    return orders
