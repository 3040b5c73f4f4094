"""Where circuit-breaker state lives: the circuit's state machine, and the stores that
keep circuits by key, in this process (`InMemoryBreakerStore`) or in the database for
every process on it (`SharedBreakerStore`). `tether.policy.breaker` decides when to ask.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from functools import partial
from typing import Any, Literal, Protocol

from tether.errors import ConfigError
from tether.policy.shared import StateRows

__all__ = [
    "BreakerState",
    "BreakerStore",
    "CircuitConfig",
    "InMemoryBreakerStore",
    "SharedBreakerStore",
]

BreakerState = Literal["closed", "open", "half_open"]


class CircuitConfig(Protocol):
    """What a store reads of a breaker's config (`tether.policy.Breaker` is one)."""

    @property
    def failures(self) -> int: ...
    @property
    def window(self) -> float: ...
    @property
    def cooldown(self) -> float: ...
    @property
    def probes(self) -> int: ...


class BreakerStore(Protocol):
    """Where breaker state lives, keyed by target (`model:<name>`, `tool:<name>`).

    `cfg` is the `Breaker` config (a `CircuitConfig`). `now` is the policy's clock.

    A store may also offer `closed(key) -> bool`, answered without waiting: True only
    when `before_call` would return None and change nothing. The policy then skips
    `before_call` (one coroutine less per call on the happy path).
    """

    async def before_call(self, key: str, now: float, cfg: CircuitConfig) -> float | None:
        """May a call to `key` go ahead?

        Returns `None` when the circuit is closed (go ahead; report only a failure),
        `0.0` when the call goes ahead as a half-open probe (report its outcome,
        whatever it is), or the seconds left until a call may go (the circuit is open).
        """
        ...

    async def record(self, key: str, ok: bool | None, now: float, cfg: CircuitConfig) -> None:
        """Report how a call to `key` ended.

        `ok` is `False` for an availability failure, `True` for any other outcome (the
        target answered), `None` for no verdict (a probe was cancelled: free its slot).
        """
        ...

    async def state(self, key: str, now: float, cfg: CircuitConfig) -> BreakerState:
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

    def state(self, now: float, cfg: CircuitConfig) -> BreakerState:
        if self.opened_at is None:
            return "closed"
        if self.probe_round is None and now - self.opened_at < cfg.cooldown:
            return "open"
        return "half_open"

    def admit(self, now: float, cfg: CircuitConfig) -> float | None:
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

    def report(self, ok: bool | None, now: float, cfg: CircuitConfig) -> None:
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

    def closed(self, key: str) -> bool:
        """Whether `key`'s circuit is closed: `before_call` would say go ahead, and
        change nothing (the policy's fast path, without a coroutine)."""
        circuit = self._circuits.get(key)
        return circuit is None or circuit.opened_at is None

    async def before_call(self, key: str, now: float, cfg: CircuitConfig) -> float | None:
        circuit = self._circuits.get(key)
        return None if circuit is None else circuit.admit(now, cfg)

    async def record(self, key: str, ok: bool | None, now: float, cfg: CircuitConfig) -> None:
        circuit = self._circuits.get(key)
        if circuit is None:
            if ok is not False:
                return
            circuit = self._circuits[key] = _Circuit(cfg.failures)
        circuit.report(ok, now, cfg)

    async def state(self, key: str, now: float, cfg: CircuitConfig) -> BreakerState:
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

    def closed(self, key: str) -> bool:
        """Whether this process read `key`'s circuit closed less than `refresh` seconds
        ago (the policy's fast path, without a coroutine or a round trip)."""
        until = self._closed_until.get(key)
        return until is not None and time.monotonic() < until

    async def before_call(self, key: str, now: float, cfg: CircuitConfig) -> float | None:
        if self.closed(key):
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

    async def record(self, key: str, ok: bool | None, now: float, cfg: CircuitConfig) -> None:
        if ok is False:
            self._closed_until.pop(key, None)
        await asyncio.to_thread(self._rows.transact, _PREFIX + key, partial(_report, cfg, ok))

    async def state(self, key: str, now: float, cfg: CircuitConfig) -> BreakerState:
        state, db_now = await asyncio.to_thread(self._rows.read, _PREFIX + key)
        return (
            "closed"
            if state is None
            else _Circuit.from_state(state, cfg.failures).state(db_now, cfg)
        )


_PREFIX = "breaker:"
"""The shared store's keys: `breaker:model:<name>`, `breaker:tool:<name>`."""


def _admit(
    cfg: CircuitConfig, state: dict[str, Any] | None, now: float
) -> tuple[Any, float | None]:
    if state is None:
        return None, None
    circuit = _Circuit.from_state(state, cfg.failures)
    answer = circuit.admit(now, cfg)
    return (circuit.to_state() if answer == 0.0 else None), answer


def _report(
    cfg: CircuitConfig, ok: bool | None, state: dict[str, Any] | None, now: float
) -> tuple[Any, None]:
    if state is None:
        if ok is not False:
            return None, None
        circuit = _Circuit(cfg.failures)
    else:
        circuit = _Circuit.from_state(state, cfg.failures)
    circuit.report(ok, now, cfg)
    return circuit.to_state(), None
