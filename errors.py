"""Refusals raised by the business rules, and how they become HTTP responses.

Services raise these without knowing about HTTP; `install` maps them in one place. A 422
keeps FastAPI's validation shape, so clients parse one format for every unprocessable body.
"""

import json
from collections.abc import Sequence

from fastapi import FastAPI, Request, status
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND


class Conflict(DomainError):
    status_code = status.HTTP_409_CONFLICT


class Unprocessable(DomainError):
    status_code = status.HTTP_422_UNPROCESSABLE_CONTENT

    def __init__(self, detail: str, *, loc: Sequence[str | int], type: str) -> None:
        super().__init__(detail)
        self.loc = list(loc)
        self.type = type


async def _domain_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DomainError)
    if isinstance(exc, Unprocessable):
        body: object = [{"type": exc.type, "loc": exc.loc, "msg": exc.detail, "input": None}]
    else:
        body = exc.detail
    return JSONResponse({"detail": body}, status_code=exc.status_code)


class AsciiJSONResponse(JSONResponse):
    """JSON with non-ASCII escaped: a 422 may echo input that is not valid Unicode (a lone
    surrogate), which FastAPI's default rendering cannot encode and turns into a 500."""

    def render(self, content: object) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return AsciiJSONResponse(
        {"detail": jsonable_encoder(exc.errors())},
        status_code=status.HTTP_422_UNPROCESSABLE_CONTENT,
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
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


def install(app: FastAPI) -> None:
    app.add_exception_handler(DomainError, _domain_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)


_DESCRIPTIONS = {
    401: "Missing, invalid or expired credentials",
    403: "Not allowed for this user",
    404: "Not found",
    409: "Conflicts with the current state",
    429: "Too many failed attempts; see Retry-After",
    503: "The database is unreachable",
}


_HEADERS = {
    401: {"WWW-Authenticate": {"description": "`Bearer`", "schema": {"type": "string"}}},
    429: {
        "Retry-After": {
            "description": "Seconds until the window ends",
            "schema": {"type": "integer"},
        }
    },
}


def responses(*codes: int) -> dict[int | str, dict]:
    """OpenAPI entries for a route's error codes, so /docs shows every refusal it can give."""
    from schemas import Error

    return {
        code: {"model": Error, "description": _DESCRIPTIONS[code]}
        | ({"headers": _HEADERS[code]} if code in _HEADERS else {})
        for code in codes
    }
