"""The unit of work: writes only inside Database.write, committed or rolled back whole, one
writer at a time on SQLite."""

import asyncio
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Connection, event, literal, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

import database
from conftest import AtOnce
from database import Database
from models import UTCDateTime, _sqlite_utc
from settings import Settings


@pytest.fixture
def sqlite_db(migrated_template: str, database_url: str) -> Database:
    if not database_url.startswith("sqlite"):
        pytest.skip("SQLite's write discipline")
    db = Database(Settings(_env_file=None, database_url=database_url, secret_key="k" * 32))
    yield db
    db.dispose()


def test_a_write_outside_database_write_is_refused(sqlite_db: Database) -> None:
    def sneaky(conn: Connection) -> None:
        conn.execute(text("DELETE FROM users"))

    with pytest.raises(RuntimeError, match=r"Database\.write"):
        sqlite_db.read_sync(sneaky)


def test_a_command_that_raises_leaves_nothing_behind(database_url: str) -> None:
    db = Database(Settings(_env_file=None, database_url=database_url, secret_key="k" * 32))
    try:
        with pytest.raises(ValueError, match="refused"):
            db.write_sync(_throttle_row("gone@example.com", then_fail=True))
        db.write_sync(_throttle_row("kept@example.com"))
        assert _throttled(db) == {"kept@example.com"}
    finally:
        db.dispose()


def test_writers_of_one_process_take_turns(sqlite_db: Database) -> None:
    inside = peak = 0
    lock = threading.Lock()

    def command(conn: Connection, n: int) -> None:
        nonlocal inside, peak
        with lock:
            inside += 1
            peak = max(peak, inside)
        conn.execute(
            text("INSERT INTO rate_limit_windows VALUES (:e, 1, '2026-01-01')"),
            {"e": f"{n}@example.com"},
        )
        time.sleep(0.02)
        with lock:
            inside -= 1

    def writer(n: int) -> None:
        sqlite_db.write_sync(command, n)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert peak == 1
    assert len(_throttled(sqlite_db)) == 8


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


def _throttle_row(email: str, *, then_fail: bool = False) -> Callable[[Connection], str]:
    def command(conn: Connection) -> str:
        conn.execute(
            text("INSERT INTO rate_limit_windows VALUES (:email, 1, '2026-01-01 00:00:00')"),
            {"email": email},
        )
        if then_fail:
            raise ValueError("refused after the insert")
        return threading.current_thread().name

    return command


def _throttled(db: Database) -> set[str]:
    return db.read_sync(
        lambda conn: set(conn.execute(text("SELECT bucket FROM rate_limit_windows")).scalars())
    )


class _Holder:
    """Another writer of this process, holding the write lock until released."""

    def __init__(self, db: Database) -> None:
        self.holding, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=db.write_sync, args=(self._hold,))
        self.thread.start()
        assert self.holding.wait(5)

    def _hold(self, _conn: Connection) -> None:
        self.holding.set()
        assert self.release.wait(5)


def test_writes_run_inline_and_wait_on_the_pool_while_another_writer_holds_the_lock(
    sqlite_db: Database,
) -> None:
    holder = _Holder(sqlite_db)

    def finish_later() -> None:
        time.sleep(0.3)
        holder.release.set()

    async def writes() -> tuple[str, float, str]:
        threading.Thread(target=finish_later).start()
        start = time.perf_counter()
        waited_in = await sqlite_db.write(_throttle_row("waited@example.com"))
        waited = time.perf_counter() - start
        return waited_in, waited, await sqlite_db.write(_throttle_row("inline@example.com"))

    loop_thread = threading.current_thread().name
    waited_in, waited, inline_in = asyncio.run(writes())
    assert waited_in != loop_thread  # the thread pool, where a write may wait
    assert waited >= 0.25
    assert inline_in == loop_thread
    assert _throttled(sqlite_db) == {"waited@example.com", "inline@example.com"}


def test_a_write_that_meets_the_checkpoints_lock_waits_for_it_on_the_event_loop(
    sqlite_db: Database,
) -> None:
    """The checkpoint's last step holds the write lock: a write that meets it waits for the
    checkpoint to end and then runs inline, not on a thread of the pool."""
    lock = database._WRITE_LOCKS[make_url(sqlite_db.url).database]
    checkpoint: Future[None] = Future()
    sqlite_db._checkpoint = checkpoint
    lock.acquire()

    def end_the_checkpoint() -> None:
        time.sleep(0.2)
        lock.release()
        checkpoint.set_result(None)

    async def write() -> tuple[str, float]:
        threading.Thread(target=end_the_checkpoint).start()
        start = time.perf_counter()
        written_in = await sqlite_db.write(_throttle_row("waited@example.com"))
        return written_in, time.perf_counter() - start

    written_in, waited = asyncio.run(write())
    assert written_in == threading.current_thread().name  # the event loop's thread
    assert waited >= 0.15
    assert _throttled(sqlite_db) == {"waited@example.com"}


def test_a_write_that_finds_the_lock_taken_keeps_the_event_loops_writer(
    sqlite_db: Database,
) -> None:
    """Refused by this process's lock before it begins, the kept connection is still good and
    stays: a new one would start with an empty page cache."""

    async def writes() -> tuple[Connection, str, Connection]:
        await sqlite_db.write(_throttle_row("first@example.com"))
        kept = sqlite_db._kept.writer
        holder = _Holder(sqlite_db)

        async def released_later() -> None:
            await asyncio.sleep(0.1)
            holder.release.set()

        release = asyncio.create_task(released_later())
        waited_in = await sqlite_db.write(_throttle_row("waited@example.com"))
        await release
        holder.thread.join()
        await sqlite_db.write(_throttle_row("after@example.com"))
        return kept, waited_in, sqlite_db._kept.writer

    kept, waited_in, after = asyncio.run(writes())
    assert waited_in != threading.current_thread().name  # refused inline, run on the pool
    assert after is kept
    assert not kept.closed
    assert len(_throttled(sqlite_db)) == 3


def test_an_inline_write_refused_the_lock_leaves_the_next_ones_atomic(
    sqlite_db: Database,
) -> None:
    # Another process holds SQLite's lock: SQLite refuses it inside SQLAlchemy's "begin"
    # event, after which that Connection would run statements in autocommit: the first
    # failing command below would keep its row.
    other_process = sqlite3.connect(make_url(sqlite_db.url).database, isolation_level=None)
    other_process.execute("BEGIN IMMEDIATE")

    async def writes() -> None:
        async def refused_then_released() -> None:
            await asyncio.sleep(0.1)
            other_process.execute("ROLLBACK")

        release = asyncio.create_task(refused_then_released())
        await sqlite_db.write(_throttle_row("after-wait@example.com"))
        await release
        with pytest.raises(ValueError, match="refused"):
            await sqlite_db.write(_throttle_row("rolled-back@example.com", then_fail=True))
        await sqlite_db.write(_throttle_row("kept@example.com"))

    with closing(other_process):
        asyncio.run(writes())
    assert _throttled(sqlite_db) == {"after-wait@example.com", "kept@example.com"}


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


def test_heavy_reads_run_a_few_at_a_time_on_lower_priority_threads(database_url: str) -> None:
    import database

    db = Database(Settings(_env_file=None, database_url=database_url, secret_key="k" * 32))
    at_once = AtOnce()

    def scan(conn: Connection) -> tuple[str, int, object]:
        with at_once.one():
            time.sleep(0.05)
        niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
        return threading.current_thread().name, niceness, conn.scalar(select(literal(1)))

    async def burst() -> list[tuple[str, int, object]]:
        reads = [db.read_heavy(scan) for _ in range(3 * database.HEAVY_READ_THREADS)]
        return await asyncio.gather(*reads)

    try:
        results = asyncio.run(burst())
    finally:
        db.dispose()
    assert at_once.most == database.HEAVY_READ_THREADS
    assert {name.split("_")[0] for name, _, _ in results} == {"heavy-read"}
    assert {value for _, _, value in results} == {1}
    own = os.getpriority(os.PRIO_PROCESS, 0)
    assert {niceness for _, niceness, _ in results} == {min(own + database.HEAVY_READ_NICENESS, 19)}


def _rows_in_the_database_file(db: Database) -> int:
    """Rows of rate_limit_windows in the database file alone: `immutable` reads no log."""
    path = make_url(db.url).database
    with closing(sqlite3.connect(f"file:{path}?immutable=1", uri=True)) as file_only:
        return file_only.execute("SELECT count(*) FROM rate_limit_windows").fetchone()[0]


def test_a_heavy_read_takes_no_parallel_workers_on_postgresql(database_url: str) -> None:
    """PostgreSQL would give a scan of a large table a core per parallel worker, and the light
    queries beside it would wait for one: a heavy read keeps to one core, and only itself."""
    if database_url.startswith("sqlite"):
        pytest.skip("PostgreSQL's parallel query")
    db = Database(Settings(_env_file=None, database_url=database_url, secret_key="k" * 32))

    def workers(conn: Connection) -> str:
        return conn.exec_driver_sql("SHOW max_parallel_workers_per_gather").scalar_one()

    async def reads() -> tuple[str, str, str]:
        return await db.read(workers), await db.read_heavy(workers), await db.read(workers)

    try:
        before, heavy, after = asyncio.run(reads())
    finally:
        db.dispose()
    assert heavy == "0"
    assert before == after != "0"  # the setting ended with the heavy read's transaction


def test_the_event_loops_writer_leaves_checkpoints_to_a_thread_of_their_own(
    sqlite_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(database, "CHECKPOINT_EVERY", 5)
    checkpointed_in: list[str] = []
    checkpoint = sqlite_db.checkpoint

    def watched() -> None:
        checkpointed_in.append(threading.current_thread().name)
        checkpoint()

    monkeypatch.setattr(sqlite_db, "checkpoint", watched)

    async def writes(numbers: range) -> None:
        for n in numbers:
            await sqlite_db.write(_throttle_row(f"w{n}@example.com"))

    asyncio.run(writes(range(4)))
    writer = sqlite_db._kept.writer.connection.dbapi_connection
    # The inline writer never checkpoints itself.
    assert writer.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    assert checkpointed_in == []
    assert _rows_in_the_database_file(sqlite_db) == 0  # all 4 still only in the log

    asyncio.run(writes(range(4, 5)))  # the fifth commit
    sqlite_db._checkpoint.result(timeout=10)
    assert checkpointed_in == ["sqlite-checkpoint_0"]
    assert _rows_in_the_database_file(sqlite_db) == 5


def test_the_log_starts_again_after_a_checkpoint_that_a_write_went_on_beside(
    sqlite_db: Database,
) -> None:
    """A checkpoint runs beside the writes: here one is open while it copies, and commits
    after. The checkpoint still ends with the log copied to its end, so the next write starts
    the log again, instead of appending to it for good (under steady load it never did)."""
    copied, committing, writing = threading.Event(), threading.Event(), threading.Event()

    @event.listens_for(sqlite_db.engine, "after_cursor_execute")
    def first_copy_done(_conn: Connection, _cursor: object, statement: str, *_: object) -> None:
        if "wal_checkpoint" in statement:
            copied.set()

    def open_write(conn: Connection) -> None:
        _throttle_row("open@example.com")(conn)
        writing.set()
        committing.wait(timeout=10)

    async def writes(numbers: range) -> None:
        for n in numbers:
            await sqlite_db.write(_throttle_row(f"w{n}@example.com"))

    asyncio.run(writes(range(20)))
    writer = threading.Thread(target=sqlite_db.write_sync, args=(open_write,))
    writer.start()
    assert writing.wait(timeout=10)
    checkpoint = threading.Thread(target=sqlite_db.checkpoint)
    checkpoint.start()
    assert copied.wait(timeout=10)  # the first copy ended with the write still open
    committing.set()
    writer.join(timeout=10)
    checkpoint.join(timeout=10)

    asyncio.run(writes(range(20, 21)))
    with sqlite_db.engine.connect() as conn:
        _, frames, _ = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
    assert frames < 5  # the last commit's pages only, not the 22 commits' (about 60)
