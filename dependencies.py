"""What routes receive by injection: settings, a database session, the caller, their order."""

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

import order_service
import security
from database import Database
from models import MAX_ID, Order, User
from schemas import MAX_PAGE_SIZE
from settings import Settings

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/auth/login-form", auto_error=False)


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_db(request: Request) -> Iterator[Session]:
    database: Database = request.app.state.db
    # Requests that may write start their transactions with the write lock on SQLite.
    with database.session(write=request.method not in READ_METHODS) as session:
        yield session


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


def get_current_user(
    token: Annotated[str | None, Depends(oauth2_scheme)], db: SessionDep, settings: SettingsDep
) -> User:
    if not token:
        raise unauthorized("Not authenticated")
    try:
        claims = security.decode_token(
            token, expected=security.TokenType.access, secret_key=settings.secret_key
        )
    except security.InvalidToken:
        raise unauthorized("Invalid or expired token") from None
    user = db.get(User, claims.user_id)
    # Checked on every request: deactivating a user locks them out at once.
    if user is None or not user.is_active:
        raise unauthorized("Invalid or expired token")
    return user


CurrentUser = Annotated[User, Depends(get_current_user)]


def get_admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Admin privileges required")
    return user


AdminUser = Annotated[User, Depends(get_admin_user)]

PathId = Annotated[int, Path(gt=0, le=MAX_ID, description="A positive integer id")]


def get_owned_order(order_id: PathId, db: SessionDep, user: CurrentUser) -> Order:
    """The order, if the caller owns it or is an admin; otherwise 404 (existence is not leaked)."""
    order = order_service.get_order(db, order_id)
    if order is None or (order.user_id != user.id and not user.is_admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Order not found")
    return order


OwnedOrder = Annotated[Order, Depends(get_owned_order)]


MAX_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


Pagination = Annotated[PageParams, Depends(page_params)]
