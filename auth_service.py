"""Accounts, logins and tokens: the rules behind /auth, kept apart from HTTP.

Password hashing is slow by design (argon2), so every function here finishes its database
transaction before hashing and starts a new one after: a write lock is never held while a
hash runs.
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
from sqlalchemy.orm import Session

import security
from database import Database, begin_write
from errors import Conflict
from models import LoginThrottle, RefreshToken, User, utcnow
from prepared import Prepared
from schemas import TokenPair, UserCreate, UserPublic, UserUpdate
from security import InvalidToken, TokenType
from settings import Settings


@dataclass
class Throttled(Exception):
    retry_after: int


# Loaded on every authenticated request, so prepared once.
_ACTIVE_USER = Prepared(
    select(User.id, User.name, User.email, User.is_active, User.is_admin, User.created_at).where(
        User.id == bindparam("user_id"), User.is_active
    )
)


def active_user(conn: Connection, user_id: int) -> UserPublic | None:
    row = _ACTIVE_USER.one_or_none(conn, {"user_id": user_id})
    if row is None:
        return None
    return UserPublic.model_construct(**dict(zip(_ACTIVE_USER.keys, row, strict=True)))


def signup(db: Session, data: UserCreate) -> User:
    password_hash = security.hash_password(data.password)
    user = User(name=data.name, email=data.email, password_hash=password_hash)
    begin_write(db)
    db.add(user)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise Conflict("Email is already registered") from None
    return user


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


class InvalidCredentials(Exception):
    pass


class Deactivated(Exception):
    pass


_THROTTLE = Prepared(
    select(LoginThrottle.failures, LoginThrottle.window_started_at).where(
        LoginThrottle.email == bindparam("email")
    )
)
_ACCOUNT = Prepared(
    select(User.id, User.password_hash, User.is_active).where(User.email == bindparam("email"))
)


def _login_state(conn: Connection, email: str) -> LoginState:
    throttle = _THROTTLE.one_or_none(conn, {"email": email})
    account = _ACCOUNT.one_or_none(conn, {"email": email})
    failures, started = throttle if throttle is not None else (0, None)
    user_id, password_hash, is_active = account if account is not None else (None, None, False)
    return LoginState(failures, started, user_id, password_hash, is_active)


async def log_in(database: Database, settings: Settings, email: str, password: str) -> TokenPair:
    """A token pair for these credentials.

    Raises Throttled past the limit of failed attempts, InvalidCredentials for an unknown
    email or a wrong password (in the same time: an unknown email is hashed too), and
    Deactivated for the right password of a deactivated account.

    Only wrong passwords count, and a successful login clears the count, so several devices
    logging in at once are never throttled. The count is read before the slow hash and
    recorded after it; concurrent guesses are bounded by the hash pool meanwhile. No
    transaction is open while the hash runs.
    """
    state = await database.read(_login_state, email)
    retry_after = state.retry_after(settings, utcnow())
    if retry_after is not None:
        raise Throttled(retry_after)
    if state.password_hash is None:
        await security.verify_dummy(password)
        valid, new_hash = False, None
    else:
        valid, new_hash = await security.verify_password_async(password, state.password_hash)
    if not valid:
        await database.write(_count_failure, settings, email)
        raise InvalidCredentials
    tokens = await database.write(_record_login, settings, email, state, new_hash)
    if tokens is None:
        raise Deactivated
    return tokens


def _record_login(
    conn: Connection, settings: Settings, email: str, state: LoginState, new_hash: str | None
) -> TokenPair | None:
    """Clear the email's failures, store an upgraded hash, and issue tokens to an active
    account: one transaction. Returns None for a deactivated account."""
    assert state.user_id is not None
    # Also the failures other attempts recorded while this one was hashing.
    conn.execute(delete(LoginThrottle).where(LoginThrottle.email == email))
    if new_hash is not None:
        conn.execute(update(User).where(User.id == state.user_id).values(password_hash=new_hash))
    tokens = None
    if state.is_active:
        tokens = _add_token_pair(conn, settings, state.user_id, family=uuid.uuid4().hex)
    conn.commit()
    return tokens


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
    conn.commit()


_INSERT_REFRESH_TOKEN = insert(RefreshToken)


def _add_token_pair(
    db: Session | Connection, settings: Settings, user_id: int, *, family: str
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
    db.execute(
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


def rotate(db: Session, settings: Settings, refresh_token: str) -> TokenPair | None:
    """Spend a refresh token and issue a new pair; None when the token cannot be used.

    Spending is one conditional UPDATE, so of two concurrent refreshes exactly one wins.
    Presenting a token that was already spent means it leaked: its whole family is revoked.
    """
    try:
        claims = security.decode_token(
            refresh_token, expected=TokenType.refresh, secret_key=settings.secret_key
        )
    except InvalidToken:
        return None
    now = utcnow()
    begin_write(db)
    family = db.scalar(
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
        stored = db.get(RefreshToken, claims.jti)
        if stored is not None and stored.spent_at is not None:
            _revoke_family(db, stored.family_id, now)
        db.commit()
        return None

    if not db.scalar(select(User.is_active).where(User.id == claims.user_id)):
        db.rollback()
        return None
    tokens = _add_token_pair(db, settings, claims.user_id, family=family)
    db.commit()
    return tokens


def _revoke_family(db: Session, family: str, now: datetime) -> None:
    db.execute(
        update(RefreshToken)
        .where(RefreshToken.family_id == family, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def logout(db: Session, settings: Settings, refresh_token: str) -> None:
    """Revoke one refresh token; raises InvalidToken for a forged or expired one."""
    claims = security.decode_token(
        refresh_token, expected=TokenType.refresh, secret_key=settings.secret_key
    )
    begin_write(db)
    db.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == claims.jti, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    db.commit()


def change_password(db: Session, user: UserPublic, current: str, new: str) -> bool:
    """Set a new password and revoke every refresh token; False if `current` is wrong."""
    password_hash = db.scalar(select(User.password_hash).where(User.id == user.id))
    db.commit()  # end the transaction before hashing
    if password_hash is None or not security.verify_password(current, password_hash)[0]:
        return False
    new_hash = security.hash_password(new)
    begin_write(db)
    db.execute(update(User).where(User.id == user.id).values(password_hash=new_hash))
    db.execute(
        update(RefreshToken)
        .where(RefreshToken.user_id == user.id, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    db.commit()
    return True


def list_users(db: Session, *, limit: int, offset: int) -> tuple[list[User], int]:
    total = db.scalar(select(func.count()).select_from(User)) or 0
    users = db.scalars(select(User).order_by(User.id).limit(limit).offset(offset)).all()
    return list(users), total


def update_user(db: Session, actor: UserPublic, user_id: int, changes: UserUpdate) -> User | None:
    values = changes.changes()
    begin_write(db)
    user = db.get(User, user_id)
    if user is None:
        return None
    if user.id == actor.id and False in (values.get("is_admin"), values.get("is_active")):
        raise Conflict("Admins cannot remove their own admin or active flag")
    for name, value in values.items():
        setattr(user, name, value)
    db.commit()
    return user
