"""The transactional outbox: every order change records its event in the change's own
transaction, with one delivery for each active webhook subscribed to its type. A change is
never committed without its event, nor an event without its change; webhook_delivery.py
sends what is recorded here, after the commit, never on the request path."""

import secrets
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Connection, Text, bindparam, cast, insert, literal, select

from models import (
    DeliveryStatus,
    EventType,
    UTCDateTime,
    Webhook,
    WebhookDelivery,
    WebhookEvent,
    utcnow,
)
from precompiled import Precompiled, bound
from schemas import OrderPublic

# Run with every order change, so precompiled.
_INSERT_EVENT = Precompiled(
    insert(WebhookEvent)
    .values(bound("uid", "type", "order_id", "body", "created_at"))
    .returning(WebhookEvent.id)
)
# One statement fans the event out to its subscribers, so an order change costs the same
# Python work however many webhooks there are (or none). `events` is a JSON list of names,
# matched as text with its quotes.
_FAN_OUT = Precompiled(
    insert(WebhookDelivery).from_select(
        ["webhook_id", "event_id", "status", "attempts", "next_attempt_at", "created_at"],
        select(
            Webhook.id,
            bindparam("event_id"),
            bindparam("status"),
            literal(0),
            bindparam("now", type_=UTCDateTime()),
            bindparam("now", type_=UTCDateTime()),
        ).where(
            Webhook.is_active,
            cast(Webhook.events, Text).contains(bindparam("quoted_type")),
        ),
    )
)


class OrderData(BaseModel):
    order: OrderPublic


class EventBody(BaseModel):
    """What a webhook receives: the order as the API returned it at the change."""

    id: str
    type: EventType
    created_at: datetime
    data: OrderData


def new_event_id() -> str:
    return f"evt_{secrets.token_hex(12)}"


def record(conn: Connection, type: EventType, order: OrderPublic) -> None:
    """Record the event of a change to `order`, in the caller's transaction."""
    uid, now = new_event_id(), utcnow()
    body = EventBody(id=uid, type=type, created_at=now, data=OrderData(order=order))
    ((event_id,),) = _INSERT_EVENT.all(
        conn,
        {
            "uid": uid,
            "type": type,
            "order_id": order.id,
            "body": body.model_dump_json(),
            "created_at": now,
        },
    )
    _FAN_OUT.execute(
        conn,
        {
            "event_id": event_id,
            "status": DeliveryStatus.pending.value,
            "now": now,
            "quoted_type": f'"{type.value}"',
        },
    )
