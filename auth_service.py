"""Accounts, logins and tokens: the rules behind /auth, kept apart from HTTP.

Password hashing is slow by design (argon2), so every function here finishes its database
transaction before hashing and starts a new one after: a write lock is never held while a
hash runs.
"""

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import case, delete, func, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

import security
from errors import Conflict
from models import LoginThrottle, RefreshToken, User, utcnow
from schemas import TokenPair, UserCreate, UserUpdate
from security import InvalidToken, TokenType
from settings import Settings


@dataclass
class Throttled(Exception):
    retry_after: int


def signup(db: Session, data: UserCreate) -> User:
    password_hash = security.hash_password(data.password)
    user = User(name=data.name, email=data.email, password_hash=password_hash)
    db.add(user)
    try:
        db.commit()
    except IntegrityError:
        db.rollback()
        raise Conflict("Email is already registered") from None
    return user


def authenticate(db: Session, settings: Settings, email: str, password: str) -> User | None:
    """The user whose credentials these are, or None; raises Throttled past the limit.

    The attempt is counted before the password is checked, so concurrent guesses cannot
    slip past the limit; a successful login then clears the count.
    """
    window = timedelta(seconds=settings.login_window_seconds)
    now = utcnow()
    failures, started = _count_attempt(db, email, now, window)
    user = db.scalar(select(User).where(User.email == email))
    db.commit()
    if failures > settings.login_max_failures:
        raise Throttled(retry_after=max(1, math.ceil((started + window - now).total_seconds())))

    if user is None:
        security.verify_dummy(password)
        return None
    valid, new_hash = security.verify_password(password, user.password_hash)
    if not valid:
        return None

    db.execute(delete(LoginThrottle).where(LoginThrottle.email == email))
    if new_hash is not None:
        user.password_hash = new_hash
    db.commit()
    return user


def _count_attempt(
    db: Session, email: str, now: datetime, window: timedelta
) -> tuple[int, datetime]:
    """Add one attempt to the email's window (starting a new window if it expired), atomically."""
    expired = LoginThrottle.window_started_at <= now - window
    dialect = postgresql if db.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(LoginThrottle).values(email=email, failures=1, window_started_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[LoginThrottle.email],
        set_={
            "failures": case((expired, 1), else_=LoginThrottle.failures + 1),
            "window_started_at": case(
                (expired, literal(now, LoginThrottle.window_started_at.type)),
                else_=LoginThrottle.window_started_at,
            ),
        },
    ).returning(LoginThrottle.failures, LoginThrottle.window_started_at)
    failures, started = db.execute(stmt).one()
    return failures, started


def issue_tokens(
    db: Session, settings: Settings, user: User, *, family: str | None = None
) -> TokenPair:
    access_lifetime = timedelta(minutes=settings.access_token_minutes)
    access, _ = security.create_token(
        user_id=user.id,
        type=TokenType.access,
        lifetime=access_lifetime,
        secret_key=settings.secret_key,
    )
    refresh, claims = security.create_token(
        user_id=user.id,
        type=TokenType.refresh,
        lifetime=timedelta(days=settings.refresh_token_days),
        secret_key=settings.secret_key,
        family=family or uuid.uuid4().hex,
    )
    db.add(
        RefreshToken(
            jti=claims.jti,
            user_id=user.id,
            family_id=claims.family,
            issued_at=claims.issued_at,
            expires_at=claims.expires_at,
        )
    )
    db.commit()
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

    user = db.get(User, claims.user_id)
    if user is None or not user.is_active:
        db.rollback()
        return None
    return issue_tokens(db, settings, user, family=family)


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
    db.execute(
        update(RefreshToken)
        .where(RefreshToken.jti == claims.jti, RefreshToken.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    db.commit()


def change_password(db: Session, user: User, current: str, new: str) -> bool:
    """Set a new password and revoke every refresh token; False if `current` is wrong."""
    db.commit()  # end the transaction that loaded the user before hashing
    valid, _ = security.verify_password(current, user.password_hash)
    if not valid:
        return False
    new_hash = security.hash_password(new)
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


def update_user(db: Session, actor: User, user: User, changes: UserUpdate) -> User:
    values = changes.changes()
    if user.id == actor.id and False in (values.get("is_admin"), values.get("is_active")):
        raise Conflict("Admins cannot remove their own admin or active flag")
    for name, value in values.items():
        setattr(user, name, value)
    db.commit()
    return user
