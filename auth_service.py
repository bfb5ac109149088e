"""Accounts, logins and tokens: the rules behind /auth, kept apart from HTTP.

The flows (`sign_up`, `log_in`, `refresh`, ...) take the app's Database and run their reads
and commands through it. Password hashing is slow by design (argon2), so it always runs
between two units of work, never inside one: a write lock is never held while a hash runs.
"""

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import (
    Connection,
    bindparam,
    case,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

import security
from database import Database
from errors import Conflict, Forbidden, NotFound, TooManyRequests, Unauthorized
from models import LoginThrottle, RefreshToken, User, utcnow
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


async def sign_up(database: Database, data: UserCreate) -> UserPublic:
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


@dataclass(frozen=True)
class LoginState:
    """What a login reads before hashing: the email's failures and the account it names."""

    failures: int
    window_started_at: datetime | None
    user_id: int | None
    password_hash: str | None
    is_active: bool

    def retry_after(self, settings: Settings, now: datetime) -> int | None:
        """Seconds until the email may try again, or None when it is not throttled."""
        window = timedelta(seconds=settings.login_window_seconds)
        if self.window_started_at is None or self.failures < settings.login_max_failures:
            return None
        if self.window_started_at <= now - window:
            return None
        return max(1, math.ceil((self.window_started_at + window - now).total_seconds()))


_THROTTLE = Precompiled(
    select(LoginThrottle.failures, LoginThrottle.window_started_at).where(
        LoginThrottle.email == bindparam("email")
    )
)
_ACCOUNT = Precompiled(
    select(User.id, User.password_hash, User.is_active).where(User.email == bindparam("email"))
)


def _login_state(conn: Connection, email: str) -> LoginState:
    throttle = _THROTTLE.one_or_none(conn, {"email": email})
    account = _ACCOUNT.one_or_none(conn, {"email": email})
    failures, started = throttle if throttle is not None else (0, None)
    user_id, password_hash, is_active = account if account is not None else (None, None, False)
    return LoginState(failures, started, user_id, password_hash, is_active)


def _throttled(retry_after: int) -> TooManyRequests:
    return TooManyRequests(
        "Too many failed login attempts; try again later", retry_after=retry_after
    )


async def log_in(database: Database, settings: Settings, email: str, password: str) -> TokenPair:
    """A token pair for these credentials.

    Refuses with 429 past the limit of failed attempts, 401 for an unknown email or a wrong
    password (in the same time: an unknown email is hashed too), and 403 for the right
    password of a deactivated account.

    Only wrong passwords count, and a successful login clears the count, so several devices
    logging in at once are never throttled. The count is read before the slow hash and
    recorded after it; concurrent guesses are bounded by the hash pool meanwhile.
    """
    state = await database.read(_login_state, email)
    retry_after = state.retry_after(settings, utcnow())
    if retry_after is not None:
        raise _throttled(retry_after)
    if state.password_hash is None:
        await security.verify_dummy(password)
        valid, new_hash = False, None
    else:
        valid, new_hash = await security.verify_password(password, state.password_hash)
    if not valid:
        await database.write(_count_failure, settings, email)
        raise Unauthorized("Incorrect email or password")
    tokens = await database.write(_record_login, settings, email, state, new_hash)
    if tokens is None:
        raise Forbidden("This account is deactivated")
    return tokens


def _record_login(
    conn: Connection, settings: Settings, email: str, state: LoginState, new_hash: str | None
) -> TokenPair | None:
    """Clear the email's failures, store an upgraded hash, and issue tokens to an active
    account. Returns None for a deactivated account."""
    assert state.user_id is not None
    # Also the failures other attempts recorded while this one was hashing.
    conn.execute(delete(LoginThrottle).where(LoginThrottle.email == email))
    if new_hash is not None:
        conn.execute(update(User).where(User.id == state.user_id).values(password_hash=new_hash))
    if not state.is_active:
        return None
    return _add_token_pair(conn, settings, state.user_id, family=uuid.uuid4().hex)


def _count_failure(conn: Connection, settings: Settings, email: str) -> None:
    """Add one failure to the email's window, or start a new window if it expired: one
    atomic upsert, so failures reported by concurrent requests are all counted."""
    now = utcnow()
    expired = LoginThrottle.window_started_at <= now - timedelta(
        seconds=settings.login_window_seconds
    )
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(LoginThrottle).values(email=email, failures=1, window_started_at=now)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[LoginThrottle.email],
            set_={
                "failures": case((expired, 1), else_=LoginThrottle.failures + 1),
                "window_started_at": case(
                    (expired, literal(now, LoginThrottle.window_started_at.type)),
                    else_=LoginThrottle.window_started_at,
                ),
            },
        )
    )


# --- refresh tokens -----------------------------------------------------------------------

_INSERT_REFRESH_TOKEN = insert(RefreshToken)


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
    """Revoke one refresh token; a forged, malformed or expired one is refused."""
    claims = _claims(settings, refresh_token, TokenType.refresh, "Invalid or expired refresh token")
    await database.write(_revoke, claims.jti)


def _revoke(conn: Connection, jti: str) -> None:
    conn.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == jti, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )


# --- passwords and users ------------------------------------------------------------------


def _password_hash(conn: Connection, user_id: int) -> str | None:
    return conn.scalar(select(User.password_hash).where(User.id == user_id))


async def change_password(database: Database, user: UserPublic, current: str, new: str) -> None:
    """Set a new password and revoke every refresh token, after proving the current one."""
    password_hash = await database.read(_password_hash, user.id)
    if password_hash is None or not (await security.verify_password(current, password_hash))[0]:
        raise Unauthorized("Current password is incorrect")
    new_hash = await security.hash_password(new)
    await database.write(_set_password, user.id, new_hash)


def _set_password(conn: Connection, user_id: int, password_hash: str) -> None:
    conn.execute(update(User).where(User.id == user_id).values(password_hash=password_hash))
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
    return _user(row)


def make_admin(conn: Connection, email: str) -> bool:
    """Make the user with this email an admin; False when there is none."""
    return bool(
        conn.execute(update(User).where(User.email == email).values(is_admin=True)).rowcount
    )


def add_admin(conn: Connection, name: str, email: str, password_hash: str) -> UserPublic:
    return _insert_user(conn, name, email, password_hash, is_admin=True)
