"""Bring a database's tether tables up to date (Alembic), safely from many processes.

Every process that opens the store calls `upgrade`; when the tables are already at
the newest revision it costs one query. Otherwise one process migrates while the
others wait: PostgreSQL serializes them on an advisory lock, SQLite on a lock file
next to the database.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

__all__ = ["upgrade"]

_SCRIPTS = Path(__file__).parent / "migrations"
_VERSION_TABLE = "tether_alembic_version"
_PG_LOCK = 0x7E7E_0001  # the advisory lock key of tether's migrations


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(_SCRIPTS))
    return config


def _current(connection: sa.Connection) -> str | None:
    context = MigrationContext.configure(connection, opts={"version_table": _VERSION_TABLE})
    return context.get_current_revision()


def upgrade(engine: sa.Engine) -> None:
    """Create or migrate tether's tables to the newest revision."""
    config = _config()
    head = ScriptDirectory.from_config(config).get_current_head()
    with engine.connect() as connection:
        if _current(connection) == head:
            return
    with _exclusive(engine), engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})
        if _current(connection) == head:
            return  # another process migrated while this one waited
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextmanager
def _exclusive(engine: sa.Engine) -> Iterator[None]:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database:
        yield
        return
    with open(f"{database}.migrate.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
