"""`Breaker`: a circuit breaker per model deployment and per tool.

Closed, it lets calls through and counts availability failures; `failures` of them
within `window` seconds open it. Open, calls fail fast with `CircuitOpen` (a fallback
chain moves on at once) until `cooldown` has passed; then it is half-open and lets
`probes` calls through: if all succeed it closes, if one fails it opens again.

State lives in a `BreakerStore` (async, so a database can share it between processes);
`InMemoryBreakerStore` keeps it in this process.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from tether.errors import CircuitOpen, ConfigError, ModelError, ToolExecutionError, ToolTimeout
from tether.messages import CallNext, EffectPolicy
from tether.policy.clock import SYSTEM_CLOCK, Clock

__all__ = [
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStore",
    "InMemoryBreakerStore",
    "is_availability_failure",
]

BreakerState = Literal["closed", "open", "half_open"]


def is_availability_failure(exc: BaseException) -> bool:
    """Whether `exc` says the target is unavailable (and so counts against its breaker).

    Counted: a retryable `ModelError` (429, 5xx, timeouts, dropped connections), a
    `ToolTimeout`, a `ToolExecutionError`. Not counted: a bad request or key, invalid
    arguments, a `ToolError` the tool raised itself, a stopped run, cancellation.
    """
    if isinstance(exc, ModelError):
        return exc.retryable
    return isinstance(exc, ToolTimeout | ToolExecutionError)


class BreakerStore(Protocol):
    """Where breaker state lives, keyed by target (`model:<name>`, `tool:<name>`).

    `cfg` is the `Breaker` config; a store outside `tether.policy` may type it as any
    object with `failures`, `window`, `cooldown` and `probes`. `now` is the policy's clock.
    """

    async def before_call(self, key: str, now: float, cfg: Breaker) -> float | None:
        """May a call to `key` go ahead?

        Returns `None` when the circuit is closed (go ahead; report only a failure),
        `0.0` when the call goes ahead as a half-open probe (report its outcome,
        whatever it is), or the seconds left until a call may go (the circuit is open).
        """
        ...

    async def record(self, key: str, ok: bool | None, now: float, cfg: Breaker) -> None:
        """Report how a call to `key` ended.

        `ok` is `False` for an availability failure, `True` for any other outcome (the
        target answered), `None` for no verdict (a probe was cancelled: free its slot).
        """
        ...

    async def state(self, key: str, now: float, cfg: Breaker) -> BreakerState:
        """The state of `key`'s circuit at `now` (for metrics and tests)."""
        ...


class _Circuit:
    """One key's state. Closed: the times of its last `failures` failures."""

    __slots__ = ("admitted", "failed_at", "opened_at", "probe_round", "succeeded")

    def __init__(self, failures: int) -> None:
        self.failed_at: deque[float] = deque(maxlen=failures)
        self.opened_at: float | None = None  # None: closed
        self.probe_round: float | None = None  # when the current half-open round began
        self.admitted = 0
        self.succeeded = 0

    def open(self, now: float) -> None:
        self.opened_at = now
        self.probe_round = None
        self.failed_at.clear()

    def state(self, now: float, cfg: Breaker) -> BreakerState:
        if self.opened_at is None:
            return "closed"
        if self.probe_round is None and now - self.opened_at < cfg.cooldown:
            return "open"
        return "half_open"


class InMemoryBreakerStore:
    """Breaker state in this process: a small object per key that has ever failed.

    Share one instance between `Breaker` configs (e.g. agents calling the same model)
    to share their circuits.
    """

    __slots__ = ("_circuits",)

    def __init__(self) -> None:
        self._circuits: dict[str, _Circuit] = {}

    def __repr__(self) -> str:
        return f"InMemoryBreakerStore({len(self._circuits)} circuits)"

    async def before_call(self, key: str, now: float, cfg: Breaker) -> float | None:
        circuit = self._circuits.get(key)
        if circuit is None or circuit.opened_at is None:
            return None
        if circuit.probe_round is None:
            left = circuit.opened_at + cfg.cooldown - now
            if left > 0:
                return left
            circuit.probe_round = now
            circuit.admitted = circuit.succeeded = 0
        elif circuit.admitted >= cfg.probes:
            # Every probe is out. One that never reports (its worker died) would hold the
            # circuit half-open for ever, so a round lasts at most `cooldown`.
            left = circuit.probe_round + cfg.cooldown - now
            if left > 0:
                return left
            circuit.probe_round = now
            circuit.admitted = circuit.succeeded = 0
        circuit.admitted += 1
        return 0.0

    async def record(self, key: str, ok: bool | None, now: float, cfg: Breaker) -> None:
        circuit = self._circuits.get(key)
        if circuit is None:
            if ok is not False:
                return
            circuit = self._circuits[key] = _Circuit(cfg.failures)
        if circuit.opened_at is None:  # closed
            if ok is False:
                failed_at = circuit.failed_at
                n = cfg.failures
                if failed_at.maxlen is not None and failed_at.maxlen < n:
                    # A shared store, and this config counts more failures than the first.
                    failed_at = circuit.failed_at = deque(failed_at, maxlen=n)
                failed_at.append(now)
                if len(failed_at) >= n and now - failed_at[-n] <= cfg.window:
                    circuit.open(now)
            return
        if circuit.probe_round is None:
            return  # a call let through before the circuit opened: its news is stale
        if ok is None:
            circuit.admitted = max(0, circuit.admitted - 1)
        elif not ok:
            circuit.open(now)
        else:
            circuit.succeeded += 1
            if circuit.succeeded >= cfg.probes:
                circuit.opened_at = circuit.probe_round = None

    async def state(self, key: str, now: float, cfg: Breaker) -> BreakerState:
        circuit = self._circuits.get(key)
        return "closed" if circuit is None else circuit.state(now, cfg)


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
    __slots__ = ("_clock", "_store", "config", "key")

    def __init__(self, config: Breaker, key: str) -> None:
        self.config = config
        self.key = key
        self._store = config.store
        self._clock = config.clock

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.key!r})"

    async def state(self) -> BreakerState:
        """The state of this target's circuit now."""
        return await self.config.state(self.key)

    async def __call__(self, effect: Any, call_next: CallNext) -> Any:
        store, key, cfg, clock = self._store, self.key, self.config, self._clock
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
