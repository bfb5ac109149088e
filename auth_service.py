"""Accounts, logins and tokens: the rules behind /auth, kept apart from HTTP.

The flows (`sign_up`, `log_in`, `refresh`, ...) take the app's Database and run their reads
and commands through it. Password hashing is slow by design (argon2), so it always runs
between two units of work, never inside one: a write lock is never held while a hash runs.
"""

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

import metrics
import passwords
import security
import throttle
from database import Database
from errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized, Unprocessable
from models import PasswordResetToken, RefreshToken, User, utcnow
from precompiled import Precompiled
from schemas import TokenPair, UserCreate, UserPublic, UserUpdate
from security import InvalidToken, TokenClaims, TokenType
from settings import Settings

_USER_COLUMNS = (User.id, User.name, User.email, User.is_active, User.is_admin, User.created_at)

# Loaded on every authenticated request, so precompiled.
_ACTIVE_USER = Precompiled(
    select(*_USER_COLUMNS).where(User.id == bindparam("user_id"), User.is_active)
)


def _user(row: object) -> UserPublic:
    return UserPublic.model_validate(row, from_attributes=True)


def active_user(conn: Connection, user_id: int) -> UserPublic | None:
    row = _ACTIVE_USER.one_or_none(conn, {"user_id": user_id})
    if row is None:
        return None
    return UserPublic.model_construct(**dict(zip(_ACTIVE_USER.keys, row, strict=True)))


async def user_of_token(database: Database, settings: Settings, token: str) -> UserPublic:
    """The active user an access token names; Unauthorized for anything else. Checked on
    every request, so deactivating a user locks them out at once."""
    claims = _claims(settings, token, TokenType.access, "Invalid or expired token")
    user = await database.read(active_user, claims.user_id)
    if user is None:
        raise Unauthorized("Invalid or expired token")
    return user


def _claims(settings: Settings, token: str, expected: TokenType, refusal: str) -> TokenClaims:
    try:
        return security.decode_token(token, expected=expected, secret_key=settings.secret_key)
    except InvalidToken:
        raise Unauthorized(refusal) from None


# --- signup and login -----------------------------------------------------------------------


def signup_limit(settings: Settings) -> throttle.Limit:
    """Signups per client address."""
    return throttle.Limit("signup", settings.signup_max_per_hour, 3600)


def _count_signup(conn: Connection, settings: Settings, address: str) -> None:
    retry_after = throttle.reserve(conn, signup_limit(settings), address)
    if retry_after is not None:
        raise TooManyRequests(
            "Too many signups from this address; try again later", retry_after=retry_after
        )


async def sign_up(
    database: Database, settings: Settings, data: UserCreate, address: str
) -> UserPublic:
    """A new account. Each attempt counts against the client address's limit, taken before
    the hash so that a burst of signups costs no more than the limit allows."""
    await database.write(_count_signup, settings, address)
    password_hash = await security.hash_password(data.password)
    return await database.write(_insert_user, data.name, data.email, password_hash)


def _insert_user(
    conn: Connection, name: str, email: str, password_hash: str, *, is_admin: bool = False
) -> UserPublic:
    try:
        row = conn.execute(
            insert(User)
            .values(name=name, email=email, password_hash=password_hash, is_admin=is_admin)
            .returning(*_USER_COLUMNS)
        ).one()
    except IntegrityError:
        raise Conflict("Email is already registered") from None
    return _user(row)


def login_limit(settings: Settings) -> throttle.Limit:
    """Failed logins (and wrong current passwords) per email."""
    return throttle.Limit("login", settings.login_max_failures, settings.login_window_seconds)


def _throttled(retry_after: int) -> TooManyRequests:
    return TooManyRequests(
        "Too many failed login attempts; try again later", retry_after=retry_after
    )


@dataclass(frozen=True)
class Account:
    user_id: int
    password_hash: str
    is_active: bool


_ACCOUNT = Precompiled(
    select(User.id, User.password_hash, User.is_active).where(User.email == bindparam("email"))
)


def _begin_login(conn: Connection, settings: Settings, email: str) -> Account | None:
    """Count the attempt against the email's limit (TooManyRequests past it), then read the
    account it names."""
    retry_after = throttle.reserve(conn, login_limit(settings), email)
    if retry_after is not None:
        raise _throttled(retry_after)
    row = _ACCOUNT.one_or_none(conn, {"email": email})
    return None if row is None else Account(*row)


async def log_in(database: Database, settings: Settings, email: str, password: str) -> TokenPair:
    """A token pair for these credentials.

    Refuses with 429 past the limit of attempts, 401 for an unknown email or a wrong password
    (in the same time: an unknown email is hashed too), and 403 for the right password of a
    deactivated account.

    The attempt is counted before the password is checked and the count is cleared by a
    success, so of any number of concurrent guesses at most the limit are checked; the rest
    get 429. A refused attempt leaves its count: the window stays closed while guesses go on.
    """
    account = await database.write(_begin_login, settings, email)
    if account is None:
        await security.verify_dummy(password)
        metrics.failed_logins.inc()
        raise Unauthorized("Incorrect email or password")
    valid, new_hash = await security.verify_password(password, account.password_hash)
    if not valid:
        metrics.failed_logins.inc()
        raise Unauthorized("Incorrect email or password")
    tokens = await database.write(_record_login, settings, email, account, new_hash)
    if tokens is None:
        raise Forbidden("This account is deactivated")
    return tokens


def _record_login(
    conn: Connection, settings: Settings, email: str, account: Account, new_hash: str | None
) -> TokenPair | None:
    """Clear the email's attempts, store an upgraded hash, and issue tokens to an active
    account. Returns None for a deactivated account."""
    throttle.clear(conn, login_limit(settings), email)
    if new_hash is not None:
        statement = update(User).where(User.id == account.user_id).values(password_hash=new_hash)
        conn.execute(statement)
    if not account.is_active:
        return None
    return _add_token_pair(conn, settings, account.user_id, family=uuid.uuid4().hex)


# --- refresh tokens -----------------------------------------------------------------------

_INSERT_REFRESH_TOKEN = insert(RefreshToken)
# Every token issued is a row, kept while it may still be presented (a spent one reveals a
# leak). Once expired, a token is refused by its own expiry before its row is read, so each
# token issued deletes a few expired ones, found by the index on expires_at: more than it
# adds, at a small fixed cost, so the table holds little beyond the tokens still alive.
EXPIRED_TOKENS_PRUNED_PER_ISSUE = 4
_DELETE_EXPIRED_TOKENS = delete(RefreshToken).where(
    RefreshToken.jti.in_(
        select(RefreshToken.jti)
        .where(RefreshToken.expires_at <= bindparam("now"))
        .order_by(RefreshToken.expires_at)
        .limit(EXPIRED_TOKENS_PRUNED_PER_ISSUE)
    )
)


def _add_token_pair(
    conn: Connection, settings: Settings, user_id: int, *, family: str
) -> TokenPair:
    """A new access token, and a refresh token of `family` recorded in the open transaction."""
    access_lifetime = timedelta(minutes=settings.access_token_minutes)
    access, _ = security.create_token(
        user_id=user_id,
        type=TokenType.access,
        lifetime=access_lifetime,
        secret_key=settings.secret_key,
    )
    refresh, claims = security.create_token(
        user_id=user_id,
        type=TokenType.refresh,
        lifetime=timedelta(days=settings.refresh_token_days),
        secret_key=settings.secret_key,
        family=family,
    )
    conn.execute(
        _INSERT_REFRESH_TOKEN,
        {
            "jti": claims.jti,
            "user_id": user_id,
            "family_id": family,
            "issued_at": claims.issued_at,
            "expires_at": claims.expires_at,
        },
    )
    conn.execute(_DELETE_EXPIRED_TOKENS, {"now": claims.issued_at})
    return TokenPair(
        access_token=access,
        refresh_token=refresh,
        expires_in=int(access_lifetime.total_seconds()),
    )


_REFRESH_REFUSED = "Invalid, expired or already used refresh token"


async def refresh(database: Database, settings: Settings, refresh_token: str) -> TokenPair:
    """Spend a refresh token and issue a new pair.

    Spending is one conditional UPDATE, so of two concurrent refreshes exactly one wins.
    Presenting a token that was already spent means it leaked: its whole family is revoked
    (committed), and the request is refused.
    """
    claims = _claims(settings, refresh_token, TokenType.refresh, _REFRESH_REFUSED)
    tokens = await database.write(_rotate, settings, claims)
    if tokens is None:
        raise Unauthorized(_REFRESH_REFUSED)
    return tokens


def _rotate(conn: Connection, settings: Settings, claims: TokenClaims) -> TokenPair | None:
    now = utcnow()
    family = conn.scalar(
        update(RefreshToken)
        .where(
            RefreshToken.jti == claims.jti,
            RefreshToken.spent_at.is_(None),
            RefreshToken.revoked_at.is_(None),
            RefreshToken.expires_at > now,
        )
        .values(spent_at=now)
        .returning(RefreshToken.family_id)
    )
    if family is None:
        stored = conn.execute(
            select(RefreshToken.family_id, RefreshToken.spent_at).where(
                RefreshToken.jti == claims.jti
            )
        ).one_or_none()
        if stored is not None and stored.spent_at is not None:
            _revoke_family(conn, stored.family_id, now)
        return None
    if not conn.scalar(select(User.is_active).where(User.id == claims.user_id)):
        return None
    return _add_token_pair(conn, settings, claims.user_id, family=family)


def _revoke_family(conn: Connection, family: str, now: datetime) -> None:
    conn.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


async def log_out(database: Database, settings: Settings, refresh_token: str) -> None:
    """Revoke one refresh token; a forged, malformed or expired one is refused. A token that
    was already spent leaked (its successor is in use): its whole family is revoked."""
    claims = _claims(settings, refresh_token, TokenType.refresh, "Invalid or expired refresh token")
    await database.write(_revoke, claims.jti)


def _revoke(conn: Connection, jti: str) -> None:
    now = utcnow()
    stored = conn.execute(
        select(RefreshToken.family_id, RefreshToken.spent_at).where(RefreshToken.jti == jti)
    ).one_or_none()
    if stored is not None and stored.spent_at is not None:
        _revoke_family(conn, stored.family_id, now)
        return
    conn.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == jti, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


# --- passwords and users ------------------------------------------------------------------


def _begin_password_check(conn: Connection, settings: Settings, user: UserPublic) -> str:
    """Count a guess of the user's current password like a login attempt; their hash."""
    retry_after = throttle.reserve(conn, login_limit(settings), user.email)
    if retry_after is not None:
        raise _throttled(retry_after)
    password_hash = conn.scalar(select(User.password_hash).where(User.id == user.id))
    assert password_hash is not None  # the user was loaded by this request
    return password_hash


def refuse_personal(new_password: str, email: str) -> None:
    """A new password (the body's `new_password`) must not be the account's email."""
    if passwords.is_personal(new_password, email):
        raise Unprocessable(
            "The password must not be the email or its local part",
            loc=["body", "new_password"],
            type="password_personal",
        )


async def change_password(
    database: Database, settings: Settings, user: UserPublic, current: str, new: str
) -> None:
    """Set a new password and revoke every refresh token, after proving the current one.
    Wrong current passwords count against the email's login limit."""
    refuse_personal(new, user.email)
    password_hash = await database.write(_begin_password_check, settings, user)
    if not (await security.verify_password(current, password_hash))[0]:
        raise Unauthorized("Current password is incorrect")
    new_hash = await security.hash_password(new)
    await database.write(set_password, settings, user.id, user.email, new_hash)


def set_password(
    conn: Connection, settings: Settings, user_id: int, email: str, password_hash: str
) -> None:
    """Store a new password hash. Every refresh token of the user is revoked, a pending
    password reset token is void, and the email's failed logins are forgotten."""
    throttle.clear(conn, login_limit(settings), email)
    conn.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
    _revoke_all(conn, user_id)


def _revoke_all(conn: Connection, user_id: int) -> None:
    """End every way into the account but its password: its refresh tokens and a pending
    password reset (neither comes back with a reactivation)."""
    conn.execute(delete(PasswordResetToken).where(PasswordResetToken.user_id == user_id))
    conn.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user_id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


def list_users(conn: Connection, *, limit: int, offset: int) -> tuple[list[UserPublic], int]:
    total = conn.scalar(select(func.count()).select_from(User)) or 0
    rows = conn.execute(select(*_USER_COLUMNS).order_by(User.id).limit(limit).offset(offset))
    return [_user(row) for row in rows], total


def update_user(
    conn: Connection, actor: UserPublic, user_id: int, changes: UserUpdate
) -> UserPublic:
    values = changes.changes()
    if user_id == actor.id and False in (values.get("is_admin"), values.get("is_active")):
        raise Conflict("Admins cannot remove their own admin or active flag")
    if values:
        statement = update(User).where(User.id == user_id).values(values)
        row = conn.execute(statement.returning(*_USER_COLUMNS)).one_or_none()
    else:
        row = conn.execute(select(*_USER_COLUMNS).where(User.id == user_id)).one_or_none()
    if row is None:
        raise NotFound("User not found")
    if values.get("is_active") is False:
        _revoke_all(conn, user_id)
    return _user(row)


def make_admin(conn: Connection, email: str) -> bool:
    """Make the user with this email an admin; False when there is none."""
    return bool(
        conn.execute(update(User).where(User.email == email).values(is_admin=True)).rowcount
    )


def add_admin(conn: Connection, name: str, email: str, password_hash: str) -> UserPublic:
    return _insert_user(conn, name, email, password_hash, is_admin=True)
