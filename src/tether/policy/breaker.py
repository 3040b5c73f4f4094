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

import asyncio
import math
import time
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, Literal, Protocol

from tether.errors import CircuitOpen, ConfigError, ModelError, ToolExecutionError, ToolTimeout
from tether.messages import CallNext, EffectPolicy
from tether.policy.clock import SYSTEM_CLOCK, Clock
from tether.policy.shared import StateRows

__all__ = [
    "Breaker",
    "BreakerPolicy",
    "BreakerState",
    "BreakerStore",
    "InMemoryBreakerStore",
    "SharedBreakerStore",
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

    @classmethod
    def from_state(cls, state: dict[str, Any], failures: int) -> _Circuit:
        """A circuit from `to_state`'s JSON form (kept by a shared store)."""
        circuit = cls(max(failures, len(state.get("failed_at", ()))))
        circuit.failed_at.extend(state.get("failed_at", ()))
        circuit.opened_at = state.get("opened_at")
        circuit.probe_round = state.get("probe_round")
        circuit.admitted = state.get("admitted", 0)
        circuit.succeeded = state.get("succeeded", 0)
        return circuit

    def to_state(self) -> dict[str, Any]:
        return {
            "failed_at": list(self.failed_at),
            "opened_at": self.opened_at,
            "probe_round": self.probe_round,
            "admitted": self.admitted,
            "succeeded": self.succeeded,
        }

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

    def admit(self, now: float, cfg: Breaker) -> float | None:
        """`BreakerStore.before_call` for this circuit."""
        if self.opened_at is None:
            return None
        if self.probe_round is None:
            left = self.opened_at + cfg.cooldown - now
            if left > 0:
                return left
            self.probe_round = now
            self.admitted = self.succeeded = 0
        elif self.admitted >= cfg.probes:
            # Every probe is out. One that never reports (its worker died) would hold the
            # circuit half-open for ever, so a round lasts at most `cooldown`.
            left = self.probe_round + cfg.cooldown - now
            if left > 0:
                return left
            self.probe_round = now
            self.admitted = self.succeeded = 0
        self.admitted += 1
        return 0.0

    def report(self, ok: bool | None, now: float, cfg: Breaker) -> None:
        """`BreakerStore.record` for this circuit."""
        if self.opened_at is None:  # closed
            if ok is False:
                failed_at = self.failed_at
                n = cfg.failures
                if failed_at.maxlen is not None and failed_at.maxlen < n:
                    # A shared store, and this config counts more failures than the first.
                    failed_at = self.failed_at = deque(failed_at, maxlen=n)
                failed_at.append(now)
                if len(failed_at) >= n and now - failed_at[-n] <= cfg.window:
                    self.open(now)
            return
        if self.probe_round is None:
            return  # a call let through before the circuit opened: its news is stale
        if ok is None:
            self.admitted = max(0, self.admitted - 1)
        elif not ok:
            self.open(now)
        else:
            self.succeeded += 1
            if self.succeeded >= cfg.probes:
                self.opened_at = self.probe_round = None


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
        return None if circuit is None else circuit.admit(now, cfg)

    async def record(self, key: str, ok: bool | None, now: float, cfg: Breaker) -> None:
        circuit = self._circuits.get(key)
        if circuit is None:
            if ok is not False:
                return
            circuit = self._circuits[key] = _Circuit(cfg.failures)
        circuit.report(ok, now, cfg)

    async def state(self, key: str, now: float, cfg: Breaker) -> BreakerState:
        circuit = self._circuits.get(key)
        return "closed" if circuit is None else circuit.state(now, cfg)


class SharedBreakerStore:
    """Breaker state in a database (`StateRows`), shared by every process on it.

    Time is the database's (see `tether.store.PolicyStates`), not the policy's clock:
    every process must agree when a circuit opened. A closed circuit is read at most
    once per `refresh` seconds per key in this process (so the happy path costs no
    round trip per call); a failure here, or one seen by any process once the read is
    due, counts at once. Transitions (open, probe, close) are atomic in the database.

    Args:
        rows: The table, e.g. `tether.store.Store(url).policy_states`.
        refresh: Seconds a closed circuit is taken as closed without reading it again.
    """

    __slots__ = ("_closed_until", "_rows", "refresh")

    def __init__(self, rows: StateRows, *, refresh: float = 1.0) -> None:
        if not (isinstance(refresh, int | float) and math.isfinite(refresh) and refresh >= 0):
            raise ConfigError(
                f"SharedBreakerStore.refresh must be finite seconds >= 0, got {refresh!r}"
            )
        self._rows = rows
        self.refresh = refresh
        self._closed_until: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"SharedBreakerStore({self._rows!r}, refresh={self.refresh})"

    async def before_call(self, key: str, now: float, cfg: Breaker) -> float | None:
        until = self._closed_until.get(key)
        if until is not None and time.monotonic() < until:
            return None
        row = _PREFIX + key
        state, db_now = await asyncio.to_thread(self._rows.read, row)
        if state is None or state.get("opened_at") is None:
            self._closed_until[key] = time.monotonic() + self.refresh
            return None
        self._closed_until.pop(key, None)
        # Open and cooling down, or every probe out: no need to lock to say so.
        left = _Circuit.from_state(state, cfg.failures).admit(db_now, cfg)
        if left is None or left > 0:
            return left
        return await asyncio.to_thread(self._rows.transact, row, partial(_admit, cfg))

    async def record(self, key: str, ok: bool | None, now: float, cfg: Breaker) -> None:
        if ok is False:
            self._closed_until.pop(key, None)
        await asyncio.to_thread(self._rows.transact, _PREFIX + key, partial(_report, cfg, ok))

    async def state(self, key: str, now: float, cfg: Breaker) -> BreakerState:
        state, db_now = await asyncio.to_thread(self._rows.read, _PREFIX + key)
        return (
            "closed"
            if state is None
            else _Circuit.from_state(state, cfg.failures).state(db_now, cfg)
        )


_PREFIX = "breaker:"
"""The shared store's keys: `breaker:model:<name>`, `breaker:tool:<name>`."""


def _admit(cfg: Breaker, state: dict[str, Any] | None, now: float) -> tuple[Any, float | None]:
    if state is None:
        return None, None
    circuit = _Circuit.from_state(state, cfg.failures)
    answer = circuit.admit(now, cfg)
    return (circuit.to_state() if answer == 0.0 else None), answer


def _report(
    cfg: Breaker, ok: bool | None, state: dict[str, Any] | None, now: float
) -> tuple[Any, None]:
    if state is None:
        if ok is not False:
            return None, None
        circuit = _Circuit(cfg.failures)
    else:
        circuit = _Circuit.from_state(state, cfg.failures)
    circuit.report(ok, now, cfg)
    return circuit.to_state(), None


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
