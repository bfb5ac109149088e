"""Engine, sessions and migrations: everything that knows which database is behind the app."""

import logging
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy_utils import ChoiceType

from models import UTCDateTime
from settings import BASE_DIR, Settings

log = logging.getLogger("orders.database")

# Marks connections whose transactions take SQLite's write lock up front (BEGIN IMMEDIATE).
# A deferred transaction that reads and then writes fails with "database is locked" as soon
# as another process committed in between; taking the lock first makes writers queue instead.
IMMEDIATE = "sqlite_begin_immediate"


def make_engine(
    url: str,
    *,
    pool_size: int = 10,
    busy_timeout_ms: int = 30_000,
    foreign_keys: bool = True,
) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True)

    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_timeout=busy_timeout_ms / 1000,
        connect_args={"check_same_thread": False, "timeout": busy_timeout_ms / 1000},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: sqlite3.Connection, _record: object) -> None:
        # Take transaction control away from the sqlite3 module; "begin" below emits BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL survives a crash of the process (not of the OS) without an fsync per commit.
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """One engine and two session factories: read transactions and write transactions."""

    def __init__(self, settings: Settings) -> None:
        self.url = settings.database_url
        self.engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        )
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._writer = sessionmaker(
            self.engine.execution_options(**{IMMEDIATE: True}), expire_on_commit=False
        )

    def session(self, *, write: bool) -> Session:
        return (self._writer if write else self._reader)()

    def dispose(self) -> None:
        self.engine.dispose()


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
def session_scope(db: Database, *, write: bool = True) -> Iterator[Session]:
    """A session outside a request (CLI, scripts): commit on success, roll back on error."""
    with db.session(write=write) as session, session.begin():
        yield session
