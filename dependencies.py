"""What routes receive by injection: settings, a database session, the caller, their order."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Path, Query, Request, status
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy.orm import Session

import auth_service
import order_queries
import security
from database import Database
from models import MAX_ID
from schemas import MAX_PAGE_SIZE, OrderPublic, UserPublic
from settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.db


DatabaseDep = Annotated[Database, Depends(get_database)]


async def get_db(database: DatabaseDep) -> AsyncIterator[Session]:
    # Opening a session does no I/O; closing may (a rollback).
    session = database.session()
    try:
        yield session
    finally:
        await database.call(session.close)


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[Session, Depends(get_db)]


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, detail=detail, headers={"WWW-Authenticate": "Bearer"}
    )


# The dependencies below run on every authenticated request. Each needs one short read, so
# they go through the app's Database (a prepared statement on a connection the event loop
# keeps, on SQLite) rather than a SessionDep: opening and closing an ORM session per request
# cost more than the reads it served (measured: GET /order/{id} from 504 to 364 us in process).


class BearerUser(OAuth2PasswordBearer):
    """The OAuth2 bearer scheme that /docs offers, resolved to the active user its token names.

    One dependency rather than a scheme and a user function that depends on it: FastAPI's
    dependency resolution costs about as much per level as checking the token does.
    """

    def __init__(self) -> None:
        # The scheme keeps the name /docs and openapi.json have always given it.
        super().__init__(
            tokenUrl="/auth/login-form", scheme_name="OAuth2PasswordBearer", auto_error=False
        )

    async def __call__(self, request: Request) -> UserPublic:  # type: ignore[override]
        token = await super().__call__(request)
        if not token:
            raise unauthorized("Not authenticated")
        state = request.app.state
        try:
            claims = security.decode_token(
                token, expected=security.TokenType.access, secret_key=state.settings.secret_key
            )
        except security.InvalidToken:
            raise unauthorized("Invalid or expired token") from None
        # Checked on every request: deactivating a user locks them out at once.
        user = await state.db.read(auth_service.active_user, claims.user_id)
        if user is None:
            raise unauthorized("Invalid or expired token")
        request.state.user_id = user.id  # for the access log
        return user


CurrentUser = Annotated[UserPublic, Depends(BearerUser())]


async def get_admin_user(user: CurrentUser) -> UserPublic:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, detail="Admin privileges required")
    return user


AdminUser = Annotated[UserPublic, Depends(get_admin_user)]

PathId = Annotated[int, Path(gt=0, le=MAX_ID, description="A positive integer id")]


async def get_owned_order(order_id: PathId, request: Request, user: CurrentUser) -> OrderPublic:
    """The order, if the caller owns it or is an admin; otherwise 404 (existence is not leaked)."""
    order = await request.app.state.db.read(order_queries.get, order_id)
    if order is None or (order.user_id != user.id and not user.is_admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="Order not found")
    return order


OwnedOrder = Annotated[OrderPublic, Depends(get_owned_order)]


MAX_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


# Async although it awaits nothing: FastAPI runs a plain `def` dependency on the thread pool.
async def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE, description="Page size")] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


Pagination = Annotated[PageParams, Depends(page_params)]
