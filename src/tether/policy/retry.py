"""`Retry`: classified retries with exponential backoff, full jitter and Retry-After.

tether's only retry layer (provider SDKs are built with their own retries off). It sits
innermost in each tier of a fallback chain, inside that tier's circuit breaker, so a
retry never re-runs the chain and a breaker sees one outcome per retried call.

The first attempt is made directly: a call that succeeds pays for one `try` and nothing
else. Only after a retryable failure does tenacity take over (built once per policy and
copied per retried call); running every call through tenacity would cost about 17 µs.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tenacity import AsyncRetrying, RetryCallState, stop_after_attempt

from tether.errors import ConfigError, ModelError, ToolExecutionError, ToolTimeout
from tether.messages import CallNext, EffectPolicy, RunState
from tether.policy.clock import SYSTEM_CLOCK, Clock

__all__ = ["Retry", "RetryAttempt", "RetryPolicy", "is_retryable"]


def is_retryable(exc: BaseException, *, tool_retryable: bool) -> bool:
    """Whether another attempt at the call that raised `exc` may succeed.

    Retried: a `ModelError` whose `retryable` is set (429, 408, 409, 5xx, timeouts,
    dropped connections) and, for a tool that may run twice (`tool_retryable`), a
    `ToolTimeout` or a `ToolExecutionError`. Never retried: a bad request or key
    (`ModelAuthError`, 400, 404), an open circuit, a stopped run (limits, budget, rate
    limits), invalid arguments, an unknown tool, a `ToolError` the tool raised itself (a
    message for the model), cancellation, and anything that is not a tether error.
    """
    if isinstance(exc, ModelError):
        return exc.retryable
    if isinstance(exc, ToolTimeout | ToolExecutionError):
        return tool_retryable
    return False


@dataclass(frozen=True, slots=True)
class RetryAttempt:
    """One failed attempt about to be retried, as handed to `Retry(on_retry=...)`."""

    target: str
    """What is retried: `model:<name>` or `tool:<name>`."""
    attempt: int
    """The attempt that failed, from 1."""
    wait: float
    """Seconds until the next attempt."""
    error: BaseException
    run: RunState


def _check_number(name: str, value: object, *, minimum: float, inclusive: bool = True) -> None:
    ok = (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and (value >= minimum if inclusive else value > minimum)
    )
    if not ok:
        bound = f">= {minimum}" if inclusive else f"> {minimum}"
        raise ConfigError(f"Retry.{name} must be a finite number of seconds {bound}, got {value!r}")


def _check_count(name: str, value: object) -> None:
    if not (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        raise ConfigError(
            f"Retry.{name} must be an int >= 1 (total attempts; 1 = no retry), got {value!r}"
        )


@dataclass(frozen=True, slots=True)
class Retry:
    """How failed model and tool calls are retried.

    Waits use full jitter: attempt `n` failed, wait `uniform(0, min(cap, base * 2**(n-1)))`.
    When the provider said how long to wait (`ModelError.retry_after`, from `Retry-After`),
    the wait is at least that long; if that is longer than `max_retry_after`, the error is
    raised at once instead, so a fallback chain moves on to its next tier.

    Args:
        attempts: Total attempts for a model call (1 = no retry).
        tool_attempts: Total attempts for a tool call, unless the tool says
            `@tool(retries=N)` (then `N + 1`). A tool with `retryable=False` is never retried.
        base: Seconds; the backoff bound after the first failure, doubling after each.
        cap: Seconds; the largest jittered wait.
        max_retry_after: Seconds; a longer provider `Retry-After` is not waited for.
        clock: Where waits sleep (`tether.testing.FakeClock` in tests).
        seed: Seed for the jitter, for reproducible waits in tests.
        on_retry: Called with a `RetryAttempt` before each wait (to log it, count it).

    Example:
        ```python
        retry = Retry(attempts=4, base=1.0)
        policy = retry.for_model("openai:gpt-4.1-mini")  # an EffectPolicy, or None
        ```
    """

    attempts: int = 3
    tool_attempts: int = 1
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 60.0
    clock: Clock = SYSTEM_CLOCK
    seed: int | None = None
    on_retry: Callable[[RetryAttempt], None] | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        _check_count("attempts", self.attempts)
        _check_count("tool_attempts", self.tool_attempts)
        _check_number("base", self.base, minimum=0)
        _check_number("cap", self.cap, minimum=0)
        _check_number("max_retry_after", self.max_retry_after, minimum=0)
        if self.seed is not None and (
            not isinstance(self.seed, int) or isinstance(self.seed, bool)
        ):
            raise ConfigError(f"Retry.seed must be an int or None, got {self.seed!r}")

    def for_model(self, model: str) -> EffectPolicy | None:
        """The retry policy for calls to `model` (`provider:model`); `None` if `attempts` is 1."""
        if self.attempts <= 1:
            return None
        return ModelRetryPolicy(self, f"model:{model}", self.attempts, tool_retryable=False)

    def for_tool(self, tool: Any) -> EffectPolicy | None:
        """The retry policy for calls to `tool` (a `Tool`); `None` if it is not retried.

        Reads `tool.name`, `tool.retries` (extra attempts, or `None` for `tool_attempts`)
        and `tool.retryable`. Put the policy in that tool's chain only.
        """
        if not getattr(tool, "retryable", True):
            return None
        retries: int | None = getattr(tool, "retries", None)
        attempts = self.tool_attempts if retries is None else retries + 1
        if attempts <= 1:
            return None
        return ToolRetryPolicy(self, f"tool:{tool.name}", attempts, tool_retryable=True)


class RetryPolicy:
    """Retries one target's failed calls as its `Retry` config says (built by `Retry`)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model", "tool"})
    __slots__ = ("_random", "_retrying", "attempts", "config", "target", "tool_retryable")

    def __init__(self, config: Retry, target: str, attempts: int, *, tool_retryable: bool) -> None:
        self.config = config
        self.target = target
        self.attempts = attempts
        self.tool_retryable = tool_retryable
        self._random = random.Random(config.seed)
        self._retrying = AsyncRetrying(
            sleep=config.clock.sleep,
            stop=stop_after_attempt(attempts),
            wait=self._wait,
            retry=self._should_retry,
            before_sleep=self._before_sleep if config.on_retry is not None else None,
            reraise=True,
        )

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.target!r}, attempts={self.attempts})"

    async def __call__(self, effect: Any, call_next: CallNext) -> Any:
        try:
            return await call_next(effect)
        except Exception as exc:
            if not self._should_retry_error(exc):
                raise
            first = exc
        # Out of the `except` block, so later errors do not chain onto the first one.
        return await self._retry(effect, call_next, first)

    async def _retry(self, effect: Any, call_next: CallNext, first: BaseException) -> Any:
        pending = [first]

        async def attempt(effect: Any) -> Any:
            if pending:  # tenacity's attempt 1 is the one that already failed
                raise pending.pop()
            return await call_next(effect)

        # A copy per retried call: tenacity keeps per-call bookkeeping on the object.
        return await self._retrying.copy()(attempt, effect)

    # -- tenacity callables ------------------------------------------------------------

    def _should_retry_error(self, exc: BaseException) -> bool:
        if not is_retryable(exc, tool_retryable=self.tool_retryable):
            return False
        retry_after = getattr(exc, "retry_after", None)
        return retry_after is None or retry_after <= self.config.max_retry_after

    def _should_retry(self, state: RetryCallState) -> bool:
        outcome = state.outcome
        if outcome is None or not outcome.failed:
            return False
        exc = outcome.exception()
        return exc is not None and self._should_retry_error(exc)

    def _wait(self, state: RetryCallState) -> float:
        config = self.config
        # The exponent is bounded so that many attempts cannot overflow a float.
        bound = min(config.cap, config.base * 2.0 ** min(state.attempt_number - 1, 64))
        wait = self._random.uniform(0, bound)
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            wait = max(float(retry_after), wait)
        return wait

    def _before_sleep(self, state: RetryCallState) -> None:
        on_retry = self.config.on_retry
        outcome = state.outcome
        if on_retry is None or outcome is None:
            return
        exc = outcome.exception()
        effect = state.args[0]
        assert exc is not None
        on_retry(
            RetryAttempt(self.target, state.attempt_number, state.upcoming_sleep, exc, effect.run)
        )


class ModelRetryPolicy(RetryPolicy):
    """Retries one model tier's failed calls."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model"})
    __slots__ = ()


class ToolRetryPolicy(RetryPolicy):
    """Retries one tool's failed calls."""

    kinds: ClassVar[frozenset[str]] = frozenset({"tool"})
    __slots__ = ()
