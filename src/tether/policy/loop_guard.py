"""`LoopGuard`: stops a model that keeps making the same tool calls.

A model stuck in a loop calls the same tool with the same arguments again and again,
or cycles through a few calls (search, fetch, search, fetch, ...), each time getting
the same answer. The guard watches the recent tool calls of each run. The first time a
call completes a loop, that call is not run: the model gets an error result telling it
so, and a chance to use what it has. The second time, the run stops with
`LoopDetected` (the loop attaches the partial run).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

from tether.errors import ConfigError, LoopDetected
from tether.messages import CallNext, ToolEffect, ToolResult

__all__ = ["LoopGuard", "LoopGuardPolicy"]

_Key = str
"""A call as the guard compares it: the tool's name, a newline, its canonical arguments.

A string, not a pair: with thousands of runs in flight, every container a run keeps,
or makes anew per call, counts towards the cyclic garbage collector's next collection.
So a run's guard is its `_LoopState` and one list of strings changed in place; a step
of one distinct call (most steps) needs no dict for its verdict."""

_PASSED, _WARNED, _STOPPED = 0, 1, 2
_PERIODS = (2, 3)


@dataclass(frozen=True, slots=True)
class LoopGuard:
    """Catches a run whose model repeats itself, and stops it if it goes on.

    Two calls are "the same" when they name the same tool with the same validated
    arguments (compared as JSON with sorted keys, so key order and coercions such as
    ``"2"`` → ``2`` do not matter). A call completes a loop when, among the last
    `window` tool calls of the run (itself included):

    - the same call occurs `repeats` times, or
    - the calls form a cycle of period 2 or 3 (A-B-A-B, A-B-C-A-B-C) repeated `cycles`
      times in a row.

    The first loop of a run is answered with an error result instead of running the
    call: the model is told it repeats itself and should use what it has or answer. A
    loop in any later step stops the run with `LoopDetected`. A loop found again in
    the very step that was warned (parallel calls) is only warned again, since the model
    has not yet seen the warning.

    Identical calls made in parallel in one step count once: asking for the same thing
    twice at once is redundant, not a loop across time (they get the same verdict). The
    order of a step's distinct calls is the order they reach the guard.

    Args:
        repeats: How many times the same call may occur within the window before it
            is a loop (at least 2).
        window: How many recent tool calls of the run are looked at.
        cycles: How many times in a row a period-2 or period-3 cycle must repeat to be
            a loop (at least 2; 0 turns cycle detection off). A period-3 cycle is only
            seen when ``3 * cycles <= window``.
        exempt: Names of tools never counted, such as a status poll that is meant to
            be called again with the same arguments.

    Example:
        ```python
        agent = Agent(model=..., tools=[search, fetch], policy=Policy(loop_guard=LoopGuard()))
        ```
    """

    repeats: int = 3
    window: int = 12
    cycles: int = 2
    exempt: Collection[str] = ()

    def __post_init__(self) -> None:
        if self.repeats < 2:
            raise ConfigError(f"LoopGuard.repeats must be >= 2, got {self.repeats}")
        if self.cycles < 0 or self.cycles == 1:
            raise ConfigError(
                f"LoopGuard.cycles must be >= 2, or 0 to turn cycle detection off; "
                f"got {self.cycles}"
            )
        smallest = max(self.repeats, 2 * self.cycles)
        if self.window < smallest:
            raise ConfigError(
                f"LoopGuard.window must be >= {smallest} (repeats, and 2 * cycles) so a "
                f"loop fits in it; got {self.window}"
            )
        if isinstance(self.exempt, str):
            raise ConfigError(
                f"LoopGuard.exempt takes a collection of tool names, got the string "
                f"{self.exempt!r}; write exempt=[{self.exempt!r}]"
            )
        object.__setattr__(self, "exempt", frozenset(self.exempt))

    def policy(self) -> LoopGuardPolicy:
        """The effect policy that applies this guard to tool calls."""
        return LoopGuardPolicy(self)


class _LoopState:
    """What the guard remembers of one run."""

    __slots__ = (
        "recent",
        "step",
        "step_key",
        "step_more",
        "step_verdict",
        "stop_reason",
        "warned_step",
    )

    def __init__(self) -> None:
        self.recent: list[_Key] = []
        """The last `window` calls, oldest first (changed in place: no new container per
        call for the collector to count)."""
        self.step = -1
        self.step_key: _Key | None = None
        """The current step's first distinct call (most steps have only one) ..."""
        self.step_verdict = _PASSED
        """... and the verdict on it."""
        self.step_more: dict[_Key, int] | None = None
        """The verdicts on the step's other distinct calls (None while it has none)."""
        self.warned_step: int | None = None
        """The step whose call was answered with the warning (None until one was)."""
        self.stop_reason: str | None = None
        """Why the guard stopped the run (None while it has not)."""


class LoopGuardPolicy:
    """The effect policy of a `LoopGuard` (kinds ``{"tool"}``); per-run state lives in
    `RunState.extra("loop_guard", ...)`."""

    kinds: ClassVar[frozenset[str]] = frozenset({"tool"})
    __slots__ = ("_exempt", "_window", "guard")

    def __init__(self, guard: LoopGuard) -> None:
        self.guard = guard
        self._exempt = guard.exempt
        self._window = guard.window

    def __call__(self, effect: ToolEffect, call_next: CallNext) -> Awaitable[Any]:
        # A plain function: a call that is no loop goes on without a frame of ours.
        call = effect.call
        name = call.name
        if name in self._exempt:
            return call_next(effect)
        run = effect.run
        state: _LoopState = run.extra("loop_guard", _LoopState)
        key = f"{name}\n{_canonical(effect)}"
        if state.stop_reason is not None:  # the run is stopping: none of its calls go out
            verdict = _STOPPED
        else:
            if state.step != run.step:
                state.step, state.step_key, state.step_more = run.step, None, None
            verdict = self._verdict(state, key, run.step)
        if verdict == _PASSED:
            return call_next(effect)
        if verdict == _WARNED:
            return _answer(ToolResult.of(call, _warning(self.guard, state, key), "error"))
        return _stop(LoopDetected(state.stop_reason or "the model kept repeating tool calls"))

    def _verdict(self, state: _LoopState, key: _Key, step: int) -> int:
        """The verdict on `key` in this step: judged once, shared by its repeats."""
        if key == state.step_key:
            return state.step_verdict
        more = state.step_more
        found = None if more is None else more.get(key)
        if found is None:
            found = self._judge(state, key, step)
            if state.step_key is None:  # no container for a step of one distinct call
                state.step_key, state.step_verdict = key, found
            elif more is None:
                state.step_more = {key: found}
            else:
                more[key] = found
        return found

    def _judge(self, state: _LoopState, key: _Key, step: int) -> int:
        """Record `key` and say whether it completes a loop (and what to do about it)."""
        recent = state.recent
        recent.append(key)
        if len(recent) > self._window:
            del recent[0]
        if not _loops(self.guard, recent, key):
            return _PASSED
        if state.warned_step is None or state.warned_step == step:
            state.warned_step = step
            return _WARNED
        state.stop_reason = (
            f"the model went on repeating tool calls after being told it was looping: "
            f"{_describe(self.guard, recent, key)}. Check the tool results and the "
            "instructions in result.messages, or loosen the guard "
            "(LoopGuard(repeats=..., cycles=..., exempt=[...]))"
        )
        return _STOPPED


def _loops(guard: LoopGuard, recent: list[_Key], key: _Key) -> bool:
    """Whether `key`, just appended, completes a repeat or a cycle in `recent`."""
    if recent.count(key) >= guard.repeats:
        return True
    cycles = guard.cycles
    if not cycles:
        return False
    size = len(recent)
    for period in _PERIODS:
        span = period * cycles
        if span > size:
            break
        if recent[-1 - period] != key:  # the cheap test that rules out most calls
            continue
        # Every call of the span equals the one a period before it, and the cycle is
        # more than one call repeated (that is `repeats`' business).
        tail = recent[size - span :]
        if all(tail[i] == tail[i + period] for i in range(span - period)) and any(
            tail[i] != key for i in range(period)
        ):
            return True
    return False


def _cycle_of(guard: LoopGuard, recent: list[_Key], key: _Key) -> list[str] | None:
    """The tool names of the cycle that `key` completed, if it was a cycle."""
    if not guard.cycles or recent.count(key) >= guard.repeats:
        return None
    size = len(recent)
    for period in _PERIODS:
        span = period * guard.cycles
        if span > size:
            break
        tail = recent[size - span :]
        if all(tail[i] == tail[i + period] for i in range(span - period)):
            return [_name(call) for call in tail[:period]]
    return None


def _describe(guard: LoopGuard, recent: list[_Key], key: _Key) -> str:
    cycle = _cycle_of(guard, recent, key)
    if cycle is not None:
        return (
            f"the recent tool calls repeat the same sequence ({' → '.join(cycle)}) "
            f"{guard.cycles} times with the same arguments"
        )
    return (
        f"{_name(key)!r} was called with the same arguments {recent.count(key)} times in "
        f"the last {len(recent)} tool calls"
    )


def _warning(guard: LoopGuard, state: _LoopState, key: _Key) -> str:
    name = _name(key)
    return (
        f"Loop detected: {_describe(guard, state.recent, key)}. Calling it again would "
        f"give the same result, so {name!r} was not run this time. Use the results you "
        "already have, try a different approach, or give your final answer now. "
        "Repeating the same calls again will stop the run."
    )


def _name(key: _Key) -> str:
    return key.partition("\n")[0]  # a tool's name has no newline (see `tether.tool`)


def _canonical(effect: ToolEffect) -> str:
    """The call's validated arguments as JSON with sorted keys (its raw JSON if that fails)."""
    arguments = effect.arguments
    if not arguments:
        return "{}"
    try:
        return _encode(arguments)
    except (TypeError, ValueError, RecursionError):
        return effect.call.arguments_json()


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)  # Decimal, datetime, enums, ...: stable within a run


# Built once: `json.dumps` with options builds an encoder per call (a third of the cost).
_encode = json.JSONEncoder(
    sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_jsonable
).encode


async def _answer(result: ToolResult) -> ToolResult:
    return result


async def _stop(exc: LoopDetected) -> ToolResult:
    raise exc
