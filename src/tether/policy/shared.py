"""`StateRows`: what a shared breaker or rate-limit store needs of a database.

`tether.store.PolicyStates` is one (a table on `TETHER_DATABASE_URL`); the durable
runtime hands it to `SharedBreakerStore` and `SharedRateLimitStore`, so every process
on the database shares circuits and buckets. Its calls block (they are database round
trips), so the shared stores run them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

__all__ = ["StateRows"]

T = TypeVar("T")


class StateRows(Protocol):
    """JSON states by key, read and changed atomically across processes."""

    def read(self, key: str) -> tuple[dict[str, Any] | None, float]:
        """`key`'s state (None if never written) and the shared time now, in seconds."""
        ...

    def transact(
        self, key: str, change: Callable[[dict[str, Any] | None, float], tuple[Any, T]]
    ) -> T:
        """Apply `change(state, now)` with `key` locked against every other process;
        write the state it returns (unless None) and return its answer."""
        ...
