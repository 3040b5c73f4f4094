"""Reading a run's journal, and replaying it: the loop again, answered from the record.

`tether trace` reads the steps; `tether replay` runs the agent's loop in memory with
every effect answered by the recorded one, in the order the loop asks (the order the
journal gave them their ids), so a run can be re-examined with no model and no tool
called. `from_step` forks it: from that step on the effects run live (a different
model, say), except side effects, which a replay never performs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from dbos import DBOSClient, StepInfo

from tether.durable.steps import Timed
from tether.errors import ConfigError
from tether.messages import CallNext, ToolResult
from tether.tools import ToolSet

__all__ = ["RecordedStep", "Replay", "recorded_steps"]


@dataclass(frozen=True, slots=True)
class RecordedStep:
    """One journaled effect of a run."""

    step_id: int
    name: str
    """`model`, or `tool:<name>`."""
    output: Any
    """The `ModelResponse` or `ToolResult` (None if it raised)."""
    error: BaseException | None
    started_ms: int | None
    completed_ms: int | None

    @property
    def duration_s(self) -> float | None:
        """How long the effect took, when it was recorded."""
        if self.started_ms is None or self.completed_ms is None:
            return None
        return (self.completed_ms - self.started_ms) / 1000


def recorded_steps(client: DBOSClient, run_id: str) -> list[RecordedStep]:
    """The journaled effects of `run_id`, in step order."""
    return [
        _step(s)
        for s in client.list_workflow_steps(run_id)
        if s["function_name"] == "model" or s["function_name"].startswith("tool:")
    ]


def _step(info: StepInfo) -> RecordedStep:
    output, started_ms = info["output"], info.get("started_at_epoch_ms")
    if isinstance(output, Timed):  # journaled after it ran: it began before its step
        output, started_ms = output.value, output.started_ms
    return RecordedStep(
        step_id=info["function_id"],
        name=info["function_name"],
        output=output,
        error=info["error"],
        started_ms=started_ms,
        completed_ms=info.get("completed_at_epoch_ms"),
    )


class Replay:
    """Answers a run's effects from its journal (up to `from_step`, then live)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model", "tool"})
    __slots__ = ("_from", "_last", "_next", "_steps", "_tools", "live")

    def __init__(
        self, steps: Sequence[RecordedStep], tools: ToolSet, *, from_step: int | None = None
    ) -> None:
        self._steps = {s.step_id: s for s in steps}
        self._last = max(self._steps, default=0)
        self._from = from_step
        self._tools = tools
        self._next = 0
        self.live = 0
        """How many effects ran live (after the fork)."""

    def __call__(self, effect: Any, call_next: CallNext) -> Awaitable[Any]:
        self._next += 1  # the journal's ids are drawn in this same order
        step_id = self._next
        expected = "model" if effect.kind == "model" else f"tool:{effect.call.name}"
        if self._from is None or step_id < self._from:
            recorded = self._steps.get(step_id)
            if recorded is None:
                raise ConfigError(
                    f"the journal ends at step {self._last}; the replay asked for step "
                    f"{step_id} ({expected}). Replay --from-step {step_id} to go on live"
                )
            if recorded.name != expected:
                raise ConfigError(
                    f"the replay diverged from the journal at step {step_id}: the loop asked "
                    f"for {expected}, the journal has {recorded.name} (has the agent changed?)"
                )
            return _answer(recorded)
        self.live += 1
        if effect.kind == "tool" and self._tools.get(effect.call).side_effect:
            return _answer_now(
                ToolResult.of(
                    effect.call,
                    f"Not run: {effect.call.name} is a side effect, and a replay performs none.",
                    "denied",
                )
            )
        return call_next(effect)


async def _answer(recorded: RecordedStep) -> Any:
    if recorded.error is not None:
        raise recorded.error
    return recorded.output


async def _answer_now(value: Any) -> Any:
    return value
