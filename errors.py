"""Refusals, and how they become HTTP responses: the one way the app says no.

Services and dependencies raise a `Refusal` without knowing about HTTP; `install` maps every
one of them, FastAPI's validation errors and a database that is busy or unreachable in one
place. A 422 keeps FastAPI's validation shape, so clients parse one format for every
unprocessable body.
"""

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

import metrics

log = logging.getLogger("orders")


class Refusal(Exception):
    """A request the rules refuse; the subclass says which kind, `detail` says why."""

    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail

    @property
    def headers(self) -> Mapping[str, str]:
        return {}


class BadRequest(Refusal):
    """Well-formed, but it names something that cannot be used (a spent or expired token)."""


class Unauthorized(Refusal):
    """No valid credentials: a missing, invalid or expired token, or a wrong password."""

    status_code = status.HTTP_401_UNAUTHORIZED

    @property
    def headers(self) -> Mapping[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class Forbidden(Refusal):
    status_code = status.HTTP_403_FORBIDDEN


class NotFound(Refusal):
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(Refusal):
    status_code = status.HTTP_409_CONFLICT


class Unprocessable(Refusal):
    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT

    def __init__(self, detail: str, *, loc: Sequence[str | int], type: str) -> None:
        super().__init__(detail)
        self.loc = list(loc)
        self.type = type


class TooManyRequests(Refusal):
    status_code = status.HTTP_429_TOO_MANY_REQUESTS

    def __init__(self, detail: str, *, retry_after: int) -> None:
        super().__init__(detail)
        self.retry_after = retry_after

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": str(self.retry_after)}


class Unavailable(Refusal):
    """The service cannot answer now (its database is busy or unreachable); retry later."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE

    @property
    def headers(self) -> Mapping[str, str]:
        return {"Retry-After": "1"}


async def _refusal(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refusal)
    if isinstance(exc, TooManyRequests):
        route = getattr(request.scope.get("route"), "path_format", "<no route>")
        metrics.throttled.labels(route).inc()
    if isinstance(exc, Unprocessable):
        body: object = [{"type": exc.type, "loc": exc.loc, "msg": exc.detail, "input": None}]
    else:
        body = exc.detail
    return JSONResponse({"detail": body}, status_code=exc.status_code, headers=exc.headers)


async def _database_unavailable(request: Request, exc: Exception) -> JSONResponse:
    # A lock wait that timed out, a pool with no connection free in time or a lost connection
    # is a temporary state of the server, not a fault in the request: 503 so clients retry,
    # never a bare 500.
    log.warning("database error: %s", exc)
    return await _refusal(request, Unavailable("The database is busy or unreachable; try again"))


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: a 422 may echo input that is not valid Unicode (a lone
    surrogate), which FastAPI's default rendering cannot encode and turns into a 500."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


# A 422 lists at most this many problems, and echoes an input only when it is a short scalar:
# a body of 90,000 unknown keys must not become a megabytes-long answer.
MAX_LISTED_ERRORS = 20
MAX_ECHOED_CHARS = 100
NOT_JSON = "Send the body as a JSON object, with the header Content-Type: application/json"
UNREADABLE_BODY = "The body could not be parsed: send UTF-8 JSON (or the form the operation takes)"


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = exc.errors()
    listed = [_bounded(error, request) for error in errors[:MAX_LISTED_ERRORS]]
    if len(errors) > MAX_LISTED_ERRORS:
        more = len(errors) - MAX_LISTED_ERRORS
        listed.append(
            {"type": "too_many_errors", "loc": [], "msg": f"and {more} more", "input": None}
        )
    return AsciiJSONResponse(
        {"detail": jsonable_encoder(listed)},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


def _bounded(error: dict[str, Any], request: Request) -> dict[str, Any]:
    """One problem, its input echoed only when short, and its message in plain words when
    the body is not JSON at all."""
    value = error.get("input")
    if not (value is None or isinstance(value, bool | int | float)) and not (
        isinstance(value, str) and len(value) <= MAX_ECHOED_CHARS
    ):
        error = {**error, "input": None}
    if (
        error.get("type") == "model_attributes_type"
        and tuple(error.get("loc", ())) == ("body",)
        and "json" not in request.headers.get("content-type", "")
    ):
        error = {**error, "msg": NOT_JSON}
    return error


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == status.HTTP_400_BAD_REQUEST:
        # FastAPI's only 400: a body it could not parse (not UTF-8, nested too deep for the
        # JSON parser, a broken form). Every operation with a body documents 422 for that.
        return await _refusal(
            request, Unprocessable(UNREADABLE_BODY, loc=["body"], type="body_unreadable")
        )
    if exc.status_code == status.HTTP_405_METHOD_NOT_ALLOWED:
        # Starlette's Allow lists only the first route that matched the path; a path served
        # by several routes (GET and POST /order) must list every method it has.
        exc.headers = {"Allow": ", ".join(allowed_methods(request))}
    return await http_exception_handler(request, exc)


HTTP_METHODS = ("DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT")


def allowed_methods(request: Request) -> list[str]:
    return [
        method
        for method in HTTP_METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


async def _internal_error(_request: Request, exc: Exception) -> JSONResponse:
    # A bug, never an answer to bad input: the traceback goes to the log with the request's
    # id, and the client gets JSON with that id to quote.
    log.error("unhandled error", exc_info=exc)
    return JSONResponse({"detail": "Internal server error"}, status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(Exception, _internal_error)
    app.add_exception_handler(Refusal, _refusal)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_unavailable)
    app.add_exception_handler(InterfaceError, _database_unavailable)
    app.add_exception_handler(PoolTimeout, _database_unavailable)


_DESCRIPTIONS = {
    400: "Invalid, expired or already used token",
    401: "Missing, invalid or expired credentials",
    403: "Not allowed for this user",
    404: "Not found",
    409: "Conflicts with the current state",
    413: "Request body larger than 1 MiB",
    429: "Too many attempts; see Retry-After",
    431: "Request headers larger than 64 KiB in all",
    503: "The database is busy or unreachable (for readiness, also: its schema is not at this "
    "code's revision); retry after Retry-After",
}


_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Seconds until the window ends",
            "schema": {"type": "integer"},
        }
    },
    503: {"Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}}},
}


def responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI entries for a route's error codes, so /docs shows every refusal it can give."""
    from schemas import Error

    return {
        code: {"model": Error, "description": _DESCRIPTIONS[code]}
        | ({"headers": _HEADERS[code]} if code in _HEADERS else {})
        for code in codes
    }
