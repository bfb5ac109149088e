"""/product: the catalogue. Anyone may read it; only admins change it, and it owns the prices."""

from fastapi import APIRouter, HTTPException, status
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from database import begin_write
from dependencies import AdminUser, PathId, SessionDep
from errors import responses
from models import Product
from schemas import ProductCreate, ProductPublic, ProductUpdate

router = APIRouter(prefix="/product", tags=["product"])


def _get(db: Session, product_id: int) -> Product:
    product = db.get(Product, product_id)
    if product is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Product not found")
    return product


def _save(db: Session, product: Product) -> Product:
    """Commit the open write transaction; a name clash is the only constraint a client can hit."""
    db.add(product)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise HTTPException(
            status.HTTP_409_CONFLICT, detail="A product with this name already exists"
        ) from None
    return product


@router.get("", response_model=list[ProductPublic])
def list_products(db: SessionDep) -> list[Product]:
    """The active catalogue, for anyone, no token needed."""
    return list(db.scalars(select(Product).where(Product.is_active).order_by(Product.id)))


@router.get("/{product_id}", response_model=ProductPublic, responses=responses(404))
def get_product(product_id: PathId, db: SessionDep) -> Product:
    """One product, inactive ones too, so that old order lines can be explained."""
    return _get(db, product_id)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ProductPublic,
    responses=responses(401, 403, 409),
)
def create_product(body: ProductCreate, _admin: AdminUser, db: SessionDep) -> Product:
    """Admins only: add a product. The price is a decimal string or number above zero with at
    most two decimal places; names are unique.
    """
    begin_write(db)
    return _save(db, Product(**body.model_dump()))


@router.patch(
    "/{product_id}", response_model=ProductPublic, responses=responses(401, 403, 404, 409)
)
def update_product(
    product_id: PathId, body: ProductUpdate, _admin: AdminUser, db: SessionDep
) -> Product:
    """Admins only: change any of name, price, description and `is_active`. A new price applies
    to order lines created from now on; lines already in orders keep the price they were
    created with. Deactivated products leave the list and cannot be ordered.
    """
    begin_write(db)
    product = _get(db, product_id)
    for name, value in body.changes().items():
        setattr(product, name, value)
    return _save(db, product)
