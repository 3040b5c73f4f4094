"""Fault injection: models and tools that fail the way real ones do, on purpose.

`FaultyModel` wraps a model and `faulty_tool` a tool; before delegating, each call may
get a fault, drawn from a seeded random generator at a given `rate` or read off an
explicit `schedule`. Every call is recorded (`calls`), so a test can check what the
policies did with each fault: how often a call was retried, how long it waited, when a
breaker let calls through again.

Model faults:

| fault | what the call does |
|---|---|
| `"429"` | raises `ModelRateLimited` (status 429) with `retry_after` seconds |
| `"500"` | raises `ModelHTTPError(status_code=500, retryable=True)` |
| `"400"` | raises `ModelHTTPError(status_code=400, retryable=False)`: never worth a retry |
| `"auth"` | raises `ModelAuthError` (status 401): never worth a retry |
| `"timeout"` | raises `ModelTimeout` |
| `"reset"` | raises `ModelConnectionError` (the connection dropped) |
| `"malformed"` | answers, with its first tool call's arguments cut to invalid JSON |
| `"slow"` | sleeps `slow_seconds` on the clock, then answers |

A `"malformed"` answer with no tool call to break is returned unchanged (and recorded
as a clean call): the loop's handling of bad arguments is what it exercises. A `"slow"`
call longer than the request's `settings.timeout` raises `ModelTimeout` at the timeout.

Tool faults: `"timeout"` raises `ToolTimeout`, `"error"` raises `ToolExecutionError`
(caused by a `ConnectionError`, as a tool whose backend dropped would), `"slow"` sleeps
`slow_seconds` on the clock first (a `ToolTimeout` at the tool's timeout if shorter).

Example:
    ```python
    clock = FakeClock()
    model = FaultyModel(ScriptedModel([...]), rate=0.3, seed=7, clock=clock)
    agent = Agent(model=model, policy=Policy(retry=Retry(attempts=4, clock=clock)))
    result = await agent.run("...")
    assert [c.fault for c in model.calls] == [None, "429", None]
    ```
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tether.errors import ConfigError

__all__ = [
    "DEFAULT_MODEL_FAULTS",
    "MODEL_FAULTS",
    "TOOL_FAULTS",
    "FaultPlan",
    "FaultRecord",
    "check_seconds",
]

MODEL_FAULTS: tuple[str, ...] = (
    "429",
    "500",
    "400",
    "auth",
    "timeout",
    "reset",
    "malformed",
    "slow",
)
"""Every fault a `FaultyModel` knows."""

TOOL_FAULTS: tuple[str, ...] = ("timeout", "error", "slow")
"""Every fault a `faulty_tool` knows."""

DEFAULT_MODEL_FAULTS = ("429", "500", "timeout", "reset", "malformed", "slow")
"""The default draw: transient faults only (retryable, or absorbed by the loop)."""


@dataclass(slots=True)
class FaultRecord:
    """One call that reached a faulty model or tool.

    `request` is the `ModelRequest` (a retry sends the very same object again, so
    records with the same `request` are attempts of one logical call) or, for a tool,
    its arguments dict (the same object across retries, too).
    """

    index: int
    """Position among this wrapper's calls, from 0."""
    fault: str | None
    """The fault injected, or None for a clean call (or a `"malformed"` that found no
    tool call to break)."""
    time: float
    """`clock.now()` when the call arrived."""
    request: Any
    ended: float | None = None
    """`clock.now()` when the call returned or raised (None while in flight)."""
    error: BaseException | None = None
    """What the call raised (injected or from the wrapped model or tool), or None."""

    @property
    def failed(self) -> bool:
        return self.error is not None


class FaultPlan:
    """Which fault each call gets: an outage's while one lasts, else the schedule's,
    else a seeded draw at `rate`."""

    __slots__ = ("faults", "outage_fault", "outages", "rate", "rng", "schedule")

    def __init__(
        self,
        *,
        rate: float,
        schedule: Sequence[str | None] | None,
        seed: int | None,
        faults: Sequence[str],
        outages: Sequence[tuple[float, float]],
        outage_fault: str,
        known: tuple[str, ...],
        what: str,
    ) -> None:
        if isinstance(rate, bool) or not (isinstance(rate, int | float) and 0 <= rate <= 1):
            raise ConfigError(f"{what} rate must be a probability from 0 to 1, got {rate!r}")
        faults = tuple(faults)
        schedule = tuple(schedule) if schedule is not None else ()
        for fault in (*faults, *schedule):
            if fault is not None and fault not in known:
                raise ConfigError(
                    f"{what} fault {fault!r} is unknown; use one of {', '.join(known)}"
                )
        if rate > 0 and not faults:
            raise ConfigError(f"{what} rate is {rate} but faults is empty: name some faults")
        if outage_fault not in known:
            raise ConfigError(
                f"{what} outage_fault {outage_fault!r} is unknown; use one of {', '.join(known)}"
            )
        windows = []
        for window in outages:
            start, end = window
            if not (isinstance(start, int | float) and isinstance(end, int | float)) or not (
                start < end
            ):
                raise ConfigError(
                    f"{what} outages are (start, end) pairs of clock times with start < end, "
                    f"got {window!r}"
                )
            windows.append((float(start), float(end)))
        self.outages = tuple(windows)
        self.outage_fault = outage_fault
        self.rate = float(rate)
        self.faults = faults
        self.schedule = schedule
        self.rng = random.Random(seed)

    def fault_for(self, index: int, now: float) -> str | None:
        for start, end in self.outages:
            if start <= now < end:
                return self.outage_fault
        if index < len(self.schedule):
            return self.schedule[index]
        if self.rate and self.rng.random() < self.rate:
            return self.rng.choice(self.faults)
        return None


def check_seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0 <= value < math.inf):
        raise ConfigError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return float(value)
