"""The catalogue: products and their prices. Commands run in a unit of work's transaction."""

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from errors import Conflict, NotFound
from models import Product
from schemas import ProductCreate, ProductPublic, ProductUpdate

_COLUMNS = (Product.id, Product.name, Product.description, Product.price, Product.is_active)
_NAME_TAKEN = "A product with this name already exists"


def _product(row: object) -> ProductPublic:
    return ProductPublic.model_validate(row, from_attributes=True)


def list_active(conn: Connection) -> list[ProductPublic]:
    rows = conn.execute(select(*_COLUMNS).where(Product.is_active).order_by(Product.id))
    return [_product(row) for row in rows]


def get(conn: Connection, product_id: int) -> ProductPublic:
    """One product, inactive ones too; NotFound when there is none."""
    row = conn.execute(select(*_COLUMNS).where(Product.id == product_id)).one_or_none()
    if row is None:
        raise NotFound("Product not found")
    return _product(row)


def add(conn: Connection, data: ProductCreate) -> ProductPublic:
    try:
        row = conn.execute(insert(Product).values(data.model_dump()).returning(*_COLUMNS)).one()
    except IntegrityError:  # the unique name is the only constraint a valid body can hit
        raise Conflict(_NAME_TAKEN) from None
    return _product(row)


def change(conn: Connection, product_id: int, changes: ProductUpdate) -> ProductPublic:
    values = changes.changes()
    if not values:
        return get(conn, product_id)
    statement = update(Product).where(Product.id == product_id).values(values)
    try:
        row = conn.execute(statement.returning(*_COLUMNS)).one_or_none()
    except IntegrityError:
        raise Conflict(_NAME_TAKEN) from None
    if row is None:
        raise NotFound("Product not found")
    return _product(row)
