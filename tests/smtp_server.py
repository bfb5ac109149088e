"""A real SMTP server for the tests (aiosmtpd), in a thread of its own: it keeps the messages
it accepts, can refuse them or hold them, and can require STARTTLS and a login."""

import asyncio
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer  # noqa: N811 - aiosmtpd names its class so
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Inbox:
    """aiosmtpd's handler: what the server received, and how it answers."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Envelope] = []
        self.refuse_with: str | None = None  # an SMTP reply such as "554 No thanks"
        self.hold = threading.Event()  # cleared: DATA waits until it is set again
        self.hold.set()
        self.arrived = threading.Condition()

    async def handle_DATA(self, _server: SMTPServer, _session: Session, envelope: Envelope) -> str:  # noqa: N802 - aiosmtpd's hook
        await asyncio.get_running_loop().run_in_executor(None, self.hold.wait)
        if self.refuse_with is not None:
            return self.refuse_with
        message = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.arrived:
            self.envelopes.append(envelope)
            self.messages.append(message)
            self.arrived.notify_all()
        return "250 Message accepted for delivery"

    def wait_for(self, count: int = 1, timeout: float = 30) -> list[EmailMessage]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
        assert len(self.messages) >= count, f"{len(self.messages)} of {count} messages arrived"
        return self.messages


@contextmanager
def smtp_server(
    *, tls: ssl.SSLContext | None = None, login: tuple[str, str] | None = None
) -> Iterator[tuple[Inbox, int]]:
    """A running server on 127.0.0.1 and its port. With `tls`, it offers STARTTLS and
    requires it; with `login`, it requires AUTH with that user and password."""
    inbox = Inbox()
    options: dict[str, object] = {}
    if tls is not None:
        options.update(tls_context=tls, require_starttls=True)
    if login is not None:
        options.update(authenticator=_Authenticator(*login), auth_required=True)
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port(), **options)
    controller.start()
    try:
        yield inbox, controller.port
    finally:
        inbox.hold.set()
        controller.stop()


class _Authenticator:
    def __init__(self, user: str, password: str) -> None:
        self.expected = (user.encode(), password.encode())

    def __call__(self, _server, _session, _envelope, _mechanism, data) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == self.expected
        return AuthResult(success=ok, handled=False)


def text_of(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    return body.get_content()


def html_of(message: EmailMessage) -> str:
    body = message.get_body(("html",))
    assert body is not None
    return body.get_content()


TOKEN_IN_LINK = re.compile(r"[?&]token=([A-Za-z0-9_-]+)")


def reset_token(message: EmailMessage) -> str:
    """The token, read from the link in the message, as a user following it would."""
    match = TOKEN_IN_LINK.search(text_of(message))
    assert match is not None, text_of(message)
    return match.group(1)
