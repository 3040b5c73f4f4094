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

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tether.errors import CircuitOpen, ConfigError, RateLimited
from tether.messages import CallNext, EffectPolicy, ModelEffect, ModelResponse
from tether.policy.buckets import InMemoryRateLimitStore, RateLimitStore, SharedRateLimitStore
from tether.policy.clock import SYSTEM_CLOCK, Clock
from tether.policy.tokens import estimate_prompt_tokens

__all__ = [
    "DeploymentRateLimit",
    "InMemoryRateLimitStore",
    "RateLimitStore",
    "RateLimits",
    "SharedRateLimitStore",
    "UserRateLimit",
]


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
