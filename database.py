"""The unit of work, the engine and migrations: everything that knows which database is behind
the app, and the only module that begins, commits or rolls back a transaction."""

import asyncio
import contextvars
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from functools import cache, partial
from pathlib import Path
from typing import Concatenate, ParamSpec, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy_utils import ChoiceType
from starlette.concurrency import run_in_threadpool

from models import UTCDateTime
from settings import BASE_DIR, Settings

log = logging.getLogger("orders.database")

P = ParamSpec("P")
T = TypeVar("T")

# Marks connections whose transactions write. On SQLite they start with BEGIN IMMEDIATE, which
# takes the database's write lock up front: a deferred transaction that reads and then writes
# fails with "database is locked" as soon as another process committed in between.
IMMEDIATE = "sqlite_begin_immediate"

_WRITE_LOCKS: dict[str, threading.Lock] = {}

# Heavy reads (a count, a deep offset) of one worker run at most this many at a time; a burst
# of them waits its turn instead of taking every thread and connection the other requests use.
HEAVY_READ_THREADS = 4
# ... and on threads the OS schedules after the worker's others (nice +10, Linux): a request
# the event loop serves gets the CPU back within a scheduler tick, not after a slice of a scan.
HEAVY_READ_NICENESS = 10


# SQLite: the commit that fills the write-ahead log past its checkpoint size (1,000 pages)
# copies the log into the database file and waits for the disk twice (fsync). The event loop's
# writer never does that, so that no request waits for the disk: after every CHECKPOINT_EVERY
# of its commits (an order writes about 15 pages), a thread of its own runs the checkpoint
# (`Database.checkpoint`), which waits for no reader and no other process.
CHECKPOINT_EVERY = 64


def _on_one_core(
    conn: Connection,
    query: Callable[Concatenate[Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Run a heavy query. PostgreSQL would scan a large table with parallel workers, a core
    each, and the light queries beside it would wait for a core: it gets one."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET LOCAL max_parallel_workers_per_gather = 0")
    return query(conn, *args, **kwargs)


def _lower_this_threads_priority() -> None:
    # On Linux, setpriority with a thread id renices that thread only; elsewhere it would
    # renice the process (or fail), so heavy reads there run at normal priority.
    if sys.platform == "linux":
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), HEAVY_READ_NICENESS)


def driver_error(statement: str, params: object, exc: sqlite3.Error) -> DBAPIError:
    """SQLite's error as SQLAlchemy gives it from its own calls (an OperationalError for a lock
    not granted, an IntegrityError for a constraint, ...), for the calls it does not make
    itself: the one 503 handler and every `except SQLAlchemyError` then see it."""
    return DBAPIError.instance(statement, params, exc, sqlite3.Error)


class WriteLockBusy(Exception):
    """Another writer holds the lock, and this connection does not wait for it."""


def _is_busy(exc: BaseException) -> bool:
    """Whether an error is SQLite's "database is locked" (SQLITE_BUSY), however wrapped."""
    if isinstance(exc, WriteLockBusy):
        return True
    orig = getattr(exc, "orig", exc)
    code = getattr(orig, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


_WRITES = frozenset({"INSERT", "UPDATE", "DELETE"})


class _GuardedCursor(sqlite3.Cursor):
    """Refuses a write outside a unit of work's write transaction: alone it would not be
    atomic. Every statement on SQLite, through Core or precompiled, runs on one of these (a
    guard here rather than an engine listener costs nothing when nobody listens)."""

    def execute(self, sql: str, parameters: object = (), /) -> "sqlite3.Cursor":
        self._refuse_outside_write_transaction(sql)
        return super().execute(sql, parameters)  # type: ignore[arg-type]

    def executemany(self, sql: str, parameters: object, /) -> "sqlite3.Cursor":
        self._refuse_outside_write_transaction(sql)
        return super().executemany(sql, parameters)  # type: ignore[arg-type]

    def _refuse_outside_write_transaction(self, sql: str) -> None:
        if sql[:6].upper() in _WRITES and not self.connection.in_write_transaction:  # type: ignore[attr-defined]
            raise RuntimeError("a write outside Database.write(): it would not be atomic")


class _SQLiteConnection(sqlite3.Connection):
    """A connection that holds its process's write lock from BEGIN IMMEDIATE to COMMIT.

    SQLite's busy handler makes waiting writers poll with sleeps of up to 100 ms, so under
    load some wait for seconds while others get through. Queueing the writers of one process
    on a lock first leaves the busy handler only the contention between processes.
    """

    write_lock: threading.Lock
    # Seconds to wait for the lock; 0 for a connection that never waits (WriteLockBusy).
    lock_timeout: float
    _holding = False

    def begin_immediate(self) -> None:
        waits = self.lock_timeout > 0
        if waits:
            acquired = self.write_lock.acquire(timeout=self.lock_timeout)
        else:
            acquired = self.write_lock.acquire(blocking=False)
        if not acquired:
            if not waits:
                raise WriteLockBusy
            raise sqlite3.OperationalError("database is locked (write queue timed out)")
        self._holding = True
        try:
            self.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            self._release()
            if not waits and _is_busy(exc):
                raise WriteLockBusy from exc
            raise
        except BaseException:
            self._release()
            raise

    @property
    def in_write_transaction(self) -> bool:
        """Inside BEGIN IMMEDIATE, holding the lock: SQLite has not ended the transaction."""
        return self._holding and self.in_transaction

    def _release(self) -> None:
        if self._holding:
            self._holding = False
            self.write_lock.release()

    def cursor(self, factory: type[sqlite3.Cursor] = _GuardedCursor) -> sqlite3.Cursor:  # type: ignore[override]
        return super().cursor(factory)

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._release()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._release()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._release()


# How long a PostgreSQL statement waits for a free connection of its worker's pool (twice
# DB_POOL_SIZE); after that its request is 503, as for a database that does not answer.
POOL_WAIT_SECONDS = 30.0


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    busy_timeout_ms: int = 30_000,
    foreign_keys: bool = True,
) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(
            url,
            pool_size=pool_size,
            max_overflow=pool_size,
            pool_timeout=POOL_WAIT_SECONDS,
            pool_pre_ping=True,
        )

    engine = create_engine(
        url,
        pool_size=pool_size,
        # SQLite connections are cheap, and a request must never wait for one: waiting
        # here could stall the event loop, which runs SQLite reads inline.
        max_overflow=-1,
        connect_args={
            "check_same_thread": False,
            "timeout": busy_timeout_ms / 1000,
            "factory": _SQLiteConnection,
        },
    )
    write_lock = _WRITE_LOCKS.setdefault(str(engine.url.database), threading.Lock())

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: _SQLiteConnection, _record: object) -> None:
        # Take transaction control away from the sqlite3 module; "begin" below decides.
        dbapi_connection.isolation_level = None
        dbapi_connection.write_lock = write_lock
        dbapi_connection.lock_timeout = busy_timeout_ms / 1000
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a crash of the process (not of the OS) without an fsync per commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Reads run without BEGIN: in WAL mode each SELECT sees a consistent snapshot by
        # itself, and skipping BEGIN/ROLLBACK halves the statements of a read request.
        if conn.get_execution_options().get(IMMEDIATE, False):
            try:
                conn.connection.dbapi_connection.begin_immediate()  # type: ignore[union-attr]
            except sqlite3.Error as exc:  # raised in an event, SQLAlchemy would not wrap it
                raise driver_error("BEGIN IMMEDIATE", None, exc) from exc

    return engine


class Database:
    """The unit of work: the one way the app, its commands and its tests reach the database.

    A query (`read`) or a command (`write`) is a plain function of a Connection and its
    arguments. `write` begins the write transaction before the command runs, commits when it
    returns and rolls back when it raises, so commands never commit; on SQLite it also owns
    the write lock and the retry when another writer holds it. `read_sync` and `write_sync`
    are the same for code that is not async (the CLI, migrations' helpers, tests).
    """

    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url
        self.engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )
        # In-process SQLite reads, and writes that need not wait, cost less than a hop to a
        # worker thread; anything with a network round trip (PostgreSQL) goes to the pool.
        self.inline = self.engine.dialect.name == "sqlite"
        self._kept = threading.local()
        self._kept_connections: list[Connection] = []
        self._heavy: ThreadPoolExecutor | None = None  # made on the first heavy read
        self._inline_commits = 0
        self._checkpointer: ThreadPoolExecutor | None = None  # made on the first checkpoint
        self._checkpoint: Future[None] | None = None

    async def read(
        self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a query function with a connection, from async code."""
        if self.inline:
            return self._read_inline(query, *args, **kwargs)
        return await run_in_threadpool(self.read_sync, query, *args, **kwargs)

    async def read_heavy(
        self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read` for a query whose cost grows with the data (a count, a deep offset): never on
        the event loop, always on a thread of the heavy reads' own pool (a few, at a lower
        priority), where SQLite steps without holding the GIL, so however long it takes it
        never stalls the other requests of the worker. On PostgreSQL it runs without parallel
        workers, so that it takes one of the server's cores, not all of them."""
        if self._heavy is None:
            self._heavy = ThreadPoolExecutor(
                HEAVY_READ_THREADS, "heavy-read", initializer=_lower_this_threads_priority
            )
        # In the request's context (its id for the log lines), as run_in_threadpool does.
        call = partial(
            contextvars.copy_context().run, self.read_sync, _on_one_core, query, *args, **kwargs
        )
        return await asyncio.get_running_loop().run_in_executor(self._heavy, call)

    async def write(
        self, command: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """Run a command in one write transaction, from async code: committed when it returns,
        rolled back when it raises.

        A write may wait: for the write lock (SQLite) or a row lock (PostgreSQL), so it runs
        on the thread pool. On SQLite it is first tried inline, on a connection that does not
        wait: when nobody holds the lock, which is most of the time, that saves the hop to a
        worker thread and back. When somebody does, the attempt is rolled back and the
        command runs again on the thread pool, unless the holder is this worker's checkpoint:
        then it waits for the checkpoint on the event loop and runs inline.
        """
        if self.inline:
            while True:
                checkpoint = self._checkpoint
                checkpointing = checkpoint is not None and not checkpoint.done()
                try:
                    result = self._write_inline(command, *args, **kwargs)
                except WriteLockBusy:
                    if not checkpointing:
                        break
                    # The checkpoint's last step holds the lock for a few milliseconds: wait
                    # for it here, not on a thread of the pool with a connection of its own
                    # (a burst of writes would leave a thread and a page cache for each).
                    await asyncio.wait([asyncio.wrap_future(checkpoint)])
                else:
                    self._inline_commits += 1
                    if self._inline_commits % CHECKPOINT_EVERY == 0:
                        self._checkpoint_in_background()
                    return result
        return await run_in_threadpool(self.write_sync, command, *args, **kwargs)

    def _checkpoint_in_background(self) -> None:
        """Copy the write-ahead log into the database file, on a thread of its own; one at a
        time (a checkpoint still running covers the commits since it began)."""
        if self._checkpoint is not None and not self._checkpoint.done():
            return
        if self._checkpointer is None:
            self._checkpointer = ThreadPoolExecutor(1, "sqlite-checkpoint")
        self._checkpoint = self._checkpointer.submit(self.checkpoint)

    def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file, in two PASSIVE steps (neither
        waits for a reader). The first copies while this process's writers go on; the second,
        holding their lock, copies the few commits they added meanwhile (they wait for it
        without holding up the event loop: see `write`). Only a log copied to its end starts
        again from its beginning at the next write: copied only beside steady writes, it never
        was, and grew by every commit for as long as the load lasted. A failed checkpoint
        changes nothing (the log keeps every commit): the next one retries."""
        try:
            with self.engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
                dbapi_connection = conn.connection.dbapi_connection
                assert isinstance(dbapi_connection, _SQLiteConnection)
                with dbapi_connection.write_lock:
                    conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        except (DBAPIError, sqlite3.Error):
            log.warning("checkpoint failed", exc_info=True)

    def read_sync(
        self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`read` for code that is not async: the query runs in this thread."""
        with self.engine.connect() as conn:
            return query(conn, *args, **kwargs)

    def write_sync(
        self, command: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`write` for code that is not async: the command runs in this thread, waiting for
        the write lock if it must."""
        with self.engine.connect() as conn:
            writer = conn.execution_options(**{IMMEDIATE: True})
            return _in_write_transaction(writer, command, *args, **kwargs)

    def _write_inline(
        self, command: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        conn = self._kept_connection("writer", self._connect_writer)
        dbapi_connection = conn.connection.dbapi_connection
        assert isinstance(dbapi_connection, _SQLiteConnection)
        if dbapi_connection.write_lock.locked():
            # Refused before "begin", the connection is still good; refused in it, it is not
            # (below), and a new one starts with an empty page cache.
            raise WriteLockBusy
        try:
            return _in_write_transaction(conn, command, *args, **kwargs)
        except BaseException as exc:
            busy = _is_busy(exc)
            if busy or isinstance(exc, (DBAPIError, sqlite3.Error)):
                # The rollback undid whatever the command did, so after a busy database it
                # may run again in full. The connection cannot be kept: when the lock was
                # refused in SQLAlchemy's "begin" event, the Connection stops beginning
                # transactions and would run the next statements in autocommit.
                self._discard(conn, "writer")
            if busy:
                raise WriteLockBusy from exc
            raise

    def _connect_writer(self) -> Connection:
        conn = self.engine.connect().execution_options(**{IMMEDIATE: True})
        dbapi_connection = conn.connection.dbapi_connection
        assert isinstance(dbapi_connection, _SQLiteConnection)
        # Never wait, for the process's lock or the database's: the event loop runs this.
        dbapi_connection.lock_timeout = 0
        dbapi_connection.execute("PRAGMA busy_timeout=0")
        # Nor for the disk: `write` has its checkpoints run elsewhere (CHECKPOINT_EVERY).
        dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")
        return conn

    def _read_inline(
        self, query: Callable[Concatenate[Connection, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        conn = self._kept_connection("reader", self.engine.connect)
        try:
            return query(conn, *args, **kwargs)
        except BaseException:
            # A failed read may leave the connection in any state: start the next afresh.
            self._discard(conn, "reader")
            raise

    def _kept_connection(self, role: str, connect: Callable[[], Connection]) -> Connection:
        """The connection for `role` that this thread (the event loop's) keeps for good.

        Keeping it skips the pool's checkout and reset on every request. An idle one holds
        nothing: a reader runs without BEGIN, each SELECT its own snapshot, and a writer's
        transactions end with its command.
        """
        conn: Connection | None = getattr(self._kept, role, None)
        if conn is None or conn.closed:  # closed: by dispose(), from another thread
            conn = connect()
            setattr(self._kept, role, conn)
            self._kept_connections.append(conn)
        return conn

    def _discard(self, conn: Connection, role: str) -> None:
        setattr(self._kept, role, None)
        if conn in self._kept_connections:
            self._kept_connections.remove(conn)
        conn.invalidate()
        conn.close()

    def dispose(self) -> None:
        if self._heavy is not None:
            self._heavy.shutdown(wait=True, cancel_futures=True)
            self._heavy = None
        if self._checkpointer is not None:
            self._checkpointer.shutdown(wait=True, cancel_futures=True)
            self._checkpointer = None
        for conn in self._kept_connections:
            conn.close()
        self._kept_connections.clear()
        self.engine.dispose()


def upsert(dialect: str, table: type) -> "postgresql.Insert | sqlite.Insert":
    """An INSERT that can say what to do on a conflict (`on_conflict_do_update`), in the
    named dialect (a connection's `dialect.name`): PostgreSQL's and SQLite's share the form."""
    return (postgresql if dialect == "postgresql" else sqlite).insert(table)


def _in_write_transaction(
    conn: Connection,
    command: Callable[Concatenate[Connection, P], T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Begin, run the command, commit; roll back whatever it leaves when it raises."""
    transaction = conn.begin()
    try:
        result = command(conn, *args, **kwargs)
    except BaseException:
        if transaction.is_active:
            transaction.rollback()
        raise
    transaction.commit()
    return result


# --- migrations -------------------------------------------------------------------------

ALEMBIC_INI = BASE_DIR / "alembic.ini"


def alembic_config(url: str):  # noqa: ANN201 - alembic is imported lazily
    from alembic.config import Config

    config = Config(str(ALEMBIC_INI))
    config.set_main_option("script_location", str(BASE_DIR / "alembic"))
    # Percent signs in passwords would otherwise be read as interpolation.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def render_item(type_: str, obj: object, _autogen_context: object) -> str | bool:
    """How autogenerate writes our custom column types: as the plain types they store, so a
    migration imports nothing from sqlalchemy_utils or the models and never changes with them."""
    if type_ == "type" and isinstance(obj, ChoiceType):
        return f"sa.String(length={obj.impl.length})"
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision(url: str) -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


@cache
def code_revision() -> str | None:
    """The schema revision this code was written for (the newest migration)."""
    return head_revision("sqlite://")


def schema_revision(conn: Connection) -> str | None:
    """The revision the database's schema is at; None before any migration."""
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(conn).get_current_revision()


def upgrade_to_head(url: str) -> None:
    """Bring the database to the latest revision, logging what was done.

    Safe when several workers start at once: env.py serialises migrations with a database
    lock (an advisory lock on PostgreSQL, the write lock on SQLite).
    """
    from alembic import command

    ensure_sqlite_directory(url)
    head = head_revision(url)
    engine = make_engine(url, pool_size=1)
    try:
        current = current_revision(engine)
    finally:
        engine.dispose()
    if current == head:
        log.info("Database schema is up to date (revision %s)", head)
        return
    log.info("Database schema at revision %s; upgrading to %s", current or "<empty>", head)
    config = alembic_config(url)
    command.upgrade(config, "head")
    applied = config.attributes.get("applied", [])
    if applied:
        log.info("Database schema upgraded to revision %s (applied %s)", head, ", ".join(applied))
    else:
        log.info("Database schema is up to date (revision %s): another process migrated it", head)


def ensure_sqlite_directory(url: str) -> None:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)


@contextmanager
def migration_connection(url: str) -> Iterator[Connection]:
    """A connection for Alembic whose transactions write (on SQLite: BEGIN IMMEDIATE, so
    migrations of workers starting together take turns) with foreign keys off, since SQLite's
    batch migrations copy and drop tables, which must not cascade."""
    engine = make_engine(url, pool_size=1, foreign_keys=False)
    try:
        with engine.connect() as conn:
            yield conn.execution_options(**{IMMEDIATE: True})
    finally:
        engine.dispose()
