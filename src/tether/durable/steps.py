"""`Journal`: the outermost policy of a durable run. Every effect is a DBOS step.

Inside a run's workflow, each model call and each tool call runs as a step: its
result (or error) is written to the database when it ends, and when the run is
resumed after a crash the loop runs again from the start while every completed step
answers from the database instead of running. So no model call is paid twice and no
tool runs twice, and the loop does not know the difference.

Step ids are drawn in the order the loop asks for effects, before anything awaits
(`DBOS.reserve_step`), so the parallel tool calls of one step keep the same ids on
every replay, however their executions interleave.

A side-effecting tool (`@tool(side_effect=True)`) also goes through the ledger, inside
its step (see `side_effects`), because a step is at-least-once: a crash after the tool
ran and before its step was recorded would run it again.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, ClassVar

from dbos import DBOS
from dbos._core import StepOptions

from tether.durable.side_effects import SideEffects
from tether.messages import CallNext
from tether.tools import ToolSet

__all__ = ["Journal"]


class Journal:
    """Runs each effect of a durable run as a DBOS step (outside a workflow: as is)."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model", "tool"})
    __slots__ = ("_side_effects", "_tools")

    def __init__(self, tools: ToolSet, side_effects: SideEffects) -> None:
        self._tools = tools
        self._side_effects = side_effects

    def __call__(self, effect: Any, call_next: CallNext) -> Awaitable[Any]:
        if DBOS.workflow_id is None or DBOS.step_id is not None:
            return call_next(effect)  # not in a durable run (or already inside a step)
        reservation = DBOS.reserve_step()  # now: the order the loop asked in
        if effect.kind == "model":
            return reservation.run_async(_named("model"), _through, effect, call_next)
        tool = self._tools.get(effect.call)
        options = _named(f"tool:{effect.call.name}")
        if tool.side_effect:
            return reservation.run_async(
                options,
                self._side_effects.run,
                tool,
                effect,
                call_next,
                reservation.step_id,
            )
        return reservation.run_async(options, _through, effect, call_next)


def _named(name: str) -> StepOptions:
    # tether's retry policy is the only retry layer: DBOS runs a step once per attempt.
    return {"retries_allowed": False, "name": name}


async def _through(effect: Any, call_next: CallNext) -> Any:
    """The step's body: the rest of the onion (a coroutine function, as DBOS needs)."""
    return await call_next(effect)
