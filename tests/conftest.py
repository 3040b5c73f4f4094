"""Shared fixtures: every test starts from settings read afresh and default logging."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tether.observe import configure_logging
from tether.settings import get_settings

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
