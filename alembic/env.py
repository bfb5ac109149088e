"""Alembic environment: the URL comes from the app's settings, never from alembic.ini."""

import logging.config

from alembic import context
from alembic.runtime.migration import MigrationInfo
from sqlalchemy import text

from database import migration_connection, render_item
from models import Base
from settings import Settings

config = context.config
if config.config_file_name is not None and not logging.getLogger().handlers:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)

# Any number of workers may start at once and each tries to migrate; this lock lets one
# through at a time and the rest then find the schema already at head.
MIGRATION_LOCK_ID = 0x6F72646572  # "order"


def database_url() -> str:
    # The app passes its URL explicitly (tests, start-up); the alembic CLI uses the settings.
    return config.get_main_option("sqlalchemy.url") or Settings().database_url


def record_applied(*, step: MigrationInfo, **_: object) -> None:
    """Tell the caller (database.upgrade_to_head) what this run applied, if anything."""
    config.attributes.setdefault("applied", []).append(step.up_revision_id)


def configure(**kwargs: object) -> None:
    is_sqlite = database_url().startswith("sqlite")
    context.configure(
        target_metadata=Base.metadata,
        render_as_batch=is_sqlite,
        # Our SQLite connections run DDL inside BEGIN ... COMMIT, so a failed migration
        # rolls back whole, and the version check happens under the same write lock.
        transactional_ddl=True,
        compare_type=True,
        render_item=render_item,
        on_version_apply=record_applied,
        **kwargs,
    )


def run_migrations_offline() -> None:
    configure(url=database_url(), literal_binds=True, dialect_opts={"paramstyle": "named"})
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    with migration_connection(database_url()) as connection:
        configure(connection=connection)
        with context.begin_transaction():
            if connection.dialect.name == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID}
                )
            context.run_migrations()
            if connection.dialect.name == "sqlite":
                broken = connection.execute(text("PRAGMA foreign_key_check")).fetchall()
                if broken:
                    raise RuntimeError(f"migration left broken foreign keys: {broken}")


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
