"""ASGI middleware: request ids and access logs, and limits applied before FastAPI."""

import logging
import os
import re
import time
from collections.abc import Sequence

from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import BaseRoute, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import logs
import metrics

access_log = logging.getLogger("orders.access")
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")

MAX_BODY_BYTES = 1024 * 1024
NO_ROUTE = "<no route>"
MAX_HEADER_BYTES = 64 * 1024

# On every response: no content sniffing, and no framing (clickjacking on /docs and /redoc).
SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)


class RequestLimits:
    """Refuse request headers over 64 KiB in all with 431, and bodies over a limit with 413,
    without reading them whole.

    A declared Content-Length over the limit is refused before any byte is read; a chunked
    body is counted as it streams and refused as soon as it passes the limit. (uvicorn has no
    header limit of its own with httptools; a reverse proxy in front refuses earlier still.)
    """

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if sum(len(name) + len(value) for name, value in scope["headers"]) > MAX_HEADER_BYTES:
            await _refuse(send, 431, b"Request headers are larger than %d bytes" % MAX_HEADER_BYTES)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse(send)
            return
        if scope.get("http_version", "1.1").startswith("1") and b"transfer-encoding" not in headers:
            # HTTP/1 frames such a body by its Content-Length, checked above, or it has none:
            # the server delivers no more than that, so there is nothing left to count.
            await self.app(scope, receive, send)
            return

        received = 0
        started = refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes and not started:
                    # Answer now and tell the app the client went away; whatever it then
                    # tries to send is dropped below.
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        await _refuse(send, 413, b"Request body is larger than %d bytes" % self.max_bytes)


async def _refuse(send: Send, status: int, detail: bytes) -> None:
    """Answer before FastAPI sees the request, and close the connection."""
    body = b'{"detail":"%s"}' % detail
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RequestContext:
    """Give every request an id (the client's X-Request-ID when it is sane), echo it in the
    response, and write one access-log line when the response is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.templates = RouteTemplates()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        # 32 random hex digits, like uuid4().hex without building a UUID object (far cheaper).
        rid = sent if _VALID_REQUEST_ID.fullmatch(sent) else os.urandom(16).hex()
        token = logs.request_id.set(rid)
        scope.setdefault("state", {})["request_id"] = rid
        status = 500
        start = time.perf_counter()
        answered: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", rid.encode()),
                    *SECURITY_HEADERS,
                ]
            elif not message.get("more_body", False):
                answered = time.perf_counter()
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # The route's template, never the raw path: ids stay out of the log's keys.
            path = getattr(scope.get("route"), "path_format", None) or self.templates.of(scope)
            # Until the answer's last byte: background tasks (an email) run after it.
            duration = (answered or time.perf_counter()) - start
            duration_ms = round(duration * 1000, 2)
            metrics.observe_request(scope["method"], path, status, duration)
            access_log.info(
                "%s %s %s %.2f ms",
                scope["method"],
                path,
                status,
                duration_ms,
                extra={
                    "method": scope["method"],
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                    "user_id": scope["state"].get("user_id"),
                },
            )
            logs.request_id.reset(token)


class RouteTemplates:
    """The path template of a request whose route left no `scope["route"]`.

    FastAPI's router (unlike Starlette's) records only its APIRoutes in `scope["route"]`:
    a plain Starlette Route (/openapi.json) or a Mount (/static-offline-docs, Swagger UI's
    files) leaves just `scope["endpoint"]`, the route's function or the mounted app. The
    templates of those routes are read from the router once, by endpoint, so a request
    costs one dict look-up; they are read again when an endpoint is new (a route added later).
    """

    def __init__(self) -> None:
        # id(endpoint) -> (endpoint, template): the endpoint is held so its id stays its own.
        self._by_endpoint: dict[int, tuple[object, str]] = {}

    def of(self, scope: Scope) -> str:
        endpoint = scope.get("endpoint")
        if endpoint is None:  # no route matched (or none was reached: a 413 before routing)
            return NO_ROUTE
        known = self._by_endpoint.get(id(endpoint))
        if known is None:
            self._by_endpoint = _templates_by_endpoint(getattr(scope.get("router"), "routes", []))
            known = self._by_endpoint.setdefault(id(endpoint), (endpoint, NO_ROUTE))
        return known[1]


def _templates_by_endpoint(routes: Sequence[BaseRoute]) -> dict[int, tuple[object, str]]:
    """Routes and Mounts (in included routers too, with their prefixes) by what they put in
    `scope["endpoint"]`; a Mount's template is its prefix plus "/{path}", never the file."""
    found: dict[int, tuple[object, str]] = {}
    ambiguous: set[int] = set()
    for context in iter_route_contexts(routes):
        if isinstance(context.original_route, APIRoute):
            continue  # it sets scope["route"] itself
        mount = isinstance(context.original_route, Mount)
        endpoint = getattr(context, "app" if mount else "endpoint", None)
        template = context.path_format
        if endpoint is None or template is None:
            continue
        if id(endpoint) in found and found[id(endpoint)][1] != template:
            ambiguous.add(id(endpoint))
        found[id(endpoint)] = (endpoint, template)
    # One endpoint served at two templates: the endpoint cannot tell which one matched.
    for key in ambiguous:
        found[key] = (found[key][0], NO_ROUTE)
    return found
