"""Shared fixtures: every test starts from settings read afresh and default logging;
`database_url` is a fresh real database (a SQLite file, then a PostgreSQL database of
its own) and `store` a `Store` on it, for any test that asks."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.databases import BACKENDS, open_database
from tether.observe import configure_logging
from tether.settings import get_settings
from tether.store import Store

_PROVIDER_VARIABLES = (
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "ANTHROPIC_BASE_URL",
    "TETHER_DEFAULT_MODEL",
    "TETHER_OPENAI_API_KEY",
    "TETHER_OPENAI_BASE_URL",
    "TETHER_ANTHROPIC_API_KEY",
    "TETHER_ANTHROPIC_BASE_URL",
)


@pytest.fixture(autouse=True)
def _fresh_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # A developer's real keys must never reach a test (nor a test's fake keys leak out).
    for name in _PROVIDER_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()
    configure_logging()  # back to the default level, in case a test changed it


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty database's URL: a SQLite file, or a new PostgreSQL database
    (dropped afterwards; skipped without a server unless CI requires one)."""
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
