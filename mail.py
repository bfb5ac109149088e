"""Outgoing email: messages rendered from the templates in templates/email, sent over SMTP
(the SMTP_* settings) or, in development with no SMTP_HOST, written to the log instead."""

import asyncio
import logging
import smtplib
from concurrent.futures import ThreadPoolExecutor
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

import tls
from settings import BASE_DIR, Settings

log = logging.getLogger("orders.mail")

TEMPLATES = BASE_DIR / "templates" / "email"
_templates = Environment(
    loader=FileSystemLoader(TEMPLATES),
    autoescape=select_autoescape(["html"]),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
)

# smtplib blocks, so sends run on threads of their own: never on the event loop, never taking
# the request thread pool's threads, and at most this many SMTP conversations at once however
# many messages wait.
MAX_CONCURRENT_SENDS = 4
_senders = ThreadPoolExecutor(max_workers=MAX_CONCURRENT_SENDS, thread_name_prefix="smtp")


def compose(
    settings: Settings, *, to: str, subject: str, template: str, **context: object
) -> EmailMessage:
    """A message with a plain-text body and an HTML alternative, from `template`.txt and
    `template`.html (values are escaped in the HTML)."""
    message = EmailMessage()
    message["From"] = settings.sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = formatdate(usegmt=True)
    # The sender's domain, not make_msgid's default: that looks up this host's name in DNS.
    message["Message-ID"] = make_msgid(domain=parseaddr(settings.sender)[1].rpartition("@")[2])
    message.set_content(_templates.get_template(f"{template}.txt").render(context))
    html = _templates.get_template(f"{template}.html").render(context)
    message.add_alternative(html, subtype="html")
    return message


async def send(settings: Settings, message: EmailMessage, *, about: str) -> bool:
    """Send a message; whether it was accepted. Never raises: a failure is logged with
    `about` (what the message was for), never with the message itself."""
    if settings.smtp_host is None:
        # Development only (production refuses to start without SMTP_HOST).
        body = message.get_body(("plain",))
        log.info(
            "No SMTP_HOST: this email (%s) is written here instead of sent.\n"
            "To: %s\nSubject: %s\n\n%s",
            about,
            message["To"],
            message["Subject"],
            body.get_content() if body is not None else "",
        )
        return True
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(_senders, _deliver, settings, message)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        log.error("Email (%s) could not be sent: %s: %s", about, type(exc).__name__, exc)
        return False
    log.info("Email (%s) sent through %s", about, settings.smtp_host)
    return True


def _deliver(settings: Settings, message: EmailMessage) -> None:
    assert settings.smtp_host is not None
    with smtplib.SMTP(
        settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
    ) as smtp:
        if settings.smtp_starttls:
            smtp.starttls(context=tls.client_context())
        if settings.smtp_user:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_user, password)
        smtp.send_message(message)
