"""The FastAPI application: routers, middleware, start-up migration and the health check."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, status
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from sqlalchemy import text
from sqlalchemy.exc import InterfaceError, OperationalError, SQLAlchemyError

import auth_routes
import errors
import logs
import order_routes
import product_routes
import security
from database import Database, upgrade_to_head
from dependencies import SessionDep
from middleware import BodySizeLimit, RequestContext
from schemas import Health
from settings import Settings

log = logging.getLogger("orders")

DESCRIPTION = """
Orders with items, priced from an admin-managed catalogue.

**Try it here:** sign up with `POST /auth/signup` (or run `python manage.py seed-demo` for a
demo customer and catalogue), then click **Authorize** and enter your email as *username*
and your password. Every call below then carries your token.

**Rules in short**
- Orders move from `pending` to `cancelled` or `finished`, never back; only pending orders
  change. You see and change your own orders; admins see and change everyone's.
- Money is a decimal string with two places (`"12.50"`), priced by the catalogue.
- Errors are JSON with a `detail`: a sentence for 401/403/404/409/413/429, FastAPI's list of
  problems for 422. Every response carries an `X-Request-ID` to quote in a bug report.
"""

TAGS = [
    {
        "name": "auth",
        "description": "Accounts and tokens: sign up, log in (JSON or the OAuth2 form), rotate "
        "and revoke refresh tokens, change the password; admins manage users.",
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
    {"name": "system", "description": "Health of the service and its database."},
]


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logs.configure(settings.log_level, settings.log_format)
    security.limit_hash_concurrency(settings.password_hash_concurrency)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if settings.migrate_on_startup:
            upgrade_to_head(settings.database_url)
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
    app.add_middleware(BodySizeLimit)
    app.add_middleware(RequestContext)  # outermost: every answer gets an id and a log line
    errors.install(app)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)

    # Routes are matched in the order they were added: the busiest router goes first.
    app.include_router(order_routes.router)
    app.include_router(auth_routes.router)
    app.include_router(product_routes.router)
    app.add_api_route(
        "/health",
        health,
        methods=["GET"],
        response_model=Health,
        responses=errors.responses(503),
        tags=["system"],
    )
    return app


def health(db: SessionDep) -> Health | JSONResponse:
    """Whether the service can reach its database: 200, or 503 when it cannot."""
    try:
        db.execute(text("SELECT 1"))
    except SQLAlchemyError:
        return JSONResponse(
            {"detail": "Database is unreachable", "status": "error", "database": "unreachable"},
            status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        )
    return Health()


async def _database_unavailable(_request: Request, exc: Exception) -> JSONResponse:
    # A lock wait that timed out or a lost connection is a temporary state of the server,
    # not a fault in the request: answer 503 so clients retry, never a bare 500.
    log.warning("database error: %s", exc)
    return JSONResponse(
        {"detail": "The database is busy or unreachable; try again"},
        status_code=status.HTTP_503_SERVICE_UNAVAILABLE,
        headers={"Retry-After": "1"},
    )


app = create_app()
