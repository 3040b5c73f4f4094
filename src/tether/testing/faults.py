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

import asyncio
import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tether.errors import (
    ConfigError,
    ModelAuthError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimited,
    ModelTimeout,
    ToolExecutionError,
    ToolTimeout,
)
from tether.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCall,
    construct,
)
from tether.models.base import Model, TextSink
from tether.policy.clock import SYSTEM_CLOCK, Clock
from tether.tools.context import RunContext
from tether.tools.tool import Tool

__all__ = [
    "MODEL_FAULTS",
    "TOOL_FAULTS",
    "FaultRecord",
    "FaultyModel",
    "FaultyTool",
    "faulty_tool",
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

_DEFAULT_MODEL_FAULTS = ("429", "500", "timeout", "reset", "malformed", "slow")
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


class _FaultPlan:
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


def _check_seconds(value: float, what: str) -> float:
    if isinstance(value, bool) or not (isinstance(value, int | float) and 0 <= value < math.inf):
        raise ConfigError(f"{what} must be a number of seconds >= 0, got {value!r}")
    return float(value)


class FaultyModel(Model):
    """A model that fails on purpose, then (when it does not fail) answers as `wrapped`.

    Args:
        wrapped: The model that answers the calls that get no fault.
        rate: Probability that a call gets a fault (drawn from `random.Random(seed)`).
        schedule: Faults for the first calls, in order (`None` for a clean call); calls
            after the schedule draw at `rate`.
        seed: Seeds the draws, so a run of faults can be replayed exactly.
        faults: The faults drawn from, uniformly (default: the transient ones, `"429"`,
            `"500"`, `"timeout"`, `"reset"`, `"malformed"`, `"slow"`).
        retry_after: Seconds a `"429"` asks to wait (its `Retry-After`); None for none.
        slow_seconds: Virtual seconds a `"slow"` call takes before answering.
        outages: `(start, end)` windows of `clock` time during which every call gets
            `outage_fault` (a deployment that is down), whatever the schedule and rate say.
        outage_fault: The fault of a call during an outage.
        clock: Where `"slow"` waits and calls are timed (a `FakeClock` in tests).
        name: Reported name; defaults to the wrapped model's (so pricing still applies).

    Attributes:
        calls: A `FaultRecord` for every call, in arrival order.
    """

    def __init__(
        self,
        wrapped: Model,
        *,
        rate: float = 0.0,
        schedule: Sequence[str | None] | None = None,
        seed: int | None = 0,
        faults: Sequence[str] = _DEFAULT_MODEL_FAULTS,
        retry_after: float | None = 1.0,
        slow_seconds: float = 5.0,
        outages: Sequence[tuple[float, float]] = (),
        outage_fault: str = "500",
        clock: Clock = SYSTEM_CLOCK,
        name: str | None = None,
    ) -> None:
        if not isinstance(wrapped, Model):
            raise ConfigError(f"FaultyModel wraps a Model, got {type(wrapped).__name__}")
        self.wrapped = wrapped
        self.name = name if name is not None else wrapped.name
        self._plan = _FaultPlan(
            rate=rate,
            schedule=schedule,
            seed=seed,
            faults=faults,
            outages=outages,
            outage_fault=outage_fault,
            known=MODEL_FAULTS,
            what="FaultyModel",
        )
        self.retry_after = (
            None if retry_after is None else _check_seconds(retry_after, "retry_after")
        )
        self.slow_seconds = _check_seconds(slow_seconds, "slow_seconds")
        self.clock = clock
        self.calls: list[FaultRecord] = []

    async def request(self, request: ModelRequest) -> ModelResponse:
        return await self._call(request, None)

    async def request_stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        return await self._call(request, on_text)

    async def aclose(self) -> None:
        await self.wrapped.aclose()

    def faults_injected(self) -> dict[str, int]:
        """How many calls got each fault (clean calls are not counted)."""
        counts: dict[str, int] = {}
        for record in self.calls:
            if record.fault is not None:
                counts[record.fault] = counts.get(record.fault, 0) + 1
        return counts

    async def _call(self, request: ModelRequest, on_text: TextSink | None) -> ModelResponse:
        index = len(self.calls)
        now = self.clock.now()
        fault = self._plan.fault_for(index, now)
        record = FaultRecord(index, fault, now, request)
        self.calls.append(record)
        try:
            if fault is not None and fault not in ("malformed", "slow"):
                await asyncio.sleep(0)  # a failing call still gives way, as I/O would
                raise self._error(fault)
            if fault == "slow":
                timeout = request.settings.timeout
                if timeout is not None and timeout <= self.slow_seconds:
                    await self.clock.sleep(timeout)
                    raise ModelTimeout(
                        f"{self.name}: injected slow call ran past its {timeout}s timeout",
                        model=self.name,
                    )
                await self.clock.sleep(self.slow_seconds)
            if on_text is None:
                response = await self.wrapped.request(request)
            else:
                response = await self.wrapped.request_stream(request, on_text)
            if fault == "malformed":
                broken = _break_arguments(response)
                if broken is None:
                    record.fault = None  # nothing to break: an ordinary answer
                else:
                    response = broken
            return response
        except BaseException as exc:
            record.error = exc
            raise
        finally:
            record.ended = self.clock.now()

    def _error(self, fault: str) -> Exception:
        name = self.name
        if fault == "429":
            return ModelRateLimited(
                f"{name}: injected 429 Too Many Requests",
                model=name,
                status_code=429,
                retry_after=self.retry_after,
            )
        if fault == "500":
            return ModelHTTPError(
                f"{name}: injected 500 Internal Server Error",
                model=name,
                status_code=500,
                retryable=True,
            )
        if fault == "400":
            return ModelHTTPError(
                f"{name}: injected 400 Bad Request", model=name, status_code=400, retryable=False
            )
        if fault == "auth":
            return ModelAuthError(
                f"{name}: injected 401 Unauthorized; check the API key",
                model=name,
                status_code=401,
            )
        if fault == "timeout":
            return ModelTimeout(f"{name}: injected timeout", model=name)
        return ModelConnectionError(f"{name}: injected connection reset", model=name)

    def __repr__(self) -> str:
        return f"FaultyModel({self.wrapped!r}, rate={self._plan.rate})"


def _break_arguments(response: ModelResponse) -> ModelResponse | None:
    """`response` with its first tool call's arguments cut to invalid JSON, or None if it
    has no tool call."""
    parts = response.message.parts
    for i, part in enumerate(parts):
        if isinstance(part, ToolCall):
            text = part.arguments_json().strip()
            broken = construct(
                ToolCall,
                type="tool_call",
                id=part.id,
                name=part.name,
                arguments=text[: len(text) // 2],  # never a whole JSON object
            )
            new_parts: list[TextPart | ToolCall] = [*parts[:i], broken, *parts[i + 1 :]]
            message = construct(AssistantMessage, role="assistant", parts=new_parts)
            return response.model_copy(update={"message": message})
    return None


class FaultyTool(Tool):
    """A `Tool` that fails on purpose before executing the original; see `faulty_tool`.

    Attributes:
        calls: A `FaultRecord` for every execution, in arrival order.
        original: The tool it wraps.
    """

    __slots__ = ("_plan", "calls", "clock", "original", "slow_seconds")

    def __init__(
        self,
        original: Tool,
        *,
        rate: float,
        schedule: Sequence[str | None] | None,
        seed: int | None,
        faults: Sequence[str],
        slow_seconds: float,
        outages: Sequence[tuple[float, float]],
        outage_fault: str,
        clock: Clock,
    ) -> None:
        super().__init__(
            original.function,
            name=original.name,
            description=original.description,
            timeout=original.timeout,
            max_concurrency=original.max_concurrency,
            retries=original.retries,
            retryable=original.retryable,
            fallbacks=original.fallbacks,
        )
        self._semaphore = original._semaphore  # one concurrency limit, as for the original
        self.original = original
        self._plan = _FaultPlan(
            rate=rate,
            schedule=schedule,
            seed=seed,
            faults=faults,
            outages=outages,
            outage_fault=outage_fault,
            known=TOOL_FAULTS,
            what="faulty_tool",
        )
        self.slow_seconds = _check_seconds(slow_seconds, "slow_seconds")
        self.clock = clock
        self.calls: list[FaultRecord] = []

    async def execute(self, arguments: dict[str, Any], ctx: RunContext[Any] | None) -> Any:
        index = len(self.calls)
        now = self.clock.now()
        fault = self._plan.fault_for(index, now)
        record = FaultRecord(index, fault, now, arguments)
        self.calls.append(record)
        try:
            if fault == "timeout":
                await asyncio.sleep(0)
                raise ToolTimeout(
                    f"tool {self.name!r} did not finish within its timeout (injected)",
                    tool=self.name,
                )
            if fault == "error":
                await asyncio.sleep(0)
                cause = ConnectionError("injected fault: connection reset by peer")
                raise ToolExecutionError(
                    f"tool {self.name!r} failed: ConnectionError: {cause}", tool=self.name
                ) from cause
            if fault == "slow":
                if self.timeout is not None and self.timeout <= self.slow_seconds:
                    await self.clock.sleep(self.timeout)
                    raise ToolTimeout(
                        f"tool {self.name!r} did not finish within {self.timeout}s "
                        "and was cancelled (injected slow call)",
                        tool=self.name,
                    )
                await self.clock.sleep(self.slow_seconds)
            return await super().execute(arguments, ctx)
        except BaseException as exc:
            record.error = exc
            raise
        finally:
            record.ended = self.clock.now()

    def faults_injected(self) -> dict[str, int]:
        """How many executions got each fault (clean ones are not counted)."""
        counts: dict[str, int] = {}
        for record in self.calls:
            if record.fault is not None:
                counts[record.fault] = counts.get(record.fault, 0) + 1
        return counts

    def __repr__(self) -> str:
        return f"FaultyTool({self.name!r}, rate={self._plan.rate})"


def faulty_tool(
    tool_or_fn: Tool | Callable[..., Any],
    *,
    rate: float = 0.0,
    schedule: Sequence[str | None] | None = None,
    seed: int | None = 0,
    faults: Sequence[str] = TOOL_FAULTS,
    slow_seconds: float = 5.0,
    outages: Sequence[tuple[float, float]] = (),
    outage_fault: str = "error",
    clock: Clock = SYSTEM_CLOCK,
) -> FaultyTool:
    """A tool with the same name, schema and limits as `tool_or_fn` that fails on purpose.

    Each execution first draws a fault (the `schedule` first, then `rate` with
    `random.Random(seed)`, uniformly over `faults`): `"timeout"` raises `ToolTimeout`,
    `"error"` raises `ToolExecutionError`, `"slow"` sleeps `slow_seconds` on `clock`
    (a `ToolTimeout` at the tool's own timeout if that is shorter); the calls without a
    fault, and slow ones, execute the original. During an `outages` window of `clock`
    time, every execution gets `outage_fault`. Every execution is recorded in `calls`.

    Example:
        ```python
        flaky = faulty_tool(get_weather, schedule=["timeout", None])
        agent = Agent(model=model, tools=[flaky])
        ...
        assert [c.fault for c in flaky.calls] == ["timeout", None]
        ```
    """
    original = tool_or_fn if isinstance(tool_or_fn, Tool) else Tool(tool_or_fn)
    return FaultyTool(
        original,
        rate=rate,
        schedule=schedule,
        seed=seed,
        faults=faults,
        slow_seconds=slow_seconds,
        outages=outages,
        outage_fault=outage_fault,
        clock=clock,
    )
