"""The SQLite write discipline: writes only inside begin_write(), one writer at a time."""

import asyncio
import threading
import time

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import OperationalError

from database import Database, begin_write, write_session
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
