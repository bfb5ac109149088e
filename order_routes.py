"""/order: a customer's orders and their items. The rules live in order_service."""

from typing import Annotated

from fastapi import APIRouter, Header, Query, Response, status

import cursors
import metrics
import order_queries
import order_service
from database import Database
from dependencies import CurrentUser, DatabaseDep, OwnedOrder, Pagination, PathId, SettingsDep
from errors import Unprocessable, responses
from models import MAX_ID, OrderStatus
from order_queries import OrderFilter
from schemas import (
    OrderCreate,
    OrderItemIn,
    OrderPage,
    OrderPublic,
    StatusChangePublic,
    UserPublic,
    UtcDatetime,
)

router = APIRouter(prefix="/order", tags=["order"], responses=responses(401))

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Repeat a creation safely: the same key returns the same order",
    ),
]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=responses(409)
    | {
        200: {
            "model": OrderPublic,
            "description": "The order first created with this Idempotency-Key",
            "headers": {
                "Idempotent-Replayed": {
                    "description": "`true` on a replay",
                    "schema": {"type": "string"},
                }
            },
        },
    },
)
async def create_order(
    body: OrderCreate,
    user: CurrentUser,
    database: DatabaseDep,
    response: Response,
    idempotency_key: IdempotencyKeyHeader = None,
) -> OrderPublic:
    """Place an order for the caller, `pending`, from products and quantities (1 to
    {max_quantity} each; a product listed twice becomes one line). Prices come from the
    catalogue; the body cannot set them.

    A product whose stock is tracked gives the units from it, in the same transaction: if any
    has fewer than asked, nothing is written and the answer is 409 naming it.

    Send an `Idempotency-Key` to retry safely: the same key and body from the same user
    returns the first order with 200 and `Idempotent-Replayed: true`, even when retries
    race; the same key with another body is 422.
    """
    order, replayed = await database.write(
        order_service.create_order, user, body.items, idempotency_key
    )
    if replayed:
        response.status_code = status.HTTP_200_OK
        response.headers["Idempotent-Replayed"] = "true"
    else:
        metrics.orders.labels("created").inc()
    return order


@router.get("", responses=responses(403))
async def list_orders(
    user: CurrentUser,
    database: DatabaseDep,
    settings: SettingsDep,
    page: Pagination,
    status_filter: Annotated[OrderStatus | None, Query(alias="status")] = None,
    user_id: Annotated[int | None, Query(gt=0, le=MAX_ID, description="Admins only")] = None,
    created_from: Annotated[
        UtcDatetime | None, Query(description="Created at or after (ISO 8601 with offset)")
    ] = None,
    created_to: Annotated[
        UtcDatetime | None, Query(description="Created at or before (ISO 8601 with offset)")
    ] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=cursors.MAX_LENGTH, description="`next_cursor` of the page before"),
    ] = None,
) -> OrderPage:
    """The caller's orders, newest first; admins see everyone's and may filter by `user_id`.

    Each page carries `next_cursor`: pass it as `cursor`, with the same filters, for the next
    page, which then costs the same however deep it is, and neither repeats nor skips an
    order while new ones arrive (its `total` is null: counting every match is what makes
    deep pages slow). `offset` pages still work; `cursor` with an `offset` is 422, and so is
    a cursor another list gave.
    """
    where = OrderFilter(
        user_id=order_service.listed_owner(user, user_id),
        status=status_filter,
        created_from=created_from,
        created_to=created_to,
    )
    # A cursor belongs to the list of one caller with one set of filters.
    scope = f"{user.id}|{where}"
    after = None
    if cursor is not None:
        if page.offset:
            raise Unprocessable(
                "Send either cursor or offset, not both",
                loc=["query", "offset"],
                type="cursor_with_offset",
            )
        try:
            after = cursors.read(settings.secret_key, scope, cursor)
        except cursors.InvalidCursor as exc:
            raise Unprocessable(
                f"Invalid cursor: {exc} (ask again without it)",
                loc=["query", "cursor"],
                type="cursor_invalid",
            ) from None
    # A keyset page costs what its size does; an offset page counts every match and skips
    # `offset` of them, which grows with the data: off the event loop once the data is large.
    inline = after is not None or (
        database.inline and await database.read(order_queries.small_enough_inline)
    )
    read = database.read if inline else database.read_heavy
    orders, total, more = await read(
        order_queries.page, where, limit=page.limit, offset=page.offset, after=after
    )
    following = cursors.make(settings.secret_key, scope, orders[-1].id) if more else None
    return OrderPage(
        items=orders, total=total, limit=page.limit, offset=page.offset, next_cursor=following
    )


@router.get("/{order_id}", responses=responses(404))
async def get_order(order: OwnedOrder) -> OrderPublic:
    """One order with its lines and total. Someone else's order is 404, exactly like a missing
    one.
    """
    return order


@router.post(
    "/{order_id}/items",
    status_code=status.HTTP_201_CREATED,
    responses=responses(404, 409),
)
async def add_item(
    order: OwnedOrder, body: OrderItemIn, user: CurrentUser, database: DatabaseDep
) -> OrderPublic:
    """Add a product to a pending order. If the product is already in it, that line's quantity
    grows (to at most {max_quantity}) and keeps its original unit price. The units come from a
    tracked product's stock (409 when it is short). The owner or an admin may change an
    order.
    """
    return await database.write(
        order_service.add_item, order.id, user, body.product_id, body.quantity
    )


@router.delete("/{order_id}/items/{item_id}", responses=responses(404, 409))
async def remove_item(
    order: OwnedOrder, item_id: PathId, user: CurrentUser, database: DatabaseDep
) -> OrderPublic:
    """Remove a line from a pending order; a tracked product gets its units back."""
    return await database.write(order_service.remove_item, order.id, user, item_id)


@router.post("/{order_id}/cancel", responses=responses(404, 409))
async def cancel_order(order: OwnedOrder, user: CurrentUser, database: DatabaseDep) -> OrderPublic:
    """pending → cancelled, giving back the stock the order took. Any other status is 409.
    When requests race to change one order, exactly one wins and the others get 409.
    """
    return await _move(database, order, user, OrderStatus.cancelled)


@router.post("/{order_id}/finish", responses=responses(404, 409))
async def finish_order(order: OwnedOrder, user: CurrentUser, database: DatabaseDep) -> OrderPublic:
    """pending → finished, for an order with at least one line. Any other status, or no lines,
    is 409. When requests race, exactly one wins.
    """
    return await _move(database, order, user, OrderStatus.finished)


async def _move(
    database: Database, order: OrderPublic, user: UserPublic, target: OrderStatus
) -> OrderPublic:
    moved = await database.write(order_service.change_status, order.id, user, target)
    metrics.orders.labels(target.value).inc()  # committed
    return moved


@router.get("/{order_id}/history", responses=responses(404))
async def order_history(order: OwnedOrder, database: DatabaseDep) -> list[StatusChangePublic]:
    """Every status change, oldest first; the first entry is the creation (`from_status:
    null`). `changed_by` is the id of the user who made the change.
    """
    return await database.read(order_queries.history, order.id)
