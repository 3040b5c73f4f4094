"""`Journal`: the outermost policy of a durable run. Every effect is a DBOS step.

Inside a run's workflow, each model call and each tool call runs as a step: its
result (or error) is written to the database when it ends, and when the run is
resumed after a crash the loop runs again from the start while every completed step
answers from the database instead of running. So no model call is paid twice and no
tool runs twice, and the loop does not know the difference.

Step ids are drawn in the order the loop asks for effects, before anything awaits
(`DBOS.reserve_step`), so the parallel tool calls of one step keep the same ids on
every replay, however their executions interleave.

Two ways to run a step, with the same journal writes (a check for a recorded result,
then the result):

- A run's first attempt (see `first_attempt`), when nothing of it can be journaled
  yet: the effect runs in its step's DBOS context, then its result is journaled by a
  step whose function returns it at once. DBOS checks and writes in one trip to its
  thread pool, where an async step function costs three (check, an idle hop, write):
  most of what a journaled step costs beyond DBOS's own SQL. The result is kept as
  `Timed`, with the moment the effect began, so `tether trace` shows how long it took
  (the step's own times are those of its write).
- Any later attempt: each effect is an async DBOS step, which answers from the
  journal without running when its result is recorded.

A side-effecting tool (`@tool(side_effect=True)`) also goes through the ledger, inside
its step (see `side_effects`), because a step is at-least-once: a crash after the tool
ran and before its step was recorded would run it again.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, ClassVar, NoReturn

from dbos import DBOS, StepOptions, StepReservation
from dbos._context import EnterDBOSStepCtx

from tether.durable.side_effects import SideEffects
from tether.messages import CallNext
from tether.tools import ToolSet

__all__ = ["Journal", "Timed", "first_attempt"]

first_attempt: ContextVar[bool] = ContextVar("tether_first_attempt", default=False)
"""Set by the run workflow when this attempt is its run's first (its record had never
started), so no step of it can be journaled yet: effects run before their step."""


@dataclass(frozen=True, slots=True)
class Timed:
    """A result journaled after its effect ran, with the moment it began."""

    value: Any
    started_ms: int
    """Epoch milliseconds, DBOS's clock and unit."""


def _unwrap(recorded: Any) -> Any:
    """The effect's result in a journaled output (`Timed` or the result itself)."""
    return recorded.value if isinstance(recorded, Timed) else recorded


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
        body: Callable[..., Awaitable[Any]] = _through
        args: tuple[Any, ...] = (effect, call_next)
        if effect.kind == "model":
            name = "model"
        else:
            tool = self._tools.get(effect.call)
            name = f"tool:{effect.call.name}"
            if tool.side_effect:
                body = self._side_effects.run
                args = (tool, effect, call_next, reservation.step_id)
        if first_attempt.get():
            return _run_then_journal(reservation, name, body, args)
        return _journaled(reservation, name, body, args)


def _options(name: str) -> StepOptions:
    # tether's retry policy is the only retry layer: DBOS runs a step once per attempt.
    return {"retries_allowed": False, "name": name}


async def _run_then_journal(
    reservation: StepReservation,
    name: str,
    body: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
) -> Any:
    started_ms = int(time.time() * 1000)
    recorded: Any
    try:
        # In its step's DBOS context, as inside `run_async`, so what the effect does
        # with DBOS (or another effect it makes) belongs to the step, as on any later
        # attempt. DBOS has no public way in: this and `_step_ctx` are its private API.
        with EnterDBOSStepCtx({"name": name, "operationType": "step"}, reservation._step_ctx):
            value = await body(*args)
    except Exception as exc:
        # Journals the error and raises it (or answers what was recorded meanwhile).
        recorded = await reservation.run_async(_options(name), _reraise, exc)
    else:
        # A result recorded meanwhile (another process resumed the run) wins, as in DBOS.
        recorded = await reservation.run_async(_options(name), Timed, value, started_ms)
    return _unwrap(recorded)


async def _journaled(
    reservation: StepReservation,
    name: str,
    body: Callable[..., Awaitable[Any]],
    args: tuple[Any, ...],
) -> Any:
    return _unwrap(await reservation.run_async(_options(name), body, *args))


def _reraise(error: Exception) -> NoReturn:
    raise error


async def _through(effect: Any, call_next: CallNext) -> Any:
    """The step's body: the rest of the onion (a coroutine function, as DBOS needs)."""
    return await call_next(effect)
