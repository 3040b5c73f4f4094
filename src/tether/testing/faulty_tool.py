"""`faulty_tool`: a tool that fails the way backends do, on purpose (see `faults`)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from tether.errors import ToolExecutionError, ToolTimeout
from tether.policy.clock import SYSTEM_CLOCK, Clock
from tether.testing.faults import TOOL_FAULTS, FaultPlan, FaultRecord, check_seconds
from tether.tools.context import RunContext
from tether.tools.tool import Tool

__all__ = ["FaultyTool", "faulty_tool"]


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
        super().__init__(original.function, **original._options())
        self._semaphore = original._semaphore  # one concurrency limit, as for the original
        self.original = original
        self._plan = FaultPlan(
            rate=rate,
            schedule=schedule,
            seed=seed,
            faults=faults,
            outages=outages,
            outage_fault=outage_fault,
            known=TOOL_FAULTS,
            what="faulty_tool",
        )
        self.slow_seconds = check_seconds(slow_seconds, "slow_seconds")
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
