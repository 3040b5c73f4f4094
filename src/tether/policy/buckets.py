"""Where rate-limit buckets live: token buckets by key, in this process
(`InMemoryRateLimitStore`) or in the database for every process on it
(`SharedRateLimitStore`). `tether.policy.ratelimit` decides what to take and when.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any, Protocol

from tether.policy.shared import StateRows

__all__ = ["InMemoryRateLimitStore", "RateLimitStore", "SharedRateLimitStore"]


class RateLimitStore(Protocol):
    """Token buckets by key. `rate_per_s` and `burst` (the capacity) come with each call,
    so a bucket needs no setup; a bucket seen for the first time starts full."""

    async def acquire(
        self, key: str, amount: float, rate_per_s: float, burst: float, now: float
    ) -> float:
        """Take `amount` from bucket `key` and return 0.0 if it holds that much now;
        else take nothing and return the seconds until it would."""
        ...

    async def settle(
        self, key: str, taken: float, used: float, rate_per_s: float, burst: float, now: float
    ) -> None:
        """Correct an earlier grant of `taken` to what the call really `used`.

        Gives back `taken - used` (never above `burst`); when `used` is larger, takes
        the excess unconditionally, which may leave the bucket in debt for later calls
        to wait out. `used=0` refunds a call that was never made.
        """
        ...


_EPSILON = 1e-9
"""Relative slack when comparing a refilled level with an amount: a caller that slept
exactly the advertised wait must not be told to wait a few ulps more."""


class _Bucket:
    __slots__ = ("burst", "level", "rate", "stamp")

    def __init__(self, level: float, stamp: float, rate: float, burst: float) -> None:
        self.level = level
        self.stamp = stamp
        self.rate = rate
        self.burst = burst

    def refill(self, now: float, rate: float, burst: float) -> float:
        self.rate, self.burst = rate, burst
        if now > self.stamp:
            self.level = min(burst, self.level + (now - self.stamp) * rate)
            self.stamp = now
        return self.level

    def take(self, amount: float, rate: float, burst: float, now: float) -> float:
        """`RateLimitStore.acquire` on this bucket."""
        level = self.refill(now, rate, burst)
        missing = amount - level
        if missing <= _EPSILON * burst:
            self.level = level - amount
            return 0.0
        return missing / rate

    def give(self, taken: float, used: float, rate: float, burst: float, now: float) -> None:
        """`RateLimitStore.settle` on this bucket."""
        self.level = min(burst, self.refill(now, rate, burst) + taken - used)


class InMemoryRateLimitStore:
    """Token buckets in this process (a `RateLimitStore`).

    Atomic under asyncio: no method awaits between reading and writing a bucket. Full
    buckets are dropped now and then, so per-user keys do not pile up.
    """

    __slots__ = ("_buckets", "_prune_at")

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._prune_at = 1024

    def __repr__(self) -> str:
        return f"InMemoryRateLimitStore(buckets={len(self._buckets)})"

    def level(self, key: str, now: float) -> float | None:
        """What bucket `key` holds at `now` (None when it is unknown, i.e. full)."""
        bucket = self._buckets.get(key)
        return None if bucket is None else bucket.refill(now, bucket.rate, bucket.burst)

    async def acquire(
        self, key: str, amount: float, rate_per_s: float, burst: float, now: float
    ) -> float:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._add(key, now, rate_per_s, burst)
        return bucket.take(amount, rate_per_s, burst, now)

    async def settle(
        self, key: str, taken: float, used: float, rate_per_s: float, burst: float, now: float
    ) -> None:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._add(key, now, rate_per_s, burst)
        bucket.give(taken, used, rate_per_s, burst, now)

    def _add(self, key: str, now: float, rate: float, burst: float) -> _Bucket:
        buckets = self._buckets
        if len(buckets) >= self._prune_at:
            for stale in [
                k for k, b in buckets.items() if b.refill(now, b.rate, b.burst) >= b.burst
            ]:
                del buckets[stale]
            self._prune_at = max(1024, 2 * len(buckets))
        bucket = buckets[key] = _Bucket(burst, now, rate, burst)
        return bucket


class SharedRateLimitStore:
    """Token buckets in a database (`StateRows`), shared by every process on it, so a
    limit of 500 requests per minute is 500 for all workers together.

    Each acquire and settle is one atomic read-modify-write of the bucket's row, timed
    by the database's clock (see `tether.store.PolicyStates`), not the policy's.

    Args:
        rows: The table, e.g. `tether.store.Store(url).policy_states`.
    """

    __slots__ = ("_rows",)

    def __init__(self, rows: StateRows) -> None:
        self._rows = rows

    def __repr__(self) -> str:
        return f"SharedRateLimitStore({self._rows!r})"

    async def acquire(
        self, key: str, amount: float, rate_per_s: float, burst: float, now: float
    ) -> float:
        change = partial(_acquire, amount, rate_per_s, burst)
        return await asyncio.to_thread(self._rows.transact, _PREFIX + key, change)

    async def settle(
        self, key: str, taken: float, used: float, rate_per_s: float, burst: float, now: float
    ) -> None:
        change = partial(_settle, taken, used, rate_per_s, burst)
        await asyncio.to_thread(self._rows.transact, _PREFIX + key, change)


_PREFIX = "ratelimit:"
"""The shared store's keys: `ratelimit:model:<name>:rpm`, `ratelimit:user:<id>:rpm`, ..."""


def _bucket_of(state: dict[str, Any] | None, rate: float, burst: float, now: float) -> _Bucket:
    if state is None:
        return _Bucket(burst, now, rate, burst)  # a bucket seen for the first time is full
    return _Bucket(state["level"], state["stamp"], rate, burst)


def _acquire(
    amount: float, rate: float, burst: float, state: dict[str, Any] | None, now: float
) -> tuple[Any, float]:
    bucket = _bucket_of(state, rate, burst, now)
    wait = bucket.take(amount, rate, burst, now)
    # A refused take changes nothing that the next reader would not work out again.
    return ({"level": bucket.level, "stamp": bucket.stamp} if wait == 0.0 else None), wait


def _settle(
    taken: float, used: float, rate: float, burst: float, state: dict[str, Any] | None, now: float
) -> tuple[Any, None]:
    bucket = _bucket_of(state, rate, burst, now)
    bucket.give(taken, used, rate, burst, now)
    return {"level": bucket.level, "stamp": bucket.stamp}, None
