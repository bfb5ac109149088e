"""What routes receive by injection: settings, the unit of work, the caller, their order."""

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Query, Request, Response
from fastapi.security import OAuth2PasswordBearer

import auth_service
import order_queries
import order_service
from database import Database
from errors import Forbidden, NotFound, Unauthorized
from models import MAX_ID
from schemas import MAX_PAGE_SIZE, OrderPublic, UserPublic
from settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_database(request: Request) -> Database:
    return request.app.state.db


SettingsDep = Annotated[Settings, Depends(get_settings)]


async def get_client_address(request: Request) -> str:
    """The client's address as the server gives it: the connection's peer, or, behind a proxy
    that uvicorn trusts (FORWARDED_ALLOW_IPS), the address that proxy forwarded."""
    return request.client.host if request.client else "unknown"


ClientAddress = Annotated[str, Depends(get_client_address)]
# The unit of work: `await database.read(query, ...)` and `await database.write(command, ...)`.
DatabaseDep = Annotated[Database, Depends(get_database)]


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
            raise Unauthorized("Not authenticated")
        state = request.app.state
        user = await auth_service.user_of_token(state.db, state.settings, token)
        request.state.user_id = user.id  # for the access log
        return user


CurrentUser = Annotated[UserPublic, Depends(BearerUser())]


async def get_admin_user(user: CurrentUser) -> UserPublic:
    if not user.is_admin:
        raise Forbidden("Admin privileges required")
    return user


AdminUser = Annotated[UserPublic, Depends(get_admin_user)]

PathId = Annotated[int, Path(gt=0, le=MAX_ID, description="A positive integer id")]


async def get_owned_order(order_id: PathId, request: Request, user: CurrentUser) -> OrderPublic:
    """The order, if the caller may see it; otherwise 404 (existence is not leaked)."""
    order = await request.app.state.db.read(order_queries.get, order_id)
    if order is None or not order_service.may_access(user, order):
        raise NotFound("Order not found")
    return order


OwnedOrder = Annotated[OrderPublic, Depends(get_owned_order)]


MAX_OFFSET = 1_000_000_000


@dataclass(frozen=True)
class PageParams:
    limit: int
    offset: int


# Async although it awaits nothing: FastAPI runs a plain `def` dependency on the thread pool.
async def page_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_PAGE_SIZE, description=f"Page size, 1 to {MAX_PAGE_SIZE}")
    ] = 20,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="Rows to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


Pagination = Annotated[PageParams, Depends(page_params)]


async def no_store(response: Response) -> None:
    """Token responses must not be cached anywhere (RFC 6749, section 5.1)."""
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"


NoStore = Depends(no_store)
