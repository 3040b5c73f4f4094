"""`FaultyModel`: a model that fails the way providers do, on purpose (see `faults`)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from tether.errors import (
    ConfigError,
    ModelAuthError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimited,
    ModelTimeout,
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
from tether.testing.faults import (
    DEFAULT_MODEL_FAULTS,
    MODEL_FAULTS,
    FaultPlan,
    FaultRecord,
    check_seconds,
)

__all__ = ["FaultyModel"]


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
        faults: Sequence[str] = DEFAULT_MODEL_FAULTS,
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
        self._plan = FaultPlan(
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
            None if retry_after is None else check_seconds(retry_after, "retry_after")
        )
        self.slow_seconds = check_seconds(slow_seconds, "slow_seconds")
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
