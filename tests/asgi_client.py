"""Starlette's TestClient, with each HTTP exchange made in one hop to the app's event loop.

Starlette's own transport streams a response: it crosses from the test's thread to the event
loop's thread and back about eight times per request (an event, a stream, a cancel scope,
the app task, each body chunk). On this machine kind each crossing costs a few hundred
microseconds, several times what the app takes to answer, and the suite sends thousands of
requests. This transport runs the whole exchange (request, app, background tasks, body) in
one call to the loop, as an HTTP server would before the client reads the answer; what the
app sees (the scope, the body, the disconnect after the answer) is what Starlette's sends.
"""

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote

import anyio
import httpx2
from starlette.testclient import TestClient as StarletteTestClient
from starlette.types import ASGIApp, Message

# The client address the app sees, Starlette's default.
PEER = ("testclient", 50000)
T = TypeVar("T")


class _Exchange(httpx2.BaseTransport):
    def __init__(
        self,
        client: "TestClient",
        app: ASGIApp,
        *,
        raise_server_exceptions: bool,
        peer: tuple[str, int],
    ) -> None:
        self._client = client
        self._app = app
        self._raise = raise_server_exceptions
        self._peer = peer

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        body = request.read()
        status, headers, content = self._client.call(self._run, request, body)
        return httpx2.Response(status, headers=headers, content=content, request=request)

    async def _run(
        self, request: httpx2.Request, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        url = request.url
        port = url.port or {"http": 80, "https": 443}[url.scheme]
        scope = {
            "type": "http",
            "http_version": "1.1",
            "method": request.method,
            "path": unquote(url.path),
            "raw_path": url.raw_path.split(b"?", 1)[0],
            "root_path": "",
            "scheme": url.scheme,
            "query_string": url.query,
            "headers": [(k.lower().encode(), v.encode()) for k, v in request.headers.multi_items()],
            "client": self._peer,
            "server": [url.host, port],
            "extensions": {"http.response.debug": {}},
            "state": self._client.app_state.copy(),
        }
        sent_body = False
        started: dict[str, Any] = {}
        chunks: list[bytes] = []
        answered = anyio.Event()

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await answered.wait()  # the client goes away only once it has the whole answer
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                chunks.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    answered.set()

        try:
            await self._app(scope, receive, send)
        except BaseException:
            if self._raise:
                raise
            if not started:  # as Starlette's client answers when the app sent nothing
                return 500, [], b""
        if not started:
            raise AssertionError("TestClient did not receive any response.")
        headers = [(k.decode(), v.decode()) for k, v in started.get("headers", [])]
        content = b"" if request.method == "HEAD" else b"".join(chunks)
        return started["status"], headers, content


class TestClient(StarletteTestClient):
    """The TestClient every test uses: Starlette's, lifespan and all, with `_Exchange`."""

    __test__ = False

    def __init__(
        self,
        app: ASGIApp,
        *,
        raise_server_exceptions: bool = True,
        client: tuple[str, int] = PEER,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            app, raise_server_exceptions=raise_server_exceptions, client=client, **kwargs
        )
        self._transport = _Exchange(
            self, self.app, raise_server_exceptions=raise_server_exceptions, peer=client
        )

    def call(self, function: Callable[..., Awaitable[T]], *args: Any) -> T:
        """`await function(*args)` on the app's event loop, as a request's code runs there."""
        with self._portal_factory() as portal:
            return portal.call(function, *args)
