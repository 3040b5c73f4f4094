"""`LoopGuard` driven with a fake `call_next` and real `ToolEffect`/`RunState` objects."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from tether import Agent, Policy, tool
from tether.errors import ConfigError, LoopDetected
from tether.messages import RunState, ToolCall, ToolEffect, ToolResult
from tether.policy.loop_guard import LoopGuard, LoopGuardPolicy
from tether.testing import ScriptedModel, call, reply


class Next:
    """A fake rest-of-the-onion that records which calls went through."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def __call__(self, effect: ToolEffect) -> ToolResult:
        self.calls.append(effect.call.id)
        return ToolResult.of(effect.call, "done")


class Run:
    """One run's state, and a way to send it tool calls one step at a time."""

    def __init__(self, policy: LoopGuardPolicy, run_id: str = "r") -> None:
        self.policy = policy
        self.state = RunState(run_id=run_id, agent="a")
        self.next = Next()
        self.ids = 0

    def effect(self, name: str, index: int = 0, **arguments: Any) -> ToolEffect:
        self.ids += 1
        call = ToolCall(id=f"c{self.ids}", name=name, arguments=arguments)
        return ToolEffect(self.state, call, index, arguments)

    async def step(self, name: str, **arguments: Any) -> ToolResult:
        """A new step with one call of `name`."""
        self.state.step += 1
        result: ToolResult = await self.policy(self.effect(name, **arguments), self.next)
        return result


def guard(**options: Any) -> LoopGuardPolicy:
    return LoopGuard(**options).policy()


class TestRepeats:
    async def test_third_same_call_is_warned_not_run_then_fourth_stops(self) -> None:
        run = Run(guard())
        assert (await run.step("search", q="x")).status == "ok"
        assert (await run.step("search", q="x")).status == "ok"
        warned = await run.step("search", q="x")
        assert warned.status == "error"
        assert "'search'" in warned.content
        assert "Loop detected" in warned.content
        assert "same result" in warned.content
        assert "final answer" in warned.content
        assert warned.call_id == "c3"
        assert run.next.calls == ["c1", "c2"]  # the warned call was not run
        with pytest.raises(LoopDetected, match="'search'"):
            await run.step("search", q="x")
        assert run.next.calls == ["c1", "c2"]

    async def test_argument_order_and_coercions_do_not_matter(self) -> None:
        run = Run(guard())
        await run.step("f", a=1, b=2)
        await run.step("f", b=2, a=1)
        assert (await run.step("f", a=1, b=2)).status == "error"

    async def test_different_arguments_are_different_calls(self) -> None:
        run = Run(guard())
        for page in range(20):
            assert (await run.step("fetch", page=page)).status == "ok"
        assert len(run.next.calls) == 20

    async def test_custom_repeats(self) -> None:
        run = Run(guard(repeats=5, cycles=0))
        for _ in range(4):
            assert (await run.step("f")).status == "ok"
        assert (await run.step("f")).status == "error"

    async def test_window_respected(self) -> None:
        # Two of the same call within the last 4 calls is a loop; further apart it is not.
        spaced = Run(guard(repeats=2, window=4, cycles=0))
        for name in ("f", "g", "h", "i"):
            await spaced.step(name)
        assert (await spaced.step("f")).status == "ok"  # the first `f` left the window
        close = Run(guard(repeats=2, window=4, cycles=0))
        for name in ("f", "g", "h"):
            await close.step(name)
        assert (await close.step("f")).status == "error"

    async def test_warning_then_different_calls_then_new_loop_stops(self) -> None:
        run = Run(guard())
        for _ in range(3):
            await run.step("a")
        for i in range(12):  # the model moved on; the window forgets the `a` calls
            assert (await run.step("b", i=i)).status == "ok"
        await run.step("c")
        await run.step("c")
        with pytest.raises(LoopDetected):  # a second loop in the run: no second warning
            await run.step("c")

    async def test_validated_values_that_json_cannot_encode(self) -> None:
        class Point(BaseModel):
            x: int

        run = Run(guard())
        for _ in range(2):
            await run.step("f", p=Point(x=1), amount=Decimal("1.50"), tags={"b", "a"})
        assert (await run.step("f", p=Point(x=2), amount=Decimal("1.50"))).status == "ok"
        warned = await run.step("f", p=Point(x=1), amount=Decimal("1.50"), tags={"a", "b"})
        assert warned.status == "error"

    async def test_falls_back_to_the_raw_arguments(self) -> None:
        run = Run(guard())
        circular: dict[str, Any] = {}
        circular["self"] = circular
        results = []
        for _ in range(3):
            run.state.step += 1
            call = ToolCall(id="c", name="f", arguments='{"raw": 1}')
            results.append(await run.policy(ToolEffect(run.state, call, 0, circular), run.next))
        assert [r.status for r in results] == ["ok", "ok", "error"]

    async def test_exempt_tools_are_never_counted(self) -> None:
        run = Run(guard(exempt=["poll"]))
        for _ in range(10):
            assert (await run.step("poll", job=1)).status == "ok"
        assert len(run.next.calls) == 10


class TestCycles:
    async def test_period_two(self) -> None:
        run = Run(guard())
        assert (await run.step("search", q="x")).status == "ok"
        assert (await run.step("fetch", url="u")).status == "ok"
        assert (await run.step("search", q="x")).status == "ok"
        warned = await run.step("fetch", url="u")
        assert warned.status == "error"
        assert "search → fetch" in warned.content
        assert run.next.calls == ["c1", "c2", "c3"]
        with pytest.raises(LoopDetected, match="'search'"):
            await run.step("search", q="x")

    async def test_period_three(self) -> None:
        run = Run(guard())
        for name in ("a", "b", "c", "a", "b"):
            assert (await run.step(name)).status == "ok"
        warned = await run.step("c")
        assert warned.status == "error"
        assert "a → b → c" in warned.content

    async def test_three_cycles_needed_when_configured(self) -> None:
        run = Run(guard(cycles=3, repeats=5))
        for name in "ababa":
            assert (await run.step(name)).status == "ok"
        assert (await run.step("b")).status == "error"

    async def test_same_names_different_arguments_are_no_cycle(self) -> None:
        run = Run(guard())
        for i in range(10):
            assert (await run.step("search", q=i)).status == "ok"
            assert (await run.step("fetch", url=i)).status == "ok"

    async def test_cycles_off(self) -> None:
        run = Run(guard(cycles=0))
        for name in "abab":  # a cycle, but no call three times yet
            assert (await run.step(name)).status == "ok"
        assert (await run.step("a")).status == "error"  # repeats still applies

    async def test_a_broken_cycle_is_not_flagged(self) -> None:
        run = Run(guard())
        for name in "abacbdce":
            assert (await run.step(name)).status == "ok"


class TestParallelCalls:
    async def test_identical_calls_of_one_step_count_once(self) -> None:
        run = Run(guard())
        for _ in range(2):  # two steps, each asking for the same thing three times at once
            run.state.step += 1
            for index in range(3):
                result = await run.policy(run.effect("f", index, x=1), run.next)
                assert result.status == "ok"
        assert len(run.next.calls) == 6
        run.state.step += 1
        first = await run.policy(run.effect("f", 0, x=1), run.next)
        twin = await run.policy(run.effect("f", 1, x=1), run.next)
        assert (first.status, twin.status) == ("error", "error")  # the same verdict
        assert twin.call_id != first.call_id

    async def test_second_loop_in_the_warned_step_is_only_warned(self) -> None:
        run = Run(guard(cycles=0))
        for _ in range(2):
            run.state.step += 1
            await run.policy(run.effect("a", 0), run.next)
            await run.policy(run.effect("b", 1), run.next)
        run.state.step += 1
        a = await run.policy(run.effect("a", 0), run.next)
        b = await run.policy(run.effect("b", 1), run.next)
        assert (a.status, b.status) == ("error", "error")  # the model has not seen it yet
        run.state.step += 1
        with pytest.raises(LoopDetected):
            await run.policy(run.effect("a", 0), run.next)

    async def test_nothing_goes_out_once_the_run_is_stopped(self) -> None:
        run = Run(guard())
        for _ in range(3):
            await run.step("a")
        run.state.step += 1
        with pytest.raises(LoopDetected):
            await run.policy(run.effect("a", 0), run.next)
        with pytest.raises(LoopDetected):  # a different call of the same step
            await run.policy(run.effect("other", 1), run.next)
        assert run.next.calls == ["c1", "c2"]


class TestRuns:
    async def test_runs_are_independent(self) -> None:
        policy = guard()
        first, second = Run(policy, "r1"), Run(policy, "r2")
        for _ in range(2):
            await first.step("f")
            await second.step("f")
        assert (await first.step("f")).status == "error"
        assert (await second.step("f")).status == "error"
        with pytest.raises(LoopDetected):
            await first.step("f")
        assert (await second.step("g")).status == "ok"

    async def test_state_is_kept_under_its_own_key(self) -> None:
        run = Run(guard())
        await run.step("f")
        assert run.state.extra_key == "loop_guard"
        assert run.state.extras is None  # the run's first policy state needs no dict

    async def test_state_is_few_objects_changed_in_place(self) -> None:
        # With thousands of runs in flight, every container a run keeps or replaces per
        # call counts towards the collector's next collection.
        run = Run(guard())
        await run.step("fetch", page=-1)
        state = run.state.extra_value
        recent = state.recent
        for page in range(20):
            await run.step("fetch", page=page)
        assert state.recent is recent  # one list for the run, changed in place
        assert len(recent) == LoopGuard().window
        assert state.step_more is None  # one distinct call a step: no dict either
        run.state.step += 1  # a step of two distinct calls, and a repeat of the first
        for page in (100, 101, 100):
            result = await run.policy(run.effect("fetch", page=page), run.next)
            assert result.status == "ok"
        assert state.step_more == {"fetch\n" + '{"page":101}': 0}

    def test_policy_wraps_tool_calls_only(self) -> None:
        assert guard().kinds == frozenset({"tool"})

    async def test_a_passing_call_adds_no_frame(self) -> None:
        # The policy hands back call_next's own awaitable when the call goes through.
        run = Run(guard())
        run.state.step = 1
        sentinel = object()
        assert run.policy(run.effect("f"), lambda effect: sentinel) is sentinel  # type: ignore[arg-type]


class TestConfig:
    @pytest.mark.parametrize(
        ("options", "match"),
        [
            ({"repeats": 1}, "repeats must be >= 2"),
            ({"repeats": -3}, "repeats must be >= 2"),
            ({"cycles": 1}, "cycles must be >= 2, or 0"),
            ({"cycles": -1}, "cycles must be >= 2, or 0"),
            ({"window": 2}, "window must be >= 4"),
            ({"repeats": 5, "window": 4}, "window must be >= 5"),
            ({"exempt": "poll"}, r"exempt=\['poll'\]"),
        ],
    )
    def test_bad_config(self, options: dict[str, Any], match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            LoopGuard(**options)

    def test_defaults(self) -> None:
        assert LoopGuard() == LoopGuard(repeats=3, window=12, cycles=2)
        assert LoopGuard(exempt=["a"]).exempt == frozenset({"a"})
        hash(LoopGuard(exempt=["a"]))


_NAMES = st.sampled_from(["search", "fetch", "read", "write"])


@settings(max_examples=200, deadline=None)
@given(
    names=st.lists(_NAMES, min_size=1, max_size=60),
    repeats=st.integers(2, 5),
    cycles=st.sampled_from([0, 2, 3]),
    extra_window=st.integers(0, 10),
)
async def test_distinct_arguments_never_trigger(
    names: list[str], repeats: int, cycles: int, extra_window: int
) -> None:
    """Whatever tools are called, in whatever order, calls whose arguments are all
    distinct never look like a loop."""
    window = max(repeats, 3 * cycles) + extra_window
    run = Run(guard(repeats=repeats, window=window, cycles=cycles))
    for i, name in enumerate(names):
        assert (await run.step(name, n=i)).status == "ok"
    assert len(run.next.calls) == len(names)


def _reference_loops(
    history: list[tuple[str, int]], repeats: int, window: int, cycles: int
) -> bool:
    """Whether the last call of `history` completes a loop, by the definition, plainly."""
    recent = history[-window:]
    last = recent[-1]
    if recent.count(last) >= repeats:
        return True
    for period in (2, 3):
        span = period * cycles
        if not cycles or span > len(recent):
            continue
        tail = recent[-span:]
        repeating = all(tail[i] == tail[i + period] for i in range(span - period))
        if repeating and len(set(tail[:period])) > 1:
            return True
    return False


@settings(max_examples=300, deadline=None)
@given(
    calls=st.lists(st.tuples(st.sampled_from("abc"), st.integers(0, 1)), min_size=1, max_size=40),
    repeats=st.integers(2, 4),
    cycles=st.sampled_from([0, 2, 3]),
    extra_window=st.integers(0, 6),
)
async def test_agrees_with_the_definition(
    calls: list[tuple[str, int]], repeats: int, cycles: int, extra_window: int
) -> None:
    """One call per step: the first loop is warned, the next one stops the run, and both
    happen exactly where the plain definition says."""
    window = max(repeats, 2 * cycles) + extra_window
    run = Run(guard(repeats=repeats, window=window, cycles=cycles))
    loops = 0
    for i, (name, argument) in enumerate(calls):
        expected = _reference_loops(calls[: i + 1], repeats, window, cycles)
        if expected and loops == 1:
            with pytest.raises(LoopDetected):
                await run.step(name, x=argument)
            return
        result = await run.step(name, x=argument)
        assert result.status == ("error" if expected else "ok")
        loops += expected


class TestThroughAgent:
    """`Policy(loop_guard=...)` (on by default) through a whole run."""

    async def test_repeating_model_is_warned_then_stopped(self) -> None:
        runs: list[str] = []

        @tool
        async def lookup(city: str) -> str:
            runs.append(city)
            return "sunny"

        model = ScriptedModel([call("lookup", city="Paris") for _ in range(6)])
        agent = Agent(model=model, tools=[lookup])
        with pytest.raises(LoopDetected) as caught:
            await agent.run("Weather?")
        result = caught.value.result
        assert result is not None
        assert result.status == "loop"
        assert runs == ["Paris", "Paris"]  # the third call was not run, the fourth stopped
        assert model.position == 4
        warned = [m for m in result.messages if isinstance(m, ToolResult) and m.status == "error"]
        assert len(warned) == 1
        assert "Loop detected" in warned[0].content
        assert warned[0] in model.requests[3].messages  # the model saw the warning

    async def test_warned_model_that_answers_completes(self) -> None:
        @tool
        async def lookup(city: str) -> str:
            return "sunny"

        model = ScriptedModel([*(call("lookup", city="Paris") for _ in range(3)), reply("Sunny.")])
        result = await Agent(model=model, tools=[lookup]).run("Weather?")
        assert result.status == "completed"
        assert result.output == "Sunny."

    async def test_guard_off(self) -> None:
        @tool
        async def lookup(city: str) -> str:
            return "sunny"

        model = ScriptedModel([*(call("lookup", city="Paris") for _ in range(5)), reply("Sunny.")])
        result = await Agent(model=model, tools=[lookup], policy=Policy(loop_guard=None)).run("?")
        assert result.status == "completed"
