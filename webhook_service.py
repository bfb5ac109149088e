"""Webhooks as admins manage them: the rules behind /webhooks, kept apart from HTTP."""

from sqlalchemy import Connection, delete, func, insert, select, update

import webhook_signing
import webhook_urls
from errors import NotFound, Unprocessable
from models import Webhook, WebhookDelivery, WebhookEvent
from schemas import (
    DeliveryPublic,
    Page,
    WebhookChanged,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)
from settings import Settings

_PUBLIC = (
    Webhook.id,
    Webhook.url,
    Webhook.events,
    Webhook.description,
    Webhook.is_active,
    Webhook.created_at,
)
_NOT_FOUND = "Webhook not found"


async def refuse_unsafe_url(settings: Settings, url: str | None) -> None:
    """In production (unless WEBHOOK_ALLOW_PRIVATE_URLS), a URL must resolve to public
    addresses only: a webhook must not make this server call into its own network."""
    if url is None or not settings.guards_webhook_urls:
        return
    try:
        await webhook_urls.check_destination(url)
    except webhook_urls.UnsafeURL as exc:
        raise Unprocessable(str(exc), loc=["body", "url"], type="url_not_allowed") from None


def create(conn: Connection, data: WebhookCreate) -> WebhookCreated:
    secret = webhook_signing.new_secret()
    row = conn.execute(
        insert(Webhook)
        .values(url=data.url, events=data.events, description=data.description, secret=secret)
        .returning(*_PUBLIC)
    ).one()
    return WebhookCreated.model_validate({**row._mapping, "secret": secret})


def list_all(conn: Connection) -> list[WebhookPublic]:
    rows = conn.execute(select(*_PUBLIC).order_by(Webhook.id))
    return [WebhookPublic.model_validate(row, from_attributes=True) for row in rows]


def get(conn: Connection, webhook_id: int) -> WebhookPublic:
    row = conn.execute(select(*_PUBLIC).where(Webhook.id == webhook_id)).one_or_none()
    if row is None:
        raise NotFound(_NOT_FOUND)
    return WebhookPublic.model_validate(row, from_attributes=True)


def change(conn: Connection, webhook_id: int, changes: WebhookUpdate) -> WebhookChanged:
    """Apply the changes; with `rotate_secret`, a new secret signs every attempt from now on
    (pending deliveries too), and the answer shows it."""
    values = changes.changes()
    secret = webhook_signing.new_secret() if values.pop("rotate_secret", None) else None
    if secret is not None:
        values["secret"] = secret
    statement = update(Webhook).where(Webhook.id == webhook_id)
    if values:
        row = conn.execute(statement.values(values).returning(*_PUBLIC)).one_or_none()
    else:
        row = conn.execute(select(*_PUBLIC).where(Webhook.id == webhook_id)).one_or_none()
    if row is None:
        raise NotFound(_NOT_FOUND)
    return WebhookChanged.model_validate({**row._mapping, "secret": secret})


def remove(conn: Connection, webhook_id: int) -> None:
    """Delete a webhook; its deliveries and their log go with it."""
    if not conn.execute(delete(Webhook).where(Webhook.id == webhook_id)).rowcount:
        raise NotFound(_NOT_FOUND)


def deliveries(
    conn: Connection, webhook_id: int, *, limit: int, offset: int
) -> Page[DeliveryPublic]:
    """A webhook's deliveries, newest first."""
    get(conn, webhook_id)
    of_webhook = WebhookDelivery.webhook_id == webhook_id
    total = conn.scalar(select(func.count()).select_from(WebhookDelivery).where(of_webhook))
    rows = conn.execute(
        select(
            WebhookDelivery.id,
            WebhookEvent.uid.label("event_id"),
            WebhookEvent.type.label("event_type"),
            WebhookDelivery.status,
            WebhookDelivery.attempts,
            WebhookDelivery.last_status_code,
            WebhookDelivery.last_error,
            WebhookDelivery.next_attempt_at,
            WebhookDelivery.created_at,
            WebhookDelivery.delivered_at,
        )
        .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
        .where(of_webhook)
        .order_by(WebhookDelivery.id.desc())
        .limit(limit)
        .offset(offset)
    )
    items = [DeliveryPublic.model_validate(row, from_attributes=True) for row in rows]
    return Page[DeliveryPublic](items=items, total=total or 0, limit=limit, offset=offset)
