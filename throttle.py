"""Rate limits kept in the database, so they hold across worker processes and machines.

A limit allows `max_attempts` attempts per key (an email, a client address) in a window that
starts with the key's first attempt. An attempt is reserved, counted in one atomic upsert,
before the work it guards runs (a password check, a signup), so any number of concurrent
attempts let at most `max_attempts` through. Windows that have ended are pruned as new
attempts arrive, so the table holds only the keys tried within their window.
"""

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache

from sqlalchemy import Connection, Executable, bindparam, case, delete, select

from database import upsert
from models import RateLimitWindow, utcnow

# Ended windows deleted per attempt: bounded work, and far more than attempts add.
PRUNE_BATCH = 100


@dataclass(frozen=True)
class Limit:
    name: str
    max_attempts: int
    window_seconds: int

    def bucket(self, key: str) -> str:
        return f"{self.name}:{key}"


def reserve(conn: Connection, limit: Limit, key: str) -> int | None:
    """Count an attempt. None when it is within the limit; otherwise the seconds until the
    window ends. A caller that refuses the attempt raises, and its transaction's rollback
    takes the count back: that changes nothing, since a window ends a fixed time after its
    first attempt, however many come after."""
    now = utcnow()
    count_attempt, prune = _statements(conn.dialect.name)
    attempts, expires_at = conn.execute(
        count_attempt,
        {
            "bucket": limit.bucket(key),
            "now": now,
            "ends": now + timedelta(seconds=limit.window_seconds),
        },
    ).one()
    conn.execute(prune, {"now": now})
    if attempts <= limit.max_attempts:
        return None
    return _seconds_until(expires_at, now)


@cache
def _statements(dialect: str) -> tuple[Executable, Executable]:
    """The attempt's upsert and the prune of ended windows, built once per dialect (a login
    or a signup would otherwise build them again, each time), with their values bound."""
    moment = RateLimitWindow.expires_at.type
    ended = RateLimitWindow.expires_at <= bindparam("now", type_=moment)
    insert = upsert(dialect, RateLimitWindow).values(
        bucket=bindparam("bucket"), attempts=1, expires_at=bindparam("ends", type_=moment)
    )
    count_attempt = insert.on_conflict_do_update(
        index_elements=[RateLimitWindow.bucket],
        set_={
            "attempts": case((ended, 1), else_=RateLimitWindow.attempts + 1),
            "expires_at": case(
                (ended, insert.excluded.expires_at), else_=RateLimitWindow.expires_at
            ),
        },
    ).returning(RateLimitWindow.attempts, RateLimitWindow.expires_at)
    # SKIP LOCKED (PostgreSQL; SQLite has one writer anyway): never wait for a row another
    # attempt holds, which could deadlock with that attempt's own prune.
    ended_windows = (
        select(RateLimitWindow.bucket)
        .where(ended)
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)
    )
    prune = delete(RateLimitWindow).where(RateLimitWindow.bucket.in_(ended_windows))
    return count_attempt, prune


def clear(conn: Connection, limit: Limit, key: str) -> None:
    """Forget the key's attempts (a successful login clears its failures)."""
    conn.execute(delete(RateLimitWindow).where(RateLimitWindow.bucket == limit.bucket(key)))


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))
