"""Every store test runs against SQLite (a file in `tmp_path`) and PostgreSQL (a database
of its own, dropped afterwards): `database_url` and `store` (in `tests/conftest.py`) are
parametrized over both."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tether.store import Store


@pytest.fixture
def engine(store: Store) -> sa.Engine:
    """The store's engine, to read or set columns the API does not expose."""
    return store.engine
