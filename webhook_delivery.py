"""Webhook delivery: what the outbox recorded, POSTed to its webhooks, signed, at least once.

Any number of processes may run this loop (each app worker, and `python manage.py
deliver-webhooks`). A process leases a webhook before it sends that webhook's deliveries, so
one process at a time sends to a webhook, oldest delivery first; the lease is renewed with
each attempt and runs out WEBHOOK_LEASE_SECONDS after the last one, so a process killed mid-send
leaves nothing stuck: another takes the webhook over and sends again what was not recorded
(same body, same `webhook-id`). A failed attempt is retried with exponential backoff and
jitter, up to WEBHOOK_MAX_ATTEMPTS; a delivery waiting for its retry does not hold back the
deliveries after it.
"""

import asyncio
import contextlib
import logging
import os
import random
import secrets
import signal
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    bindparam,
    delete,
    exists,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

import logs
import metrics
import tls
import webhook_signing
import webhook_urls
from database import Database
from models import (
    DeliveryStatus,
    UTCDateTime,
    Webhook,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEvent,
    utcnow,
)
from precompiled import Precompiled, bound
from settings import Settings

log = logging.getLogger("orders.webhooks")

SEND_TIMEOUT_SECONDS = 10  # a 2xx within this is success
WEBHOOKS_AT_ONCE = 8  # webhooks one process sends to concurrently
BATCH = 50  # deliveries sent under one lease before the webhooks are leased again
MAX_BACKOFF_SECONDS = 6 * 3600
PRUNE_EVERY_SECONDS = 60
PRUNE_BATCH = 500
PRUNE_ROUNDS = 100  # batches per pruning round at most
MAX_ERROR_CHARS = 500
# An attempt's outcome, as the metrics count it, by the status it leaves its delivery in.
OUTCOMES = {
    DeliveryStatus.succeeded: "succeeded",
    DeliveryStatus.pending: "retrying",
    DeliveryStatus.failed: "failed",
}


@dataclass(frozen=True)
class Leased:
    id: int
    url: str
    secret: str


@dataclass(frozen=True)
class Due:
    delivery_id: int
    attempts: int
    event_uid: str
    body: str


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    error: str | None
    duration_ms: int

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


# --- the database side ----------------------------------------------------------------------


def _due(now: datetime | BindParameter[datetime]) -> tuple[ColumnElement[bool], ...]:
    """A delivery is due when it is pending and its next attempt's time has come."""
    return (
        WebhookDelivery.status == DeliveryStatus.pending,
        WebhookDelivery.next_attempt_at <= now,
    )


def _lease(
    conn: Connection, owner: str, now: datetime, lease: timedelta, limit: int
) -> list[Leased]:
    """Lease active webhooks that have deliveries due and no live lease."""
    # For each webhook, its pending deliveries by the (webhook_id, status, id) index: the
    # cost follows the webhooks and their pending deliveries, never the deliveries made.
    due = select(WebhookDelivery.id).where(WebhookDelivery.webhook_id == Webhook.id, *_due(now))
    free = or_(Webhook.lease_until.is_(None), Webhook.lease_until < now)
    candidates = conn.scalars(
        select(Webhook.id)
        .where(due.exists(), Webhook.is_active, free)
        .order_by(Webhook.id)
        .limit(limit)
        .with_for_update(skip_locked=True)  # PostgreSQL: never wait for another deliverer
    ).all()
    if not candidates:
        return []
    rows = conn.execute(
        update(Webhook)
        .where(Webhook.id.in_(candidates), free)
        .values(lease_owner=owner, lease_until=now + lease)
        .returning(Webhook.id, Webhook.url, Webhook.secret)
    ).all()
    return [Leased(*row) for row in rows]


# The statements of every attempt (an order's event makes one for each webhook subscribed to
# it), so precompiled.
_NEXT_DUE = Precompiled(
    select(WebhookDelivery.id, WebhookDelivery.attempts, WebhookEvent.uid, WebhookEvent.body)
    .join(WebhookEvent, WebhookEvent.id == WebhookDelivery.event_id)
    .where(
        WebhookDelivery.webhook_id == bindparam("webhook_id"),
        *_due(bindparam("now", type_=UTCDateTime())),
    )
    .order_by(WebhookDelivery.id)
    .limit(1)
)
# The webhook, while its lease is still `owner`'s.
_OURS = (Webhook.id == bindparam("webhook_id"), Webhook.lease_owner == bindparam("owner"))
_RENEW_LEASE = Precompiled(update(Webhook).where(*_OURS).values(bound("lease_until")))
_RELEASE = Precompiled(update(Webhook).where(*_OURS).values(lease_owner=None, lease_until=None))
_INSERT_ATTEMPT = Precompiled(
    insert(WebhookAttempt).values(
        bound("delivery_id", "attempted_at", "status_code", "error", "duration_ms")
    )
)
_UPDATE_DELIVERY = Precompiled(
    update(WebhookDelivery)
    .where(WebhookDelivery.id == bindparam("delivery_id"))
    .values(
        bound(
            "status",
            "attempts",
            "last_status_code",
            "last_error",
            "next_attempt_at",
            "delivered_at",
        )
    )
)


def _next_due(conn: Connection, webhook_id: int, now: datetime) -> Due | None:
    row = _NEXT_DUE.one_or_none(conn, {"webhook_id": webhook_id, "now": now})
    return None if row is None else Due(*row)


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """The wait after the `attempts`-th failed attempt: doubling from the base, with ±20 %
    jitter so that receivers coming back are not hit by every retry at once."""
    delay = settings.webhook_retry_base_seconds * 2 ** (attempts - 1)
    return min(delay, MAX_BACKOFF_SECONDS) * random.uniform(0.8, 1.2)  # noqa: S311 - jitter, not a secret


def _record(
    conn: Connection,
    settings: Settings,
    owner: str,
    webhook_id: int,
    due: Due,
    outcome: Outcome,
) -> DeliveryStatus | None:
    """Store an attempt and its consequence, and renew the lease: the delivery's status now,
    or None when the lease is no longer ours (the webhook was deleted, or we were too slow
    and another process took it over)."""
    now = utcnow()
    kept = _RENEW_LEASE.execute(
        conn,
        {
            "webhook_id": webhook_id,
            "owner": owner,
            "lease_until": now + timedelta(seconds=settings.webhook_lease_seconds),
        },
    )
    if not kept:
        return None
    _INSERT_ATTEMPT.execute(
        conn,
        {
            "delivery_id": due.delivery_id,
            "attempted_at": now,
            "status_code": outcome.status_code,
            "error": outcome.error,
            "duration_ms": outcome.duration_ms,
        },
    )
    attempts = due.attempts + 1
    status, retry = DeliveryStatus.pending, None
    if outcome.ok:
        status = DeliveryStatus.succeeded
    elif attempts >= settings.webhook_max_attempts:
        status = DeliveryStatus.failed
        log.error(
            "Webhook %s: delivery %s failed for good after %s attempts (last: %s)",
            webhook_id,
            due.delivery_id,
            attempts,
            outcome.error,
        )
    else:
        retry = now + timedelta(seconds=backoff_seconds(settings, attempts))
    _UPDATE_DELIVERY.execute(
        conn,
        {
            "delivery_id": due.delivery_id,
            "status": status,
            "attempts": attempts,
            "last_status_code": outcome.status_code,
            "last_error": outcome.error,
            "next_attempt_at": retry,
            "delivered_at": now if outcome.ok else None,
        },
    )
    return status


def _release(conn: Connection, webhook_id: int, owner: str) -> None:
    _RELEASE.execute(conn, {"webhook_id": webhook_id, "owner": owner})


_FIRST_KEPT = (
    select(WebhookEvent.id)
    .where(WebhookEvent.created_at >= bindparam("before"))
    .order_by(WebhookEvent.id)
    .limit(1)
)


def _prune(conn: Connection, before: datetime) -> int:
    """Delete a batch of succeeded deliveries older than the retention, and of the events
    left with no delivery; how many rows of the larger of the two went."""
    old = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == DeliveryStatus.succeeded,
            WebhookDelivery.delivered_at < before,
        )
        .limit(PRUNE_BATCH)
    )
    pruned = conn.execute(delete(WebhookDelivery).where(WebhookDelivery.id.in_(old))).rowcount
    orphans = (
        select(WebhookEvent.id)
        .where(
            WebhookEvent.created_at < before,
            ~exists().where(WebhookDelivery.event_id == WebhookEvent.id),
        )
        .order_by(WebhookEvent.id)
        .limit(PRUNE_BATCH)
    )
    # Events are numbered as they are made, so the old ones come first: the search stops at
    # the first event within the retention. Unbounded, it read every event kept, on every
    # prune: the whole table once the old ones had gone.
    first_kept = conn.scalar(_FIRST_KEPT, {"before": before})
    if first_kept is not None:
        orphans = orphans.where(WebhookEvent.id < first_kept)
    dropped = conn.execute(delete(WebhookEvent).where(WebhookEvent.id.in_(orphans))).rowcount
    return max(pruned, dropped)


# --- the sending side -----------------------------------------------------------------------


def _error(text: str) -> str:
    return text[:MAX_ERROR_CHARS]


async def send(client: httpx.AsyncClient, settings: Settings, webhook: Leased, due: Due) -> Outcome:
    """POST one event, signed; never raises."""
    started = time.perf_counter()

    def outcome(status_code: int | None, error: str | None) -> Outcome:
        return Outcome(status_code, error, round((time.perf_counter() - started) * 1000))

    body = due.body.encode()
    headers = {
        "content-type": "application/json",
        "user-agent": "orders-api-webhooks",
        **webhook_signing.headers(webhook.secret, due.event_uid, int(time.time()), body),
    }
    # Checked again at each attempt: what a name resolves to can change, and a URL stored
    # before registration checked as much as it does now must fail here, not break the loop.
    address = None
    try:
        if settings.guards_webhook_urls:
            address = await webhook_urls.check_destination(webhook.url)
        else:
            webhook_urls.check_shape(webhook.url)
    except webhook_urls.UnsafeURL as exc:
        return outcome(None, _error(str(exc)))
    url, extensions = httpx.URL(webhook.url), {}
    if address is not None:
        # Connect to the address just checked, not to whatever a second lookup answers (DNS
        # rebinding); the request still names the host, and TLS still verifies it.
        headers["host"] = url.netloc.decode("ascii")
        extensions["sni_hostname"] = url.host
        url = url.copy_with(host=address)
    try:
        # The whole attempt, not each step of it, gets SEND_TIMEOUT_SECONDS: an attempt must
        # end well within the lease. The answer's body is never read: only its status matters.
        async with (
            asyncio.timeout(SEND_TIMEOUT_SECONDS),
            client.stream(
                "POST", url, content=body, headers=headers, extensions=extensions
            ) as response,
        ):
            code = response.status_code
    except TimeoutError:
        return outcome(None, f"no answer within {SEND_TIMEOUT_SECONDS} s")
    except httpx.HTTPError as exc:
        return outcome(
            None, _error(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__)
        )
    return outcome(code, None if 200 <= code < 300 else f"HTTP {code}")


def new_client() -> httpx.AsyncClient:
    # Redirects are not followed: a 3xx is a failed attempt (following one could lead into
    # the network the URL check keeps out).
    return httpx.AsyncClient(
        verify=tls.client_context(),
        timeout=SEND_TIMEOUT_SECONDS,
        follow_redirects=False,
        limits=httpx.Limits(max_connections=WEBHOOKS_AT_ONCE),
    )


class Deliverer:
    """The delivery loop of one process."""

    def __init__(self, database: Database, settings: Settings) -> None:
        self.database = database
        self.settings = settings
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._pruned_at = 0.0
        self._stop = asyncio.Event()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until `stop` is set; a batch in progress ends after its current attempt."""
        self._stop = stop
        async with new_client() as client:
            while not stop.is_set():
                try:
                    sent = await self.run_once(client)
                except SQLAlchemyError as exc:  # busy or unreachable: the next round retries
                    log.warning("Webhook delivery round failed: %s", type(exc).__name__)
                    sent = 0
                except Exception:  # a bug: logged in full, and every other webhook still served
                    log.exception("Webhook delivery round failed")
                    sent = 0
                if not sent:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), self.settings.webhook_poll_seconds)

    async def run_once(self, client: httpx.AsyncClient | None = None) -> int:
        """One round: lease the webhooks with deliveries due, send a batch to each; the number
        of attempts made."""
        if client is None:
            async with new_client() as own:
                return await self.run_once(own)
        await self._prune_now_and_then()
        lease = timedelta(seconds=self.settings.webhook_lease_seconds)
        leased = await self.database.write(_lease, self.owner, utcnow(), lease, WEBHOOKS_AT_ONCE)
        counts = await asyncio.gather(*(self._drain(client, webhook) for webhook in leased))
        return sum(counts)

    async def _drain(self, client: httpx.AsyncClient, webhook: Leased) -> int:
        sent = 0
        try:
            while sent < BATCH and not self._stop.is_set():
                due = await self.database.read(_next_due, webhook.id, utcnow())
                if due is None:
                    break
                outcome = await send(client, self.settings, webhook, due)
                sent += 1
                now = await self.database.write(
                    _record, self.settings, self.owner, webhook.id, due, outcome
                )
                if now is None:
                    return sent
                metrics.webhook_deliveries.labels(OUTCOMES[now]).inc()
        finally:
            await self.database.write(_release, webhook.id, self.owner)
        return sent

    async def _prune_now_and_then(self) -> None:
        if time.monotonic() - self._pruned_at < PRUNE_EVERY_SECONDS:
            return
        self._pruned_at = time.monotonic()
        before = utcnow() - timedelta(days=self.settings.webhook_retention_days)
        # A batch per transaction, so the write lock is held briefly; as many batches as it
        # takes, up to a bound per round, so the tables shrink faster than orders fill them.
        for _ in range(PRUNE_ROUNDS):
            if await self.database.write(_prune, before) < PRUNE_BATCH:
                break


async def serve(settings: Settings) -> None:
    """`python manage.py deliver-webhooks`: the loop alone, until SIGTERM or SIGINT."""
    logs.configure(settings.log_level, settings.log_format)
    database = Database(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    log.info("Delivering webhooks (process %s)", os.getpid())
    try:
        await Deliverer(database, settings).run(stop)
    finally:
        database.dispose()
        log.info("Webhook delivery stopped")
