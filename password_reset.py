"""Password reset by email: the rules behind /auth/password-reset, kept apart from HTTP.

A request is counted, per email and per client address, and answered the same way whether
or not the email has an account. Everything that depends on the account (the token, the
email) happens after the answer, in `send_reset_email`, so neither the answer nor its timing
tells whether an address is registered.

A token is 256 random bits; only its SHA-256 is stored, one per user: a newer request
replaces it, using it deletes it, any password change voids it, and it expires.
"""

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, Connection, delete, select
from sqlalchemy.exc import SQLAlchemyError

import auth_service
import mail
import security
import throttle
from database import Database, upsert
from errors import BadRequest, TooManyRequests
from models import PasswordResetToken, User, utcnow
from settings import Settings

log = logging.getLogger("orders.auth")

REQUESTED = "If the email belongs to an account, a password reset message is on its way to it."
REFUSED = "Invalid, expired or already used password reset token"
HOUR = 3600


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def limits(settings: Settings) -> tuple[throttle.Limit, throttle.Limit]:
    """Reset requests per email and per client address."""
    most = settings.password_reset_max_per_hour
    return throttle.Limit("reset-email", most, HOUR), throttle.Limit("reset-address", most, HOUR)


# --- asking for a token -------------------------------------------------------------------


def _count_request(conn: Connection, settings: Settings, email: str, address: str) -> None:
    by_email, by_address = limits(settings)
    waits = [
        wait
        for wait in (
            throttle.reserve(conn, by_email, email),
            throttle.reserve(conn, by_address, address),
        )
        if wait is not None
    ]
    if waits:
        raise TooManyRequests(
            "Too many password reset requests; try again later", retry_after=max(waits)
        )


async def request_reset(database: Database, settings: Settings, email: str, address: str) -> None:
    """Count a request against both limits (TooManyRequests past either). The same work for
    every email: whether it has an account is only looked up by `send_reset_email`."""
    await database.write(_count_request, settings, email, address)


@dataclass(frozen=True)
class IssuedToken:
    user_id: int
    name: str
    email: str
    token: str


def _active_account(conn: Connection, email: str) -> tuple[int, str] | None:
    row = conn.execute(
        select(User.id, User.name).where(User.email == email, User.is_active)
    ).one_or_none()
    return None if row is None else (row.id, row.name)


def _issue_token(
    conn: Connection, settings: Settings, user_id: int, name: str, email: str
) -> IssuedToken:
    """A new token for the account, replacing any older one."""
    token = secrets.token_urlsafe(32)
    now = utcnow()
    insert = upsert(conn.dialect.name, PasswordResetToken).values(
        user_id=user_id,
        token_hash=token_hash(token),
        expires_at=now + timedelta(minutes=settings.password_reset_minutes),
        created_at=now,
    )
    replaced = {name: insert.excluded[name] for name in ("token_hash", "expires_at", "created_at")}
    conn.execute(insert.on_conflict_do_update(index_elements=["user_id"], set_=replaced))
    return IssuedToken(user_id, name, email, token)


async def send_reset_email(database: Database, settings: Settings, email: str) -> None:
    """Issue a token and email it, when the email has an active account. Runs after the
    answer was sent; never raises (a failure is logged, without the token)."""
    try:
        # An email with no active account costs a read, not a write transaction.
        account = await database.read(_active_account, email)
        if account is None:
            return
        issued = await database.write(_issue_token, settings, *account, email)
    except SQLAlchemyError as exc:
        log.error("Password reset token could not be stored: %s", type(exc).__name__)
        return
    about = f"password reset for user {issued.user_id}"
    try:
        message = mail.compose(
            settings,
            to=issued.email,
            subject="Reset your password",
            template="password_reset",
            name=issued.name,
            link=settings.reset_link_template.replace("{token}", issued.token),
            token=issued.token,
            minutes=settings.password_reset_minutes,
        )
    except Exception as exc:  # an edited template that does not render, say
        log.error("Email (%s) could not be composed: %s: %s", about, type(exc).__name__, exc)
        return
    await mail.send(settings, message, about=about)


# --- using a token ------------------------------------------------------------------------


@dataclass(frozen=True)
class Owner:
    user_id: int
    email: str


def _live_token(hashed: str) -> ColumnElement[bool]:
    return (PasswordResetToken.token_hash == hashed) & (PasswordResetToken.expires_at > utcnow())


def _token_owner(conn: Connection, hashed: str) -> Owner | None:
    row = conn.execute(
        select(User.id, User.email)
        .join(PasswordResetToken, PasswordResetToken.user_id == User.id)
        .where(_live_token(hashed), User.is_active)
    ).one_or_none()
    return None if row is None else Owner(*row)


async def confirm_reset(
    database: Database, settings: Settings, token: str, new_password: str
) -> None:
    """Set the password of the token's owner: BadRequest for a token that is not live
    (unknown, expired, used or replaced), Unprocessable for a password that is the email."""
    hashed = token_hash(token)
    owner = await database.read(_token_owner, hashed)
    if owner is None:
        raise BadRequest(REFUSED)
    auth_service.refuse_personal(new_password, owner.email)
    new_hash = await security.hash_password(new_password)
    await database.write(_reset_password, settings, hashed, owner, new_hash)


def _reset_password(
    conn: Connection, settings: Settings, hashed: str, owner: Owner, password_hash: str
) -> None:
    # Spending the token decides: of two requests with one token, exactly one deletes it.
    spent = conn.scalar(
        delete(PasswordResetToken)
        .where(_live_token(hashed), PasswordResetToken.user_id == owner.user_id)
        .returning(PasswordResetToken.user_id)
    )
    if spent is None:  # used, replaced or expired while the password was hashed
        raise BadRequest(REFUSED)
    auth_service.set_password(conn, settings, owner.user_id, owner.email, password_hash)
