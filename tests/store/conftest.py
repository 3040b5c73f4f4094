"""Every store test runs against SQLite (a file in `tmp_path`) and PostgreSQL (a database
of its own, dropped afterwards): `database_url` is parametrized over both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.databases import BACKENDS, open_database
from tether.store import Store


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database's URL: a SQLite file, or a new PostgreSQL database."""
    with open_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    """A `Store` on the fresh database (migrated)."""
    opened = Store(database_url)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def engine(store: Store) -> sa.Engine:
    """The store's engine, to read or set columns the API does not expose."""
    return store.engine
