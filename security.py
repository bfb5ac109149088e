"""Password hashing and JWTs: pure functions, no database and no HTTP."""

import asyncio
import base64
import json
import re
import secrets
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from functools import cache, lru_cache
from typing import Any, TypeVar

from jose import jwk, jws, jwt
from jose.backends.base import Key
from jose.exceptions import JOSEError
from passlib.context import CryptContext

from models import MAX_ID

ALGORITHM = "HS256"
CLOCK_SKEW = timedelta(seconds=30)
T = TypeVar("T")


def password_context(*, memory_kib: int, time_cost: int, parallelism: int) -> CryptContext:
    """argon2id with these parameters (settings: OWASP's minimum by default). Raising them
    later is safe: hashes made with older parameters are upgraded on login."""
    return CryptContext(
        schemes=["argon2"],
        argon2__type="ID",
        argon2__memory_cost=memory_kib,
        argon2__time_cost=time_cost,
        argon2__parallelism=parallelism,
    )


pwd_context = password_context(memory_kib=19 * 1024, time_cost=2, parallelism=1)


class _Hasher:
    """Runs every hash on a small pool of dedicated threads.

    Each argon2 hash holds its memory cost and a core while it runs. Bounding how many run at
    once keeps a burst of logins from multiplying that; running them on the same few threads
    also keeps the allocator from growing an arena of that size in every request thread.
    """

    def __init__(self, threads: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="argon2")

    def resize(self, threads: int) -> None:
        old, self._pool = self._pool, ThreadPoolExecutor(threads, thread_name_prefix="argon2")
        old.shutdown(wait=False)

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Awaited: the caller waits for the hash without a thread of its own."""
        return await asyncio.wrap_future(self._pool.submit(fn, *args))


hasher = _Hasher()


def configure_hashing(
    *, memory_kib: int, time_cost: int, parallelism: int, concurrency: int
) -> None:
    """Set from the PASSWORD_HASH_* settings when the app starts."""
    global pwd_context
    pwd_context = password_context(
        memory_kib=memory_kib, time_cost=time_cost, parallelism=parallelism
    )
    _dummy_hash.cache_clear()
    hasher.resize(concurrency)


async def hash_password(password: str) -> str:
    return await hasher.run(pwd_context.hash, password)


async def verify_password(password: str, password_hash: str) -> tuple[bool, str | None]:
    """Check a password; on success also return a new hash when the parameters changed."""
    return await hasher.run(pwd_context.verify_and_update, password, password_hash)


@cache
def _dummy_hash() -> str:
    return pwd_context.hash(secrets.token_urlsafe(16))


async def verify_dummy(password: str) -> None:
    """Spend the time of a real verification, so unknown emails cannot be told apart by timing."""
    # The dummy hash is made on first use, on the hashing thread too.
    await hasher.run(lambda: pwd_context.verify(password, _dummy_hash()))


class TokenType(StrEnum):
    access = "access"
    refresh = "refresh"


class InvalidToken(Exception):
    pass


@dataclass(frozen=True)
class TokenClaims:
    user_id: int
    type: TokenType
    jti: str
    family: str | None
    issued_at: datetime
    expires_at: datetime


def create_token(
    *,
    user_id: int,
    type: TokenType,
    lifetime: timedelta,
    secret_key: str,
    family: str | None = None,
    now: datetime | None = None,
) -> tuple[str, TokenClaims]:
    now = now or datetime.now(UTC)
    claims = TokenClaims(
        user_id=user_id,
        type=type,
        jti=uuid.uuid4().hex,
        family=family,
        issued_at=now,
        expires_at=now + lifetime,
    )
    payload: dict[str, Any] = {
        "sub": str(user_id),
        "type": type.value,
        "jti": claims.jti,
        "iat": int(now.timestamp()),
        "exp": int(claims.expires_at.timestamp()),
    }
    if family is not None:
        payload["fam"] = family
    return jwt.encode(payload, secret_key, algorithm=ALGORITHM), claims


# Far more than any token this app issues; anything larger is refused unparsed.
MAX_TOKEN_CHARS = 2048
MAX_HEADER_CHARS = 256
_TOKEN_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


def _header(token: str) -> dict[str, Any]:
    """The token's header, unverified (jose's own reader decodes the whole token to get it).

    Size and shape are checked before anything is decoded: a header is a small flat object,
    and one of deeply nested arrays must not reach the JSON parser's recursion.
    """
    if len(token) > MAX_TOKEN_CHARS or not _TOKEN_SHAPE.fullmatch(token):
        raise ValueError("not a compact JWS")
    segment = token.split(".", 1)[0]
    if len(segment) > MAX_HEADER_CHARS:
        raise ValueError("header too large")
    header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    return header


@lru_cache(maxsize=8)
def _verification_key(secret_key: str) -> Key:
    # Given the secret as a string, python-jose first tries to parse it as a JSON key set and
    # then builds a key object, on every call: a third of the cost of checking a token.
    return jwk.construct(secret_key, ALGORITHM)


def decode_token(token: str, *, expected: TokenType, secret_key: str) -> TokenClaims:
    """Verify signature, algorithm, lifetime and type; raise InvalidToken on any doubt."""
    claims = _verified(token, secret_key)
    if claims.type is not expected:
        raise InvalidToken(f"{claims.type} token where {expected} was expected")
    now = datetime.now(UTC)
    if claims.expires_at <= now:
        raise InvalidToken("token expired")
    if claims.issued_at > now + CLOCK_SKEW:
        raise InvalidToken("token issued in the future")
    return claims


# A client sends the same access token with every request for as long as it lives, so what
# does not depend on the clock (signature, header, the claims' shape) is checked once per
# token; decode_token reads the clock on every use. Only tokens that pass are kept (lru_cache
# keeps no exception), so tokens that were never issued here cannot fill it.
VERIFIED_TOKENS_KEPT = 1024


@lru_cache(maxsize=VERIFIED_TOKENS_KEPT)
def _verified(token: str, secret_key: str) -> TokenClaims:
    """The claims of a token signed with `secret_key`, whatever the time.

    python-jose verifies the signature against the one allowed algorithm (`jws.verify`); the
    claims are checked here, where exp, iat and sub are required. `jwt.decode` would parse
    the header a second time and run a generic check of every registered claim.
    """
    try:
        header = _header(token)
        # python-jose ignores "crit"; a header asking for extensions we do not know is refused.
        if header.get("alg") != ALGORITHM or "crit" in header:
            raise InvalidToken("unexpected token header")
        payload = json.loads(
            jws.verify(token, _verification_key(secret_key), algorithms=[ALGORITHM])
        )
    except (JOSEError, ValueError, AttributeError, RecursionError) as exc:
        raise InvalidToken(str(exc)) from exc
    if not isinstance(payload, dict):
        raise InvalidToken("claims are not an object")

    try:
        token_type = TokenType(payload.get("type"))
        subject = payload["sub"]
        issued_at = datetime.fromtimestamp(payload["iat"], UTC)
        expires_at = datetime.fromtimestamp(payload["exp"], UTC)
        jti = payload["jti"]
        family = payload.get("fam")
    except (KeyError, ValueError, TypeError, OverflowError, OSError) as exc:
        raise InvalidToken("malformed claims") from exc
    # An id has at most 10 digits; int() of thousands of digits raises (or takes time).
    if not (
        isinstance(subject, str) and subject.isascii() and subject.isdigit() and len(subject) <= 10
    ):
        raise InvalidToken("malformed claims")
    user_id = int(subject)
    if not 0 < user_id <= MAX_ID or not isinstance(jti, str):
        raise InvalidToken("malformed claims")
    if family is not None and not isinstance(family, str):
        raise InvalidToken("malformed claims")
    return TokenClaims(
        user_id=user_id,
        type=token_type,
        jti=jti,
        family=family,
        issued_at=issued_at,
        expires_at=expires_at,
    )
