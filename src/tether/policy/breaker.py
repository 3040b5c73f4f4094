"""`Breaker`: a circuit breaker per model deployment and per tool.

Closed, it lets calls through and counts availability failures; `failures` of them
within `window` seconds open it. Open, calls fail fast with `CircuitOpen` (a fallback
chain moves on at once) until `cooldown` has passed; then it is half-open and lets
`probes` calls through: if all succeed it closes, if one fails it opens again.

State lives in a `BreakerStore` (async, so a database can share it between processes):
`InMemoryBreakerStore` keeps it in this process, `SharedBreakerStore` in the database,
for every process on it (the durable runtime's default).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tether.errors import CircuitOpen, ConfigError, ModelError, ToolExecutionError, ToolTimeout
from tether.messages import CallNext, EffectPolicy
from tether.policy.circuits import (
    BreakerState,
    BreakerStore,
    InMemoryBreakerStore,
    SharedBreakerStore,
)
from tether.policy.clock import SYSTEM_CLOCK, Clock

__all__ = [
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStore",
    "InMemoryBreakerStore",
    "SharedBreakerStore",
    "is_availability_failure",
]


def is_availability_failure(exc: BaseException) -> bool:
    """Whether `exc` says the target is unavailable (and so counts against its breaker).

    Counted: a retryable `ModelError` (429, 5xx, timeouts, dropped connections), a
    `ToolTimeout`, a `ToolExecutionError`. Not counted: a bad request or key, invalid
    arguments, a `ToolError` the tool raised itself, a stopped run, cancellation.
    """
    if isinstance(exc, ModelError):
        return exc.retryable
    return isinstance(exc, ToolTimeout | ToolExecutionError)


def _check(name: str, value: object, *, integer: bool) -> None:
    if integer:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 1
        form = "an int >= 1"
    else:
        ok = (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value > 0
        )
        form = "a finite number of seconds > 0"
    if not ok:
        raise ConfigError(f"Breaker.{name} must be {form}, got {value!r}")


@dataclass(frozen=True)
class Breaker:
    """When a model deployment or a tool is taken out of service, and for how long.

    Args:
        failures: Availability failures within `window` that open the circuit.
        window: Seconds over which failures are counted.
        cooldown: Seconds an open circuit fails fast before it lets probes through.
        probes: Calls let through while half-open; all must succeed to close it.
        store: Where the state lives; share one to share circuits between configs.
        clock: Where the time is read (`tether.testing.FakeClock` in tests).

    Example:
        ```python
        breaker = Breaker(failures=3, cooldown=10)
        policy = breaker.for_model("openai:gpt-4.1-mini")  # key "model:openai:gpt-4.1-mini"
        ```
    """

    failures: int = 5
    window: float = 60.0
    cooldown: float = 30.0
    probes: int = 1
    store: BreakerStore = field(default_factory=InMemoryBreakerStore)
    clock: Clock = SYSTEM_CLOCK

    def __post_init__(self) -> None:
        _check("failures", self.failures, integer=True)
        _check("window", self.window, integer=False)
        _check("cooldown", self.cooldown, integer=False)
        _check("probes", self.probes, integer=True)

    def for_model(self, model: str) -> EffectPolicy:
        """The breaker policy for calls to `model` (`provider:model`), key `model:<model>`."""
        return ModelBreakerPolicy(self, f"model:{model}")

    def for_tool(self, tool: Any) -> EffectPolicy:
        """The breaker policy for calls to `tool` (reads `tool.name`), key `tool:<name>`."""
        return ToolBreakerPolicy(self, f"tool:{tool.name}")

    async def state(self, key: str) -> BreakerState:
        """The state of `key`'s circuit now: `closed`, `open` or `half_open`."""
        return await self.store.state(key, self.clock.now(), self)


class BreakerPolicy:
    """Guards one target with its circuit (built by `Breaker.for_model` / `for_tool`)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model", "tool"})
    __slots__ = ("_clock", "_closed", "_store", "config", "key")

    def __init__(self, config: Breaker, key: str) -> None:
        self.config = config
        self.key = key
        self._store = config.store
        # A store that can tell a closed circuit without waiting says so (optional).
        self._closed: Callable[[str], bool] | None = getattr(config.store, "closed", None)
        self._clock = config.clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    async def state(self) -> BreakerState:
        """The state of this target's circuit now."""
        return await self.config.state(self.key)

    async def __call__(self, effect: Any, call_next: CallNext) -> Any:
        store, key, cfg, clock = self._store, self.key, self.config, self._clock
        closed = self._closed
        if closed is not None and closed(key):
            wait = None  # known closed here and now: no store coroutine per call
        else:
            wait = await store.before_call(key, clock.now(), cfg)
        if wait is None:  # closed: only a failure is news
            try:
                return await call_next(effect)
            except Exception as exc:
                if is_availability_failure(exc):
                    await store.record(key, False, clock.now(), cfg)
                raise
        if wait > 0:
            raise CircuitOpen(
                f"{key} failed too often recently; calls fail fast for {wait:.1f}s more. "
                "Add a fallback, or wait for it to recover",
                target=key,
                retry_after=wait,
            )
        ok: bool | None = None
        try:
            result = await call_next(effect)
            ok = True
            return result
        except Exception as exc:
            ok = not is_availability_failure(exc)
            raise
        finally:  # a cancelled probe (ok None) frees its slot
            await store.record(key, ok, clock.now(), cfg)


class ModelBreakerPolicy(BreakerPolicy):
    """The breaker of one model tier."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model"})
    __slots__ = ()


class ToolBreakerPolicy(BreakerPolicy):
    """The breaker of one tool."""

    kinds: ClassVar[frozenset[str]] = frozenset({"tool"})
    __slots__ = ()
