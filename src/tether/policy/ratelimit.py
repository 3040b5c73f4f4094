"""`RateLimits`: requests and tokens per minute per model deployment, requests per user.

Each limit is a token bucket whose capacity is the per-minute amount and which refills
continuously at that amount per 60 s, starting full. So, precisely: over any interval
of T seconds a bucket grants at most `capacity + capacity * T / 60`, that is at most
twice the per-minute amount in any 60 s window (a full bucket spent at once, then a
minute of refill), and the per-minute amount on average over any longer run.

A call that finds no capacity waits for it, through the configured `Clock`, as long as
its total wait stays within `max_wait`; past that it fails at once with `RateLimited`
and `retry_after` (a fallback chain moves on to its next tier). Token limits take the
call's worst case before it is made (estimated prompt tokens plus `max_tokens`) and
settle it to the usage the provider reports after. The bound above holds for the
settled amounts while those stay within the worst case; a response that used more is
charged in full, and the debt delays later calls.

Buckets live in a `RateLimitStore`: in memory by default, shared by every agent built
with the same `RateLimits`; `SharedRateLimitStore` keeps them in the database, shared by
every process on it (the durable runtime's default).
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Protocol

from tether.errors import CircuitOpen, ConfigError, RateLimited
from tether.messages import CallNext, EffectPolicy, ModelEffect, ModelResponse
from tether.policy.clock import SYSTEM_CLOCK, Clock
from tether.policy.shared import StateRows
from tether.policy.tokens import estimate_prompt_tokens

__all__ = [
    "DeploymentRateLimit",
    "InMemoryRateLimitStore",
    "RateLimitStore",
    "RateLimits",
    "SharedRateLimitStore",
    "UserRateLimit",
]


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


def _check_limit(name: str, value: object) -> None:
    if value is not None and not (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1
    ):
        raise ConfigError(
            f"RateLimits.{name} must be an int >= 1 per minute (or None), got {value!r}"
        )


@dataclass(frozen=True)
class RateLimits:
    """Requests and tokens per minute per model deployment, and requests per user.

    Args:
        requests_per_minute: Requests to each model deployment (each tier of a chain).
        tokens_per_minute: Tokens to each model deployment: the estimated prompt plus
            `max_tokens` before the call, settled to the reported usage after.
        user_requests_per_minute: Model requests per user (`agent.run(..., user=...)`);
            runs without a user share the key `"anonymous"`.
        max_wait: Seconds a call may wait for capacity, in all; a longer wait raises
            `RateLimited` at once, with `retry_after`.
        default_max_tokens: The output counted for a request that sets no `max_tokens`.
        store: Where the buckets live; share one to share limits between configs.
        clock: Where waits happen (`tether.testing.FakeClock` in tests).

    Example:
        ```python
        limits = RateLimits(requests_per_minute=500, tokens_per_minute=200_000,
                            user_requests_per_minute=20, max_wait=5.0)
        agent = Agent(model=..., policy=Policy(rate_limits=limits))
        ```
    """

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    user_requests_per_minute: int | None = None
    max_wait: float = 10.0
    default_max_tokens: int = 4096
    store: RateLimitStore = field(default_factory=InMemoryRateLimitStore)
    clock: Clock = SYSTEM_CLOCK

    def __post_init__(self) -> None:
        _check_limit("requests_per_minute", self.requests_per_minute)
        _check_limit("tokens_per_minute", self.tokens_per_minute)
        _check_limit("user_requests_per_minute", self.user_requests_per_minute)
        _check_limit("default_max_tokens", self.default_max_tokens)
        wait = self.max_wait
        if not (isinstance(wait, int | float) and math.isfinite(wait) and wait >= 0):
            raise ConfigError(f"RateLimits.max_wait must be finite seconds >= 0, got {wait!r}")

    def for_model(self, model: str) -> EffectPolicy | None:
        """The limiter of deployment `model`, for its tier of the chain (None if unset)."""
        if self.requests_per_minute is None and self.tokens_per_minute is None:
            return None
        return DeploymentRateLimit(self, model)

    def per_user(self) -> EffectPolicy | None:
        """The per-user request limiter, a run layer (None if unset)."""
        if self.user_requests_per_minute is None:
            return None
        return UserRateLimit(self)


async def _take(
    limits: RateLimits, key: str, amount: float, per_minute: int, started: float, what: str
) -> None:
    """Take `amount` from bucket `key`, waiting while the total wait fits `max_wait`.

    `what` names the limit in the error, e.g. "requests per minute for model x"."""
    clock, store = limits.clock, limits.store
    rate = per_minute / 60.0
    while True:
        now = clock.now()
        wait = await store.acquire(key, amount, rate, per_minute, now)
        if wait <= 0.0:
            return
        if now - started + wait > limits.max_wait:
            raise RateLimited(
                f"the limit of {per_minute} {what} is reached; it has room again in "
                f"{wait:.3g} s, more than RateLimits(max_wait={limits.max_wait}) allows. "
                "Retry later, raise the limit or max_wait, or add a fallback model",
                retry_after=wait,
            )
        await clock.sleep(wait)


class DeploymentRateLimit:
    """Requests and tokens per minute of one model deployment (one tier of a chain)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model"})
    __slots__ = ("_rpm_key", "_tpm_key", "limits", "model")

    def __init__(self, limits: RateLimits, model: str) -> None:
        self.limits = limits
        self.model = model
        self._rpm_key = f"model:{model}:rpm"
        self._tpm_key = f"model:{model}:tpm"

    def __repr__(self) -> str:
        return f"DeploymentRateLimit({self.model!r})"

    async def __call__(self, effect: ModelEffect, call_next: CallNext) -> Any:
        limits = self.limits
        rpm, tpm = limits.requests_per_minute, limits.tokens_per_minute
        started = limits.clock.now()
        if rpm is not None:
            await _take(
                limits,
                self._rpm_key,
                1.0,
                rpm,
                started,
                f"requests per minute for model {self.model}",
            )
        taken = 0.0
        if tpm is not None:
            request = effect.request
            worst = estimate_prompt_tokens(request, effect.run) + (
                request.settings.max_tokens or limits.default_max_tokens
            )
            # A call bigger than the whole bucket waits for a full one; the rest is debt.
            taken = float(min(worst, tpm))
            try:
                await _take(
                    limits,
                    self._tpm_key,
                    taken,
                    tpm,
                    started,
                    f"tokens per minute for model {self.model}",
                )
            except BaseException:
                await self._refund(rpm, None, 0.0)
                raise
        try:
            response: ModelResponse = await call_next(effect)
        except CircuitOpen:  # nothing was sent
            await self._refund(rpm, tpm, taken)
            raise
        except BaseException:  # a request went out; no usage came back to charge
            await self._refund(None, tpm, taken)
            raise
        if tpm is not None:
            usage = response.usage
            used = usage.input_tokens + usage.output_tokens
            if used:  # a response that reports no usage keeps its worst case
                await limits.store.settle(
                    self._tpm_key, taken, used, tpm / 60.0, tpm, limits.clock.now()
                )
        return response

    async def _refund(self, rpm: int | None, tpm: int | None, taken: float) -> None:
        limits = self.limits
        now = limits.clock.now()
        if rpm is not None:
            await limits.store.settle(self._rpm_key, 1.0, 0.0, rpm / 60.0, rpm, now)
        if tpm is not None:
            await limits.store.settle(self._tpm_key, taken, 0.0, tpm / 60.0, tpm, now)


class UserRateLimit:
    """Model requests per minute per user (`RunState.user`, else `"anonymous"`)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model"})
    __slots__ = ("limits", "rpm")

    def __init__(self, limits: RateLimits) -> None:
        self.limits = limits
        self.rpm = limits.user_requests_per_minute or 1

    def __repr__(self) -> str:
        return f"UserRateLimit({self.limits.user_requests_per_minute}/min)"

    async def __call__(self, effect: ModelEffect, call_next: CallNext) -> Any:
        limits = self.limits
        user = effect.run.user or "anonymous"
        await _take(
            limits,
            f"user:{user}:rpm",
            1.0,
            self.rpm,
            limits.clock.now(),
            f"requests per minute for user {user!r}",
        )
        return await call_next(effect)
