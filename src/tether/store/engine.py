"""One database URL, one SQLAlchemy engine, tuned per backend.

SQLite (the default, a file and no server) runs in WAL mode with `synchronous=NORMAL`:
a commit is an append to the log, not an fsync of the database, which is what makes a
journaled step cheap (the rollback journal with full sync costs about ten times as
much per step). Readers never block the writer. Writers take the lock at `BEGIN`
(`IMMEDIATE`), so two processes never deadlock upgrading a read lock, and wait up to
30 s for each other instead of failing with "database is locked".

PostgreSQL (`postgresql://...`) goes through psycopg 3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import make_url

from tether.errors import ConfigError

__all__ = ["create_engine", "is_sqlite", "normalize_url"]


def normalize_url(url: str) -> str:
    """`url` with the driver tether uses (psycopg 3 for PostgreSQL).

    Raises:
        ConfigError: not a SQLite or PostgreSQL URL.
    """
    try:
        parsed = make_url(url)
    except Exception as exc:
        raise ConfigError(
            f"TETHER_DATABASE_URL {url!r} is not a database URL; use sqlite:///path/to.db "
            "or postgresql://user@host:5432/dbname"
        ) from exc
    backend = parsed.get_backend_name()
    if backend == "postgresql":
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    if backend == "sqlite":
        return parsed.set(drivername="sqlite").render_as_string(hide_password=False)
    raise ConfigError(
        f"TETHER_DATABASE_URL must be sqlite:///... or postgresql://..., got a {backend!r} URL"
    )


def is_sqlite(engine: sa.Engine) -> bool:
    """Whether `engine` is on SQLite."""
    return engine.dialect.name == "sqlite"


def create_engine(url: str, **kwargs: Any) -> sa.Engine:
    """An engine for `url`; a SQLite file's folder is created, and WAL is switched on.
    A PostgreSQL engine keeps at most 10 connections unless `kwargs` say otherwise.

    Raises:
        ConfigError: the URL is not SQLite or PostgreSQL, or names an in-memory SQLite
            database (each connection would see its own, empty, database).
    """
    url = normalize_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        # Bounded: many worker processes share one server's max_connections (100 by
        # default); a run waits for a pooled connection rather than failing to connect.
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 5)
        kwargs.setdefault("pool_pre_ping", True)
        return sa.create_engine(url, **kwargs)
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file::memory:"):
        raise ConfigError(
            "TETHER_DATABASE_URL names an in-memory SQLite database; durable runs need a "
            "file, e.g. sqlite:///.tether/tether.db"
        )
    path = Path(database).expanduser()
    if str(path) != database:  # `~/...`: SQLite itself would open a folder named `~`
        url = parsed.set(database=str(path)).render_as_string(hide_password=False)
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(url, **kwargs)
    event.listen(engine, "connect", _tune_sqlite)
    return engine


def _tune_sqlite(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = "IMMEDIATE"
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()
