"""/webhooks: admins register receivers of signed order events and read their delivery log."""

from fastapi import APIRouter, Response, status

import webhook_service
from dependencies import AdminUser, DatabaseDep, NoStore, Pagination, PathId, SettingsDep
from errors import responses
from schemas import (
    DeliveryPublic,
    Page,
    WebhookChanged,
    WebhookCreate,
    WebhookCreated,
    WebhookPublic,
    WebhookUpdate,
)

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=responses(401, 403),
    dependencies=[NoStore],  # the answer carries the secret
)
async def create_webhook(
    body: WebhookCreate, _admin: AdminUser, database: DatabaseDep, settings: SettingsDep
) -> WebhookCreated:
    """Admins only: send the events listed to `url`, signed as Standard Webhooks says. The
    answer carries the signing `secret`; it is never shown again (rotate it with PATCH).
    In production a URL that resolves to a private, loopback or link-local address is 422,
    unless the deployment allows it."""
    await webhook_service.refuse_unsafe_url(settings, body.url)
    return await database.write(webhook_service.create, body)


@router.get("", responses=responses(401, 403))
async def list_webhooks(_admin: AdminUser, database: DatabaseDep) -> list[WebhookPublic]:
    """Admins only: every webhook, oldest first (secrets are never shown)."""
    return await database.read(webhook_service.list_all)


@router.get("/{webhook_id}", responses=responses(401, 403, 404))
async def get_webhook(
    webhook_id: PathId, _admin: AdminUser, database: DatabaseDep
) -> WebhookPublic:
    """Admins only: one webhook."""
    return await database.read(webhook_service.get, webhook_id)


@router.patch(
    "/{webhook_id}",
    responses=responses(401, 403, 404),
    dependencies=[NoStore],  # the answer may carry a new secret
)
async def update_webhook(
    webhook_id: PathId,
    body: WebhookUpdate,
    _admin: AdminUser,
    database: DatabaseDep,
    settings: SettingsDep,
) -> WebhookChanged:
    """Admins only: change the URL, the events, the description, or `is_active` (an
    inactive webhook's deliveries wait until it is active again). `"rotate_secret": true`
    replaces the signing secret: the answer shows the new one, which signs every attempt from
    then on."""
    await webhook_service.refuse_unsafe_url(settings, body.url)
    return await database.write(webhook_service.change, webhook_id, body)


@router.delete(
    "/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, responses=responses(401, 403, 404)
)
async def delete_webhook(webhook_id: PathId, _admin: AdminUser, database: DatabaseDep) -> Response:
    """Admins only: delete a webhook; its pending deliveries are dropped."""
    await database.write(webhook_service.remove, webhook_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", responses=responses(401, 403, 404))
async def list_deliveries(
    webhook_id: PathId, _admin: AdminUser, database: DatabaseDep, page: Pagination
) -> Page[DeliveryPublic]:
    """Admins only: the webhook's deliveries, newest first: status, attempts, and the last
    attempt's status code or error."""
    return await database.read(
        webhook_service.deliveries, webhook_id, limit=page.limit, offset=page.offset
    )
