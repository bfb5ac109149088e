"""/product: the catalogue. Anyone may read it; only admins change it, and it owns the prices."""

from fastapi import APIRouter, status

import product_service
from dependencies import AdminUser, DatabaseDep, PathId
from errors import responses
from schemas import ProductCreate, ProductPublic, ProductUpdate

router = APIRouter(prefix="/product", tags=["product"])


@router.get("", response_model=list[ProductPublic])
async def list_products(database: DatabaseDep) -> list[ProductPublic]:
    """The active catalogue, for anyone, no token needed."""
    return await database.read(product_service.list_active)


@router.get("/{product_id}", response_model=ProductPublic, responses=responses(404))
async def get_product(product_id: PathId, database: DatabaseDep) -> ProductPublic:
    """One product, inactive ones too, so that old order lines can be explained."""
    return await database.read(product_service.get, product_id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductPublic,
    responses=responses(401, 403, 409),
)
async def create_product(
    body: ProductCreate, _admin: AdminUser, database: DatabaseDep
) -> ProductPublic:
    """Admins only: add a product. The price is a decimal string or number above zero with at
    most two decimal places; names are unique.
    """
    return await database.write(product_service.add, body)


@router.patch(
    "/{product_id}", response_model=ProductPublic, responses=responses(401, 403, 404, 409)
)
async def update_product(
    product_id: PathId, body: ProductUpdate, _admin: AdminUser, database: DatabaseDep
) -> ProductPublic:
    """Admins only: change any of name, price, description and `is_active`. A new price applies
    to order lines created from now on; lines already in orders keep the price they were
    created with. Deactivated products leave the list and cannot be ordered.
    """
    return await database.write(product_service.change, product_id, body)
