"""Real databases for tests: a SQLite file, or a throwaway PostgreSQL database.

tether's store runs on SQLite (a file, the default) and on PostgreSQL, and the two differ
where it matters (locking, isolation, `RETURNING`, float handling), so the store's tests
run against both. This module is the one place that knows how to get each:

- `sqlite_url(tmp_path)`: a URL of a SQLite file under a test's `tmp_path`.
- `fresh_postgres_database()`: a context manager that creates an empty PostgreSQL
  database (`tether_t_<random hex>`) on the test server, yields its URL and drops it
  afterwards, so no test ever sees another's rows.
- `postgres_available()` / `postgres_unavailable_reason()`: whether that server accepts
  connections (checked once per process), to skip PostgreSQL cases on a machine without.
- `open_database(backend, tmp_path)`: either of the two by name, the body of a
  `database_url` fixture parametrized over `BACKENDS`.

The server is `TETHER_TEST_POSTGRES_URL` (default
`postgresql://postgres@127.0.0.1:5432/test`, trust auth; `.ci/run` sets one up). Its
user must be allowed to create databases. When `TETHER_TEST_REQUIRE_POSTGRES` is set
(CI sets it), an unreachable server fails the PostgreSQL cases instead of skipping them.

Example (a folder's `conftest.py`):
    ```python
    @pytest.fixture(params=BACKENDS)
    def database_url(request, tmp_path):
        with open_database(request.param, tmp_path) as url:
            yield url
    ```
"""

from __future__ import annotations

import functools
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import NullPool

__all__ = [
    "BACKENDS",
    "DEFAULT_POSTGRES_URL",
    "POSTGRES_URL_VARIABLE",
    "REQUIRE_POSTGRES_VARIABLE",
    "fresh_postgres_database",
    "open_database",
    "postgres_available",
    "postgres_unavailable_reason",
    "postgres_url",
    "sqlite_url",
]

BACKENDS = ("sqlite", "postgresql")
"""The backends a store test runs against, as fixture parameters."""

POSTGRES_URL_VARIABLE = "TETHER_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
REQUIRE_POSTGRES_VARIABLE = "TETHER_TEST_REQUIRE_POSTGRES"

_DATABASE_PREFIX = "tether_t_"
_CONNECT_TIMEOUT_S = 3


def sqlite_url(tmp_path: Path, name: str = "tether.db") -> str:
    """The URL of a SQLite file `name` in `tmp_path` (created on first connection)."""
    return f"sqlite:///{tmp_path / name}"


def postgres_url() -> str:
    """The test server's URL (`TETHER_TEST_POSTGRES_URL`, or the local default)."""
    return os.environ.get(POSTGRES_URL_VARIABLE) or DEFAULT_POSTGRES_URL


def _with_database(url: str, database: str) -> URL:
    """`url` on `database`, through psycopg 3 (the driver tether itself uses)."""
    return make_url(url).set(drivername="postgresql+psycopg", database=database)


def _admin_engine() -> sa.Engine:
    """An AUTOCOMMIT engine on the server's `postgres` database (CREATE/DROP DATABASE
    cannot run inside a transaction, nor on the database being dropped)."""
    return sa.create_engine(
        _with_database(postgres_url(), "postgres"),
        isolation_level="AUTOCOMMIT",
        poolclass=NullPool,
        connect_args={"connect_timeout": _CONNECT_TIMEOUT_S},
    )


@functools.cache
def postgres_unavailable_reason() -> str | None:
    """None if the test server accepts connections, else why not (checked once)."""
    engine = _admin_engine()
    try:
        with engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))
    except Exception as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
        safe_url = make_url(postgres_url()).render_as_string(hide_password=True)
        return f"PostgreSQL at {safe_url} is not reachable ({type(exc).__name__}: {first_line})"
    finally:
        engine.dispose()
    return None


def postgres_available() -> bool:
    """Whether the test server (`TETHER_TEST_POSTGRES_URL`) accepts connections."""
    return postgres_unavailable_reason() is None


def _skip_or_fail_without_postgres() -> None:
    reason = postgres_unavailable_reason()
    if reason is None:
        return
    if os.environ.get(REQUIRE_POSTGRES_VARIABLE):
        pytest.fail(f"{reason}, and {REQUIRE_POSTGRES_VARIABLE} is set")
    pytest.skip(f"{reason}; set {POSTGRES_URL_VARIABLE} to a server that is")


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Create an empty database on the test server, yield its `postgresql://` URL, then
    drop it (`WITH (FORCE)`: connections a test left open do not keep it alive)."""
    name = f"{_DATABASE_PREFIX}{secrets.token_hex(8)}"
    admin = _admin_engine()
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            url = make_url(postgres_url()).set(database=name)
            yield url.render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def open_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of `backend` (one of `BACKENDS`) for one test: its URL.

    PostgreSQL cases are skipped when the server is unreachable (failed instead when
    `TETHER_TEST_REQUIRE_POSTGRES` is set).
    """
    if backend == "sqlite":
        yield sqlite_url(tmp_path)
    elif backend == "postgresql":
        _skip_or_fail_without_postgres()
        with fresh_postgres_database() as url:
            yield url
    else:
        raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
