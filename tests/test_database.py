"""The SQLite write discipline: writes only inside begin_write(), one writer at a time."""

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Connection, literal, select, text
from sqlalchemy.exc import OperationalError

from database import Database, begin_write, write_session
from models import UTCDateTime, _sqlite_utc
from settings import Settings


@pytest.fixture
def sqlite_db(migrated_template: str, database_url: str) -> Database:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write discipline")
    db = Database(Settings(_env_file=None, database_url=database_url, secret_key="k" * 32))
    yield db
    db.dispose()


def test_a_write_outside_begin_write_is_refused(sqlite_db: Database) -> None:
    with sqlite_db.session() as session, pytest.raises(RuntimeError, match="begin_write"):
        session.execute(text("DELETE FROM users"))


def test_begin_write_makes_the_statements_one_transaction(sqlite_db: Database) -> None:
    with sqlite_db.session() as session:
        begin_write(session)
        session.execute(
            text("INSERT INTO login_throttle VALUES ('a@example.com', 1, '2026-01-01')")
        )
        session.rollback()
        assert session.execute(text("SELECT count(*) FROM login_throttle")).scalar() == 0


def test_writers_of_one_process_take_turns(sqlite_db: Database) -> None:
    inside = peak = 0
    lock = threading.Lock()

    def writer(n: int) -> None:
        nonlocal inside, peak
        with write_session(sqlite_db) as session:
            with lock:
                inside += 1
                peak = max(peak, inside)
            session.execute(
                text("INSERT INTO login_throttle VALUES (:e, 1, '2026-01-01')"),
                {"e": f"{n}@example.com"},
            )
            time.sleep(0.02)
            with lock:
                inside -= 1

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 1
    with sqlite_db.session() as session:
        assert session.execute(text("SELECT count(*) FROM login_throttle")).scalar() == 8


def test_inline_reads_keep_one_connection_until_a_read_fails(sqlite_db: Database) -> None:
    def missing_table(conn: Connection) -> None:
        conn.execute(text("SELECT * FROM no_such_table"))

    def users(conn: Connection) -> int:
        return conn.execute(text("SELECT count(*) FROM users")).scalar_one()

    async def reads() -> tuple[Connection, Connection, Connection, int]:
        first = await sqlite_db.read(lambda conn: conn)
        second = await sqlite_db.read(lambda conn: conn)
        with pytest.raises(OperationalError, match="no_such_table"):
            await sqlite_db.read(missing_table)
        after = await sqlite_db.read(lambda conn: conn)
        return first, second, after, await sqlite_db.read(users)

    first, second, after, count = asyncio.run(reads())
    assert first is second
    assert after is not first
    assert first.closed
    assert count == 0


def test_timestamps_come_back_aware_and_in_utc_on_every_backend(database_url: str) -> None:
    db = Database(Settings(_env_file=None, database_url=database_url, secret_key="k" * 32))
    written = datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=timezone(timedelta(hours=2)))
    try:
        with db.engine.connect() as conn:
            read = conn.execute(select(literal(written, UTCDateTime))).scalar()
    finally:
        db.dispose()
    assert read == written
    assert read.tzinfo is not None
    assert read.utcoffset() == timedelta(0)


@pytest.mark.parametrize(
    ("text_value", "expected"),
    [
        ("2026-03-01 10:30:15.250000", datetime(2026, 3, 1, 10, 30, 15, 250000, tzinfo=UTC)),
        ("2026-03-01 10:30:15", datetime(2026, 3, 1, 10, 30, 15, tzinfo=UTC)),  # CURRENT_TIMESTAMP
        ("2026-03-01T12:30:15+02:00", datetime(2026, 3, 1, 10, 30, 15, tzinfo=UTC)),
        (None, None),
    ],
)
def test_sqlite_timestamp_text_is_read_as_utc(
    text_value: str | None, expected: datetime | None
) -> None:
    assert _sqlite_utc(text_value) == expected
