"""A real HTTP server that receives webhooks for the tests, in a thread of its own: it keeps
what it is sent and can fail, slow down or hold requests, changeable between requests.

    with receiver(fail_first=2) as hook:
        ...  # subscribe hook.url, place an order
        [delivery] = hook.wait_for(1)
        assert len(hook.attempts) == 3
"""

import json
import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Received:
    """One request as it arrived, and the status it was answered with."""

    method: str
    path: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    at: float  # time.monotonic() on arrival: differences are the sender's back-off
    status: int

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """What the server was sent, and how it answers the next requests. Change `fail_next`,
    `status` and `delay` at any time: each request reads them once, on arrival. While `hold`
    is cleared, every request waits (arrived, in `attempts`) until it is set."""

    def __init__(self, url: str, *, fail_next: int, status: int, delay: float) -> None:
        self.url = url
        self.fail_next = fail_next  # answer `status` to this many more requests
        self.status = status
        self.delay = delay  # seconds to wait before answering
        self.hold = threading.Event()  # cleared: requests wait until it is set again
        self.hold.set()
        self._attempts: list[Received] = []
        self._received: list[Received] = []
        self._changed = threading.Condition()

    @property
    def attempts(self) -> list[Received]:
        """Every request so far, answered or not yet, failed or not, in order of arrival."""
        with self._changed:
            return list(self._attempts)

    @property
    def received(self) -> list[Received]:
        """The requests answered (or being answered) with a 2xx, in the order answered."""
        with self._changed:
            return list(self._received)

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """The received requests once there are at least `count` of them."""
        return self._wait(self._received, count, timeout, "received")

    def wait_for_attempts(self, count: int, timeout: float = 30) -> list[Received]:
        """Every request once at least `count` have arrived (held ones included)."""
        return self._wait(self._attempts, count, timeout, "attempts")

    def _wait(self, seen: list[Received], count: int, timeout: float, what: str) -> list[Received]:
        with self._changed:
            if not self._changed.wait_for(lambda: len(seen) >= count, timeout):
                raise TimeoutError(
                    f"waited {timeout}s for {count} {what}; have {len(self._received)} "
                    f"received of {len(self._attempts)} attempts"
                )
            return list(seen)

    def _arrived(self, request: Received) -> Received:
        """Record `request` and decide its answer, in one step, so that concurrent requests
        take `fail_next` down one each."""
        with self._changed:
            status = 204
            if self.fail_next > 0:
                self.fail_next -= 1
                status = self.status
            request = replace(request, status=status)
            self._attempts.append(request)
            self._changed.notify_all()
            return request

    def _answered(self, request: Received) -> None:
        with self._changed:
            self._received.append(request)
            self._changed.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a held request never keeps the test process alive
    receiver: Receiver


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as a real receiver; every answer is framed
    server: _Server

    def do_POST(self) -> None:
        receiver = self.server.receiver
        arrived = time.monotonic()
        body = self._body()
        if body is None:  # the sender went away mid-body (killed): no request, as on a server
            self.close_connection = True
            return
        request = receiver._arrived(
            Received(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                at=arrived,
                status=0,
            )
        )
        delay = receiver.delay
        receiver.hold.wait()
        if delay:
            time.sleep(delay)
        # Recorded before the answer goes out, so a sender that has its 2xx finds its request
        # in `received`; one that timed out meanwhile may be there too, as with a real server.
        if 200 <= request.status < 300:
            receiver._answered(request)
        try:
            self._answer(request.status)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the sender gave up waiting; nobody to tell

    def _answer(self, status: int) -> None:
        self.send_response(status)
        if status == 204:
            self.end_headers()  # a 204 has no body, hence no Content-Length
        else:
            body = f"{status} from the test receiver\n".encode()
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        self.wfile.flush()

    def _body(self) -> bytes | None:
        """The whole body, or None when the connection ended before it did."""
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length)
            return body if len(body) == length else None
        chunks = []
        while True:
            size_line = self.rfile.readline()
            if not size_line:
                return None
            if not (size := int(size_line.split(b";")[0], 16)):
                break
            chunk = self.rfile.read(size)
            if len(chunk) < size:
                return None
            chunks.append(chunk)
            self.rfile.readline()  # the CRLF after each chunk
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(chunks)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `attempts`, not stderr."""


@contextmanager
def receiver(
    *,
    fail_first: int = 0,
    status: int = 500,
    delay: float = 0.0,
    tls: ssl.SSLContext | None = None,
) -> Iterator[Receiver]:
    """A receiver listening on a free port of 127.0.0.1 at /hook: it answers 204, or
    `status` to the first `fail_first` requests, each after `delay` seconds. With `tls` (a
    server context), it speaks HTTPS; a client that refuses its certificate never reaches it,
    and leaves no attempt."""
    server = _Server(("127.0.0.1", 0), _Handler)
    port = server.server_address[1]
    scheme = "http"
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
        scheme = "https"
    hook = Receiver(
        f"{scheme}://127.0.0.1:{port}/hook", fail_next=fail_first, status=status, delay=delay
    )
    server.receiver = hook
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield hook
    finally:
        hook.hold.set()  # let held requests finish rather than hang on a closed server
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
