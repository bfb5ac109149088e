"""The catalogue: products, their prices and their stock. Commands run in a unit of work's
transaction; stock changes go through inventory.py, which records each one."""

from sqlalchemy import Connection, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

import inventory
from errors import Conflict, NotFound
from models import Product
from schemas import ProductCreate, ProductPublic, ProductUpdate

_COLUMNS = (
    Product.id,
    Product.name,
    Product.description,
    Product.price,
    Product.is_active,
    Product.stock,
)
_NAME_TAKEN = "A product with this name already exists"


def _product(row: object) -> ProductPublic:
    return ProductPublic.model_validate(row, from_attributes=True)


def list_active(conn: Connection, in_stock: bool | None = None) -> list[ProductPublic]:
    """Active products by id; `in_stock` True: untracked or above 0, False: tracked at 0."""
    query = select(*_COLUMNS).where(Product.is_active).order_by(Product.id)
    if in_stock is True:
        query = query.where(or_(Product.stock.is_(None), Product.stock > 0))
    elif in_stock is False:
        query = query.where(Product.stock == 0)
    return [_product(row) for row in conn.execute(query)]


def get(conn: Connection, product_id: int) -> ProductPublic:
    """One product, inactive ones too; NotFound when there is none."""
    row = conn.execute(select(*_COLUMNS).where(Product.id == product_id)).one_or_none()
    if row is None:
        raise NotFound("Product not found")
    return _product(row)


def add(conn: Connection, data: ProductCreate, actor_id: int) -> ProductPublic:
    try:
        row = conn.execute(insert(Product).values(data.model_dump()).returning(*_COLUMNS)).one()
    except IntegrityError:  # the unique name is the only constraint a valid body can hit
        raise Conflict(_NAME_TAKEN) from None
    inventory.record_change(conn, row.id, None, row.stock, actor_id)
    return _product(row)


def change(
    conn: Connection, product_id: int, changes: ProductUpdate, actor_id: int
) -> ProductPublic:
    values = changes.changes()
    if not values:
        return get(conn, product_id)
    # The stock before the change, read under the row's lock (PostgreSQL; SQLite holds the
    # write lock), so the movement recorded is exactly the difference this change made.
    old_stock = conn.execute(
        select(Product.stock).where(Product.id == product_id).with_for_update()
    ).one_or_none()
    if old_stock is None:
        raise NotFound("Product not found")
    statement = update(Product).where(Product.id == product_id).values(values)
    try:
        row = conn.execute(statement.returning(*_COLUMNS)).one()
    except IntegrityError:
        raise Conflict(_NAME_TAKEN) from None
    if "stock" in values:
        inventory.record_change(conn, product_id, old_stock.stock, row.stock, actor_id)
    return _product(row)


def adjust_stock(
    conn: Connection, product_id: int, delta: int, actor_id: int, note: str | None
) -> ProductPublic:
    inventory.adjust(conn, product_id, delta, actor_id, note)
    return get(conn, product_id)
