"""Stock: reserved with the order that takes it, given back when a line or an order lets it go.

Every change runs in the transaction of the command that makes it and records a movement
there, so a product's movements always add up to its stock (None counting as 0). Stock is
taken by one guarded UPDATE per product (`... SET stock = stock - q WHERE stock >= q`), so the
database, not a read in Python, decides who gets the last unit; products are taken in order
of id, so two orders never wait on each other's rows (PostgreSQL). An order gives back what
its own movements say it took, whatever the product's tracking did since.
"""

from collections.abc import Mapping

from sqlalchemy import Connection, bindparam, func, insert, select, update

from errors import Conflict, NotFound
from models import Product, StockMovement, StockReason, utcnow
from precompiled import Precompiled, bound
from schemas import MAX_STOCK, Page, StockMovementPublic

# Taking stock runs with every order of a tracked product, so it is precompiled.
_TAKE = Precompiled(
    update(Product)
    .where(
        Product.id == bindparam("product_id"),
        Product.stock.is_not(None),
        Product.stock >= bindparam("quantity"),
    )
    # Precompiled statements get no Python-side defaults: updated_at is given.
    .values(stock=Product.stock - bindparam("quantity"), updated_at=bindparam("now"))
)
_GIVE_BACK = (
    update(Product)
    .where(Product.id == bindparam("product_id"), Product.stock.is_not(None))
    .values(stock=Product.stock + bindparam("quantity"))
)
_RECORD = Precompiled(
    insert(StockMovement).values(
        bound("product_id", "delta", "reason", "order_id", "changed_by", "note", "created_at")
    )
)


def reserve(conn: Connection, order_id: int, actor_id: int, quantities: Mapping[int, int]) -> None:
    """Take `quantities` (product id -> units) of the tracked products for an order, or take
    nothing and refuse naming the first product that is short (the caller's transaction is
    rolled back)."""
    taken = []
    now = utcnow()
    for product_id in sorted(quantities):
        quantity = quantities[product_id]
        params = {"product_id": product_id, "quantity": quantity, "now": now}
        if _TAKE.execute(conn, params):
            taken.append((product_id, -quantity))
        elif _stock(conn, product_id) is not None:  # tracked, and short
            raise Conflict(f"Not enough stock for product {product_id}")
    _record(conn, taken, StockReason.order, actor_id, order_id=order_id)


def release(conn: Connection, order_id: int, actor_id: int, product_id: int | None = None) -> None:
    """Give back what the order holds (of one product, or of all), as its movements say."""
    held = (
        select(StockMovement.product_id, -func.sum(StockMovement.delta))
        .where(StockMovement.order_id == order_id)
        .group_by(StockMovement.product_id)
        .order_by(StockMovement.product_id)
    )
    if product_id is not None:
        held = held.where(StockMovement.product_id == product_id)
    returned = []
    for held_product, quantity in conn.execute(held).all():
        params = {"product_id": held_product, "quantity": quantity}
        if quantity > 0 and conn.execute(_GIVE_BACK, params).rowcount:
            returned.append((held_product, quantity))
    _record(conn, returned, StockReason.release, actor_id, order_id=order_id)


def record_change(
    conn: Connection, product_id: int, old: int | None, new: int | None, actor_id: int
) -> None:
    """An admin set the stock (or started or stopped tracking it): the difference."""
    delta = (new or 0) - (old or 0)
    if delta:
        _record(conn, [(product_id, delta)], StockReason.adjustment, actor_id)


def adjust(conn: Connection, product_id: int, delta: int, actor_id: int, note: str | None) -> None:
    """Add `delta` to a tracked product's stock, atomically; 404, or 409 when the stock is
    not tracked or would leave 0..MAX_STOCK."""
    changed = conn.execute(
        update(Product)
        .where(
            Product.id == product_id,
            Product.stock.is_not(None),
            Product.stock + delta >= 0,
            Product.stock + delta <= MAX_STOCK,
        )
        .values(stock=Product.stock + delta)
    ).rowcount
    if not changed:
        exists = conn.execute(select(Product.stock).where(Product.id == product_id)).first()
        if exists is None:
            raise NotFound("Product not found")
        if exists.stock is None:
            raise Conflict("The stock of this product is not tracked; set its stock first")
        if exists.stock + delta < 0:
            raise Conflict(f"The stock would go below 0 (it is {exists.stock})")
        raise Conflict(f"The stock would go above {MAX_STOCK} (it is {exists.stock})")
    _record(conn, [(product_id, delta)], StockReason.adjustment, actor_id, note=note)


def movements(
    conn: Connection, product_id: int, *, limit: int, offset: int
) -> Page[StockMovementPublic]:
    """A product's movements, newest first."""
    if conn.scalar(select(Product.id).where(Product.id == product_id)) is None:
        raise NotFound("Product not found")
    of_product = StockMovement.product_id == product_id
    total = conn.scalar(select(func.count()).select_from(StockMovement).where(of_product)) or 0
    rows = conn.execute(
        select(
            StockMovement.id,
            StockMovement.delta,
            StockMovement.reason,
            StockMovement.order_id,
            StockMovement.changed_by,
            StockMovement.note,
            StockMovement.created_at,
        )
        .where(of_product)
        .order_by(StockMovement.id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [StockMovementPublic.model_validate(row, from_attributes=True) for row in rows]
    return Page[StockMovementPublic](items=items, total=total, limit=limit, offset=offset)


def _stock(conn: Connection, product_id: int) -> int | None:
    return conn.scalar(select(Product.stock).where(Product.id == product_id))


def _record(
    conn: Connection,
    changes: list[tuple[int, int]],
    reason: StockReason,
    actor_id: int,
    *,
    order_id: int | None = None,
    note: str | None = None,
) -> None:
    if not changes:
        return
    now = utcnow()
    _RECORD.execute_many(
        conn,
        [
            {
                "product_id": product_id,
                "delta": delta,
                "reason": reason,
                "order_id": order_id,
                "changed_by": actor_id,
                "note": note,
                "created_at": now,
            }
            for product_id, delta in changes
        ],
    )
