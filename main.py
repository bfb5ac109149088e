"""The FastAPI application: routers, middleware, start-up migration and the health check."""

import asyncio
import contextlib
import gc
import hmac
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline
from sqlalchemy import Connection, text
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool

import auth_routes
import errors
import logs
import metrics
import order_routes
import product_routes
import security
import webhook_routes
from database import Database, code_revision, schema_revision, upgrade_to_head
from dependencies import DatabaseDep, SettingsDep
from middleware import RequestContext, RequestLimits
from models import MAX_QUANTITY
from schemas import PASSWORD_MAX, PASSWORD_MIN, Health, Readiness
from settings import Settings
from webhook_delivery import Deliverer

DESCRIPTION = """
Orders with items, priced from an admin-managed catalogue.

**Try it here:** sign up with `POST /auth/signup` (or run `python manage.py seed-demo` for a
demo customer and catalogue), then click **Authorize** and enter your email as *username*
and your password. Every call below then carries your token.

**Rules in short**
- Orders move from `pending` to `cancelled` or `finished`, never back; only pending orders
  change. You see and change your own orders; admins see and change everyone's.
- Money is a decimal string with two places (`"12.50"`), priced by the catalogue.
- Errors are JSON with a `detail`: a sentence for 401/403/404/409/413/429/431, FastAPI's list of
  problems for 422. Every response carries an `X-Request-ID` to quote in a bug report.
"""

# How long shutdown waits for a webhook attempt in flight: its longest (a 5 s lookup, then
# a 10 s send).
DELIVERY_STOP_SECONDS = 15

TAGS = [
    {
        "name": "auth",
        "description": "Accounts and tokens: sign up, log in (JSON or the OAuth2 form), rotate "
        "and revoke refresh tokens, change or reset the password (by email); admins manage "
        "users.",
    },
    {
        "name": "product",
        "description": "The catalogue, which owns the prices. Anyone reads it; admins change it.",
    },
    {
        "name": "order",
        "description": "Orders with lines, for the signed-in user. pending → cancelled or "
        "finished; concurrent changes are settled by the database, exactly one wins.",
    },
    {
        "name": "webhooks",
        "description": "Signed order events (Standard Webhooks) sent to the URLs admins "
        "register, retried with backoff, with a delivery log.",
    },
    {"name": "system", "description": "Health of the service and its database."},
]


_frozen = False


def freeze_start_up_objects() -> None:
    """Take the objects that live as long as the worker (modules, models, routes, schemas:
    about 160,000) out of the garbage collector's view, once per process. Otherwise each full
    collection walks them all, a pause of about 100 ms every few thousand requests. (A flag,
    not gc.get_freeze_count(), says whether it was done: that count walks them all too.)"""
    global _frozen
    if not _frozen:
        gc.collect()
        gc.freeze()
        _frozen = True


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logs.configure(settings.log_level, settings.log_format)
    security.configure_hashing(
        memory_kib=settings.password_hash_memory_kib,
        time_cost=settings.password_hash_time_cost,
        parallelism=settings.password_hash_parallelism,
        concurrency=settings.password_hash_concurrency,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_startup:
            upgrade_to_head(settings.database_url)
        freeze_start_up_objects()
        async with delivering_webhooks(app.state.db, app.state.settings):
            yield
        app.state.db.dispose()

    # FastAPIOffline serves Swagger UI and ReDoc from the installed package instead of a CDN,
    # so /docs works on machines that reach no CDN (this one, CI, most intranets).
    app = FastAPIOffline(
        title="Orders API",
        version="1.0.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
        lifespan=lifespan,
        generate_unique_id_function=operation_id,
        # RequestLimits answers these for any operation, before it is routed.
        responses=errors.responses(413, 431),
    )
    app.state.settings = settings
    app.state.db = Database(settings)

    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    app.add_middleware(RequestLimits)
    # RequestContext goes around everything, Starlette's error middleware included, so every
    # answer, a 500 too, gets an id, the security headers and an access line.
    build_stack = app.build_middleware_stack
    app.build_middleware_stack = lambda: RequestContext(build_stack())  # type: ignore[method-assign]
    errors.install(app)

    # Routes are matched in the order they were added: the busiest router goes first. Every
    # operation of these routers reaches the database, which may be busy or unreachable.
    for router in (
        order_routes.router,
        auth_routes.router,
        product_routes.router,
        webhook_routes.router,
    ):
        app.include_router(router, responses=errors.responses(503))
    app.add_api_route(
        "/metrics",
        prometheus_metrics,
        methods=["GET"],
        response_class=Response,
        responses={
            200: {"description": "Prometheus text format", "content": {metrics.CONTENT_TYPE: {}}},
            **errors.responses(401),
        },
        tags=["system"],
    )
    for path, endpoint, model in (("/health", health, Health), ("/health/ready", ready, Readiness)):
        app.add_api_route(
            path,
            endpoint,
            methods=["GET"],
            response_model=model,
            responses=errors.responses(503),
            tags=["system"],
        )
    fill_descriptions(app, settings)
    return app


@asynccontextmanager
async def delivering_webhooks(database: Database, settings: Settings) -> AsyncIterator[None]:
    """Run this worker's webhook delivery loop while the app serves (unless the deployment
    leaves delivery to `python manage.py deliver-webhooks`); stop it on shutdown."""
    if not settings.webhook_deliver_in_app:
        yield
        return
    stop = asyncio.Event()
    task = asyncio.create_task(Deliverer(database, settings).run(stop))
    try:
        yield
    finally:
        stop.set()
        # An attempt in flight may finish; one that does not is sent again later.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, DELIVERY_STOP_SECONDS)


def operation_id(route: APIRoute) -> str:
    """A short, stable id for generated clients: the tag, then the function's name without
    it (`create_order` under `order` is `order-create`)."""
    tag = route.tags[0] if route.tags else "api"
    same = {tag, f"{tag}s", tag.removesuffix("s")}
    words = [word for word in route.name.split("_") if word not in same]
    return "-".join([str(tag), *words])


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}{'' if n == 1 else 's'}"


def fill_descriptions(app: FastAPI, settings: Settings) -> None:
    """Put the configured limits into the operations' descriptions (`{login_max_failures}`),
    so /docs states what this deployment does, from the one place each value lives."""
    window = settings.login_window_seconds
    values = {
        "access_token_lifetime": _count(settings.access_token_minutes, "minute"),
        "refresh_token_lifetime": _count(settings.refresh_token_days, "day"),
        "login_max_failures": settings.login_max_failures,
        "signup_max_per_hour": settings.signup_max_per_hour,
        "password_reset_max_per_hour": settings.password_reset_max_per_hour,
        "password_reset_lifetime": _count(settings.password_reset_minutes, "minute"),
        "login_window": (
            _count(window // 60, "minute") if window % 60 == 0 else _count(window, "second")
        ),
        "max_quantity": MAX_QUANTITY,
        "password_min": PASSWORD_MIN,
        "password_max": PASSWORD_MAX,
    }
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:  # generated once, then served as it is
            for operations in generate()["paths"].values():
                for operation in operations.values():
                    if "description" in operation:
                        operation["description"] = operation["description"].format_map(values)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _ping(conn: Connection) -> None:
    conn.execute(text("SELECT 1"))


async def health(database: DatabaseDep) -> Health:
    """Liveness: whether the service can reach its database: 200, or 503 when it cannot."""
    try:
        await database.read(_ping)
    except SQLAlchemyError:
        raise errors.Unavailable("Database is unreachable") from None
    return Health()


async def prometheus_metrics(request: Request, settings: SettingsDep) -> Response:
    """Request counts and latencies by route template, method and status; order changes;
    failed logins; rate-limited requests; webhook deliveries by outcome: the sums of every
    worker process, whichever answers. With METRICS_TOKEN set, it asks for
    `Authorization: Bearer <METRICS_TOKEN>` (401 otherwise)."""
    expected = settings.metrics_token
    if expected is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        wanted = expected.get_secret_value().encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), wanted):
            raise errors.Unauthorized("A valid metrics token is required")
    return Response(await run_in_threadpool(metrics.scrape), media_type=metrics.CONTENT_TYPE)


async def ready(database: DatabaseDep) -> Readiness:
    """Readiness: 200 when the database answers and its schema is at the revision this code
    expects; 503 otherwise (unreachable, or not migrated yet), so a load balancer sends no
    traffic to an instance that would fail it."""
    try:
        current = await database.read(schema_revision)
    except SQLAlchemyError:
        raise errors.Unavailable("Database is unreachable") from None
    expected = code_revision()
    if current != expected:
        raise errors.Unavailable(
            f"Database schema is at revision {current or '<none>'}; this code needs {expected}"
        )
    return Readiness(schema_revision=current)


app = create_app()
