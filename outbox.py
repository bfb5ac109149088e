"""The transactional outbox: every order change records its event in the change's own
transaction, with one delivery for each active webhook subscribed to its type. A change is
never committed without its event, nor an event without its change; webhook_delivery.py
sends what is recorded here, after the commit, never on the request path."""

import secrets
from datetime import datetime

from pydantic import BaseModel
from sqlalchemy import Connection, bindparam, insert, select

from models import DeliveryStatus, EventType, Webhook, WebhookDelivery, WebhookEvent, utcnow
from precompiled import Precompiled, bound
from schemas import OrderPublic

# Run with every order change, so precompiled.
_INSERT_EVENT = Precompiled(
    insert(WebhookEvent)
    .values(bound("uid", "type", "order_id", "body", "created_at"))
    .returning(WebhookEvent.id)
)
_SUBSCRIBERS = Precompiled(
    select(Webhook.id, Webhook.events).where(Webhook.is_active == bindparam("active"))
)
_INSERT_DELIVERY = Precompiled(
    insert(WebhookDelivery).values(
        bound("webhook_id", "event_id", "status", "attempts", "next_attempt_at", "created_at")
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
    subscribers = [
        webhook_id
        for webhook_id, events in _SUBSCRIBERS.all(conn, {"active": True})
        if type in events
    ]
    if subscribers:
        _INSERT_DELIVERY.execute_many(
            conn,
            [
                {
                    "webhook_id": webhook_id,
                    "event_id": event_id,
                    "status": DeliveryStatus.pending,
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for webhook_id in subscribers
            ],
        )
