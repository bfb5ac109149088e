"""/product: the catalogue. Anyone may read it; only admins change it, and it owns the prices
and the stock."""

from typing import Annotated

from fastapi import APIRouter, Query, status

import inventory
import product_service
from dependencies import AdminUser, DatabaseDep, Pagination, PathId
from errors import responses
from schemas import (
    Page,
    ProductCreate,
    ProductPublic,
    ProductUpdate,
    StockAdjustment,
    StockMovementPublic,
)

router = APIRouter(prefix="/product", tags=["product"])


@router.get("")
async def list_products(
    database: DatabaseDep,
    in_stock: Annotated[
        bool | None,
        Query(description="true: untracked or above 0; false: tracked and at 0"),
    ] = None,
) -> list[ProductPublic]:
    """The active catalogue, for anyone, no token needed; `in_stock` filters by stock."""
    return await database.read(product_service.list_active, in_stock)


@router.get("/{product_id}", responses=responses(404))
async def get_product(product_id: PathId, database: DatabaseDep) -> ProductPublic:
    """One product, inactive ones too, so that old order lines can be explained."""
    return await database.read(product_service.get, product_id)


@router.post("", status_code=status.HTTP_201_CREATED, responses=responses(401, 403, 409))
async def create_product(
    body: ProductCreate, admin: AdminUser, database: DatabaseDep
) -> ProductPublic:
    """Admins only: add a product. The price is a decimal string or number above zero with at
    most two decimal places; names are unique. `stock` (0 or more) makes orders take from it;
    omitted or null, the stock is not tracked.
    """
    return await database.write(product_service.add, body, admin.id)


@router.patch("/{product_id}", responses=responses(401, 403, 404, 409))
async def update_product(
    product_id: PathId, body: ProductUpdate, admin: AdminUser, database: DatabaseDep
) -> ProductPublic:
    """Admins only: change any of name, price, description, `is_active` and `stock`. A new
    price applies to order lines created from now on; lines already in orders keep the price
    they were created with. Deactivated products leave the list and cannot be ordered.
    Setting `stock` records the difference as an adjustment; null stops tracking it.
    """
    return await database.write(product_service.change, product_id, body, admin.id)


@router.post("/{product_id}/stock", responses=responses(401, 403, 404, 409))
async def adjust_stock(
    product_id: PathId, body: StockAdjustment, admin: AdminUser, database: DatabaseDep
) -> ProductPublic:
    """Admins only: add `delta` units (negative to remove) to a tracked product's stock,
    atomically, with an optional note. 409 when the stock is not tracked, or would go below 0.
    """
    return await database.write(
        product_service.adjust_stock, product_id, body.delta, admin.id, body.note
    )


@router.get("/{product_id}/stock-movements", responses=responses(401, 403, 404))
async def stock_movements(
    product_id: PathId, _admin: AdminUser, database: DatabaseDep, page: Pagination
) -> Page[StockMovementPublic]:
    """Admins only: every change of the product's stock, newest first: units taken by orders
    (`order`), given back by removed lines and cancelled orders (`release`), and admins'
    adjustments (`adjustment`, with who made them and the note).
    """
    return await database.read(
        inventory.movements, product_id, limit=page.limit, offset=page.offset
    )
