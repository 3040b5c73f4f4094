"""The chaos suite: 1,000 seeded runs through every reliability policy at once, with faults.

Each run follows a small script (2 to 5 steps, one or two tool calls a step, a few runs
stuck repeating one call) on a fallback chain of three faulty models; the tools are
faulty too. Every policy is on: retries, breakers, deployment and per-user rate limits,
a budget, the loop guard, a run timeout. All of them share one `FakeClock`, so minutes
of backoff take no wall time and concurrent runs share one virtual timeline.

The workload runs once per module (in batches of concurrent runs); each test then checks
one invariant against what actually happened: the runs' outcomes, every call the faulty
models and tools received (`FaultRecord`s, with virtual times), every clock sleep,
every retry the policy announced, every breaker that opened.

`benchmarks/chaos.py` runs the same workload and reports where its time goes.
"""

from __future__ import annotations

import asyncio
import bisect
import functools
import itertools
import math
import random
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import pytest

from tether import Agent, ModelSettings, Policy, RunResult, RunStopped, TetherError, tool
from tether.errors import (
    BudgetExceeded,
    ModelError,
    ModelRateLimited,
)
from tether.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCall,
    Usage,
    UserMessage,
)
from tether.policy.breaker import (
    Breaker,
    BreakerState,
    InMemoryBreakerStore,
    is_availability_failure,
)
from tether.policy.budget import Budget
from tether.policy.loop_guard import LoopGuard
from tether.policy.ratelimit import RateLimits
from tether.policy.retry import Retry, RetryAttempt, is_retryable
from tether.policy.tokens import estimate_prompt_tokens
from tether.testing import (
    FakeClock,
    FaultRecord,
    FaultyModel,
    FaultyTool,
    FunctionModel,
    faulty_tool,
)

SEED = 20_251_122
RUNS = 1_000
BATCH = 100
USERS = 40

TIERS = ("openai:gpt-4.1-mini", "anthropic:claude-haiku-4-5", "openai:gpt-4.1-nano")
MODEL_FAULTS = ("429", "500", "timeout", "reset", "malformed", "slow") * 2 + ("400",)
"""Drawn uniformly: a non-retryable 400 is one fault in 13, each transient kind 2 in 13."""
RETRY_AFTER = {TIERS[0]: 2.0, TIERS[1]: 0.5, TIERS[2]: 90.0}
"""The third tier's Retry-After is past `max_retry_after`: its 429s are never waited for."""
OUTAGES = {TIERS[0]: [(60.0, 120.0), (300.0, 330.0)], TIERS[1]: [(200.0, 215.0)], TIERS[2]: []}
"""Virtual-time windows in which a tier is down (every call a 500): its breaker's case."""
SLOW = {TIERS[0]: 3.0, TIERS[1]: 6.0, TIERS[2]: 1.0}
"""The second tier's slow calls run past the model timeout (`MODEL_TIMEOUT`)."""
MODEL_TIMEOUT = 4.0
MAX_TOKENS = 512

ATTEMPTS = 3
TOOL_ATTEMPTS = 2
MAX_RETRY_AFTER = 60.0
FAILURES, WINDOW, COOLDOWN = 6, 30.0, 15.0
RPM, USER_RPM, MAX_WAIT = 240, 20, 5.0
RUN_USD, RUN_TOOL_CALLS = 0.007, 6
TOOL_RETRIES = {"lookup": 2, "lookup_cache": None, "add": None, "charge": 0}
"""`@tool(retries=...)` of each tool; None uses `Retry(tool_attempts=...)`."""


# --- the scripts ------------------------------------------------------------------------------


@functools.cache
def script(run: int) -> tuple[tuple[tuple[str, dict[str, Any]], ...], ...]:
    """The tool calls of each step of run `run` (its last step answers)."""
    rng = random.Random(SEED * 7919 + run)
    steps = rng.randint(2, 5)
    stuck = rng.random() < 0.05  # the model repeats one call: the loop guard's case
    out = []
    for step in range(1, steps):
        if stuck:
            out.append((("lookup", {"key": f"{run}-stuck"}),))
            continue
        first = rng.choice(["lookup", "add", "charge"])
        calls = [_call(first, run, step, 0)]
        if rng.random() < 0.3:
            calls.append(_call("add" if first != "add" else "lookup", run, step, 1))
        out.append(tuple(calls))
    return tuple(out)


def _call(name: str, run: int, step: int, index: int) -> tuple[str, dict[str, Any]]:
    if name == "add":
        return name, {"a": run, "b": step * 10 + index}
    if name == "charge":
        return name, {"order": f"{run}-{step}"}
    return name, {"key": f"{run}-{step}-{index}"}


def run_of_arguments(arguments: dict[str, Any]) -> int:
    """The run a tool call belongs to (every script's arguments name it)."""
    if "a" in arguments:
        return int(arguments["a"])
    return int(str(next(iter(arguments.values()))).split("-")[0])


def run_of(request: ModelRequest) -> int:
    """The run a request belongs to (its prompt is `run <n>`)."""
    for message in request.messages:
        if isinstance(message, UserMessage) and message.content.startswith("run "):
            return int(message.content.split()[1])
    raise AssertionError("a request without its run's prompt")


def respond(name: str, request: ModelRequest) -> ModelResponse:
    """The next step of the run's script, billed honestly: the prompt as estimated (the
    budget's stated assumption) and no more output than `max_tokens`."""
    run = run_of(request)
    step = sum(isinstance(m, AssistantMessage) for m in request.messages) + 1
    steps = script(run)
    parts: list[TextPart | ToolCall]
    if step <= len(steps):
        parts = [
            ToolCall(id=f"c{step}_{i}", name=tool_name, arguments=arguments)
            for i, (tool_name, arguments) in enumerate(steps[step - 1])
        ]
    else:
        parts = [TextPart(text=f"done {run}")]
    max_tokens = request.settings.max_tokens or MAX_TOKENS
    usage = Usage(
        input_tokens=estimate_prompt_tokens(request),
        output_tokens=min(max_tokens, 60 + 40 * len(parts)),
    )
    return ModelResponse(
        message=AssistantMessage(parts=parts),
        usage=usage,
        model=name,
        finish_reason="tool_calls" if isinstance(parts[0], ToolCall) else "stop",
    )


# --- the tools ------------------------------------------------------------------------------


async def lookup(key: str) -> str:
    """Look a key up in the primary store."""
    return f"value of {key}"


async def lookup_cache(key: str) -> str:
    """Look a key up in the cache (the fallback of `lookup`)."""
    return f"cached value of {key}"


async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def charge(order: str) -> str:
    """Charge an order: must never run twice for one call."""
    return f"charged {order}"


# --- the world ----------------------------------------------------------------------------------


class RecordingBreakerStore(InMemoryBreakerStore):
    """The in-memory store, noting when each circuit opens or closes again."""

    __slots__ = ("opened", "transitions")

    def __init__(self) -> None:
        super().__init__()
        self.opened: list[tuple[str, float]] = []
        self.transitions: list[tuple[str, float, BreakerState, BreakerState]] = []
        """(key, when, state before, state after): every change a call's outcome made."""

    async def record(self, key: str, ok: bool | None, now: float, cfg: Breaker) -> None:
        before: BreakerState = await self.state(key, now, cfg)
        await super().record(key, ok, now, cfg)
        after: BreakerState = await self.state(key, now, cfg)
        if after == "open" and before != "open":
            self.opened.append((key, now))
        if after != before:
            self.transitions.append((key, now, before, after))


@dataclass
class World:
    """Everything one chaos workload built and recorded."""

    clock: FakeClock
    tiers: dict[str, FaultyModel]
    tools: dict[str, FaultyTool]
    breakers: RecordingBreakerStore
    retries: list[RetryAttempt] = field(default_factory=list)
    outcomes: list[RunResult | BaseException] = field(default_factory=list)

    @property
    def results(self) -> list[RunResult]:
        """Every run's result: the completed ones, and the partial ones of stopped runs."""
        out = []
        for outcome in self.outcomes:
            if isinstance(outcome, RunResult):
                out.append(outcome)
            elif getattr(outcome, "result", None) is not None:
                out.append(outcome.result)  # type: ignore[union-attr]
        return out

    def statuses(self) -> Counter[str]:
        return Counter(
            o.status if isinstance(o, RunResult) else type(o).__name__ for o in self.outcomes
        )


def build(seed: int, *, primary_down: bool = False) -> tuple[World, Agent]:
    clock = FakeClock()
    tiers: dict[str, FaultyModel] = {}
    for position, name in enumerate(TIERS):
        down = primary_down and position == 0
        tiers[name] = FaultyModel(
            FunctionModel(functools.partial(respond, name), name=name),
            rate=1.0 if down else 0.3,
            faults=("500",) if down else MODEL_FAULTS,
            seed=seed + position,
            retry_after=RETRY_AFTER[name],
            slow_seconds=SLOW[name],
            outages=OUTAGES[name],
            clock=clock,
        )

    def faulty(fn: Any, offset: int, **options: Any) -> FaultyTool:
        wrapped = tool(**options)(fn)
        return faulty_tool(wrapped, rate=0.3, seed=seed + offset, slow_seconds=3.0, clock=clock)

    cache = faulty(lookup_cache, 10)
    tools = {
        "lookup": faulty(lookup, 11, timeout=2.0, retries=2, fallbacks=[cache]),
        "lookup_cache": cache,
        "add": faulty(add, 12),
        "charge": faulty(charge, 13, retryable=False),
    }
    breakers = RecordingBreakerStore()
    world = World(clock, tiers, tools, breakers)
    policy = Policy(
        max_steps=12,
        retry=Retry(
            attempts=ATTEMPTS,
            tool_attempts=TOOL_ATTEMPTS,
            base=0.5,
            cap=8.0,
            max_retry_after=MAX_RETRY_AFTER,
            clock=clock,
            seed=seed,
            on_retry=world.retries.append,
        ),
        breaker=Breaker(
            failures=FAILURES, window=WINDOW, cooldown=COOLDOWN, store=breakers, clock=clock
        ),
        rate_limits=RateLimits(
            requests_per_minute=RPM,
            user_requests_per_minute=USER_RPM,
            max_wait=MAX_WAIT,
            clock=clock,
        ),
        budget=Budget(run_usd=RUN_USD, run_tool_calls=RUN_TOOL_CALLS),
        loop_guard=LoopGuard(),
        timeout=60.0,  # real seconds: never reached, but on
    )
    agent = Agent(
        model=list(tiers.values()),
        tools=[tools["lookup"], tools["add"], tools["charge"]],
        policy=policy,
        model_settings=ModelSettings(max_tokens=MAX_TOKENS, timeout=MODEL_TIMEOUT),
    )
    return world, agent


async def run_workload(
    seed: int = SEED, *, runs: int = RUNS, batch: int = BATCH, primary_down: bool = False
) -> World:
    """Build the world and run `runs` runs on it, `batch` at a time, concurrently."""
    world, agent = build(seed, primary_down=primary_down)
    for start in range(0, runs, batch):
        world.outcomes += await asyncio.gather(
            *(
                agent.run(f"run {i}", user=f"u{i % USERS}")
                for i in range(start, min(start + batch, runs))
            ),
            return_exceptions=True,
        )
    return world


@pytest.fixture(scope="module")
def world() -> World:
    return asyncio.run(run_workload())


@pytest.fixture(scope="module")
def primary_down() -> World:
    return asyncio.run(run_workload(runs=300, primary_down=True))


# --- reading the records --------------------------------------------------------------------


def attempts(records: Iterable[FaultRecord]) -> list[list[FaultRecord]]:
    """Records grouped into logical calls: a retry sends the very same request (or tool
    arguments) object again, and the records keep each alive, so identity is unique."""
    groups: dict[int, list[FaultRecord]] = {}
    for record in records:
        groups.setdefault(id(record.request), []).append(record)
    return list(groups.values())


def admissions(records: Iterable[FaultRecord]) -> list[float]:
    """The times logical calls were let through to the target (their first attempts)."""
    return sorted(group[0].time for group in attempts(records))


def retryable_tool(name: str, exc: BaseException) -> bool:
    return is_retryable(exc, tool_retryable=TOOL_RETRIES[name] != 0)


# --- the invariants -------------------------------------------------------------------------


class TestOutcomes:
    def test_every_run_completes_or_stops_with_a_typed_error(self, world: World) -> None:
        assert len(world.outcomes) == RUNS
        for outcome in world.outcomes:
            if isinstance(outcome, RunResult):
                assert outcome.status == "completed"
                continue
            assert isinstance(outcome, TetherError), repr(outcome)
            partial = getattr(outcome, "result", None)
            assert isinstance(partial, RunResult)  # the loop attaches the partial run
            assert partial.status != "completed"
            if isinstance(outcome, RunStopped):
                assert partial.error

    def test_the_workload_meets_every_kind_of_trouble(self, world: World) -> None:
        """Not an invariant: a guard against a workload too tame to prove anything."""
        statuses = world.statuses()
        assert statuses["completed"] > RUNS / 3
        assert statuses["BudgetExceeded"] > 0
        assert statuses["LoopDetected"] > 0
        faults = Counter[str]()
        for model in world.tiers.values():
            faults.update(model.faults_injected())
        assert set(faults) == set(MODEL_FAULTS)
        assert world.retries
        assert world.breakers.opened
        assert any(r.degraded for r in world.results)
        assert any(s >= 1 for s in world.clock.sleeps)

    def test_completed_runs_answer_their_script(self, world: World) -> None:
        for i, outcome in enumerate(world.outcomes):
            if isinstance(outcome, RunResult):
                assert outcome.output == f"done {i}"


class TestRetries:
    def test_a_model_call_is_tried_at_most_attempts_times_per_tier(self, world: World) -> None:
        for model in world.tiers.values():
            for group in attempts(model.calls):
                assert len(group) <= ATTEMPTS

    def test_a_non_retryable_model_error_is_never_retried(self, world: World) -> None:
        seen = 0
        for model in world.tiers.values():
            for group in attempts(model.calls):
                for record in group[:-1]:  # every attempt followed by another
                    assert isinstance(record.error, ModelError), record
                    assert record.error.retryable, record
                    retry_after = record.error.retry_after
                    assert retry_after is None or retry_after <= MAX_RETRY_AFTER
                last = group[-1]
                if last.fault in ("400", "auth"):
                    seen += 1
        assert seen > 0

    def test_a_retry_after_beyond_the_maximum_is_not_waited_for(self, world: World) -> None:
        third = world.tiers[TIERS[2]]
        rate_limited = [g for g in attempts(third.calls) if g[0].fault == "429"]
        assert rate_limited
        assert all(len(group) == 1 for group in rate_limited)

    def test_every_wait_honours_retry_after(self, world: World) -> None:
        checked = 0
        for model in world.tiers.values():
            for group in attempts(model.calls):
                for failed, retried in itertools.pairwise(group):
                    gap = retried.time - failed.time
                    assert failed.ended is not None
                    assert retried.time >= failed.ended
                    if isinstance(failed.error, ModelRateLimited):
                        assert gap >= RETRY_AFTER[model.name] - 1e-9
                        checked += 1
        assert checked > 0
        # The policy said so too, and the clock saw each of those waits.
        sleeps = Counter(world.clock.sleeps)
        for retry in world.retries:
            after = getattr(retry.error, "retry_after", None)
            if after is not None:
                assert retry.wait >= after
            assert sleeps[retry.wait] > 0

    def test_tool_retries_stay_within_their_limits(self, world: World) -> None:
        for name, faulty in world.tools.items():
            retries = TOOL_RETRIES[name]
            limit = TOOL_ATTEMPTS if retries is None else retries + 1
            for group in attempts(faulty.calls):
                assert len(group) <= limit, name
                for record in group[:-1]:
                    assert record.error is not None
                    assert retryable_tool(name, record.error)

    def test_a_tool_that_must_not_run_twice_never_does(self, world: World) -> None:
        groups = attempts(world.tools["charge"].calls)
        assert any(g[0].failed for g in groups)
        assert all(len(group) == 1 for group in groups)


class TestBreakers:
    def targets(self, world: World) -> dict[str, list[FaultRecord]]:
        found = {f"model:{name}": model.calls for name, model in world.tiers.items()}
        found.update({f"tool:{name}": t.calls for name, t in world.tools.items()})
        return found

    def leaks(self, world: World, grace: float) -> list[tuple[str, float, list[float]]]:
        """Calls that reached a target more than `grace` seconds into its cool-down."""
        targets = self.targets(world)
        found = []
        for key, opened_at in world.breakers.opened:
            let_through = admissions(targets[key])
            # Calls let through at the very moment it opened were admitted before it did.
            start = bisect.bisect_right(let_through, opened_at + grace)
            end = bisect.bisect_left(let_through, opened_at + COOLDOWN)
            if start < end:
                found.append((key, opened_at, let_through[start:end]))
        return found

    def test_an_open_breaker_lets_nothing_through_until_it_cools_down(self, world: World) -> None:
        assert world.breakers.opened
        assert self.leaks(world, 0.0) == []

    def test_only_calls_queued_before_it_opened_get_through(self, world: World) -> None:
        """Whatever the order of the layers: a call the breaker let through before it
        opened waits at most `max_wait` for rate-limit capacity, and nothing else goes."""
        assert MAX_WAIT < COOLDOWN
        assert self.leaks(world, MAX_WAIT) == []

    def test_breakers_open_only_after_enough_failures(self, world: World) -> None:
        """From closed: `failures` availability failures within `window` (a logical call
        fails once its last attempt does); from half-open: a failed probe."""
        targets = self.targets(world)
        for key, opened_at, was, now in world.breakers.transitions:
            if now != "open":
                continue
            failed = [
                group[-1].ended
                for group in attempts(targets[key])
                if group[-1].error is not None
                and is_availability_failure(group[-1].error)
                and group[-1].ended is not None
                and opened_at - WINDOW <= group[-1].ended <= opened_at
            ]
            assert len(failed) >= (FAILURES if was == "closed" else 1), (key, opened_at, was)

    def test_a_cooled_down_breaker_lets_one_probe_through(self, world: World) -> None:
        """Between the end of the cool-down and the probe's verdict (the circuit closes
        or opens again), only `probes` calls (one, the default) reach the target."""
        targets = self.targets(world)
        changes: dict[str, list[float]] = defaultdict(list)
        for key, when, _, _ in world.breakers.transitions:
            changes[key].append(when)
        probed = 0
        for key, opened_at in world.breakers.opened:
            later = [t for t in changes[key] if t > opened_at]
            verdict = min(later, default=math.inf)
            let_through = admissions(targets[key])
            start = bisect.bisect_left(let_through, opened_at + COOLDOWN)
            end = bisect.bisect_left(let_through, verdict)
            assert end - start <= 1, (key, opened_at, let_through[start:end])
            probed += end - start
        assert probed > 0


class TestRateLimits:
    @staticmethod
    def check_bucket(times: list[float], per_minute: int) -> None:
        """At most `per_minute` in any 60 s window beyond one full bucket (the token
        bucket's exact bound: `burst + rate * T` over any interval of T seconds)."""
        rate = per_minute / 60.0
        for i in range(len(times)):
            # The tightest interval starting at times[i] that holds n calls.
            for j in range(i + per_minute, len(times)):
                allowed = per_minute + rate * (times[j] - times[i]) + 1e-6
                assert j - i + 1 <= allowed, (i, j, times[i], times[j])
        for i, start in enumerate(times):
            inside = bisect.bisect_right(times, start + 60.0) - i
            assert inside <= 2 * per_minute

    def test_no_tier_gets_more_than_its_rate(self, world: World) -> None:
        busiest = 0
        for model in world.tiers.values():
            admitted = admissions(model.calls)
            self.check_bucket(admitted, RPM)
            busiest = max(busiest, len(admitted))
        assert busiest > 2 * RPM  # enough traffic for the bound to be tested

    def test_no_user_gets_more_than_their_rate(self, world: World) -> None:
        by_user: dict[int, list[float]] = defaultdict(list)
        first_seen: dict[int, float] = {}
        for model in world.tiers.values():
            for group in attempts(model.calls):
                key = id(group[0].request)
                first_seen[key] = min(first_seen.get(key, math.inf), group[0].time)
                by_user[run_of(group[0].request) % USERS].append(key)
        for keys in by_user.values():
            self.check_bucket(sorted(first_seen[k] for k in set(keys)), USER_RPM)
        assert max(len(set(keys)) for keys in by_user.values()) > 2 * USER_RPM

    def test_the_limiters_bind(self, world: World) -> None:
        """Not an invariant: the limits are tight enough that calls waited for them (the
        clock's sleeps that are neither retry backoff nor slow faults) and that some
        moved on to a later tier because the wait would have been too long."""
        slow = sum(
            1
            for faulty in (*world.tiers.values(), *world.tools.values())
            for record in faulty.calls
            if record.fault == "slow"
        )
        assert len(world.clock.sleeps) > len(world.retries) + slow
        reasons = [reason for result in world.results for reason in result.degraded_reasons]
        assert any("RateLimited" in reason for reason in reasons)


class TestBudget:
    def test_no_run_spends_past_its_budget(self, world: World) -> None:
        for result in world.results:
            assert result.cost_usd <= RUN_USD + 1e-12, result.run_id

    def test_no_run_executes_more_tool_calls_than_its_budget(self, world: World) -> None:
        executed: Counter[int] = Counter()
        for name, faulty in world.tools.items():
            if name == "lookup_cache":
                continue  # a fallback serves the same call
            for group in attempts(faulty.calls):
                executed[run_of_arguments(group[0].request)] += 1
        assert executed
        assert max(executed.values()) <= RUN_TOOL_CALLS

    def test_a_stopped_run_says_why(self, world: World) -> None:
        stopped = [o for o in world.outcomes if isinstance(o, BudgetExceeded)]
        assert stopped
        for exc in stopped:
            assert exc.result is not None
            assert exc.result.status == "budget"


class TestFallbacks:
    def test_later_tiers_serve_when_earlier_ones_fail(self, world: World) -> None:
        degraded = [r for r in world.results if r.degraded]
        assert degraded
        assert any(TIERS[1] in reason for r in degraded for reason in r.degraded_reasons)

    def test_a_primary_that_is_down_never_serves(self, primary_down: World) -> None:
        primary = primary_down.tiers[TIERS[0]]
        assert primary.calls
        assert all(record.failed for record in primary.calls)
        completed = [o for o in primary_down.outcomes if isinstance(o, RunResult)]
        assert len(completed) > len(primary_down.outcomes) / 3
        for result in completed:
            assert result.degraded
            assert any("served by" in reason for reason in result.degraded_reasons)

    def test_its_breaker_spares_it_most_calls(self, primary_down: World) -> None:
        primary = primary_down.tiers[TIERS[0]]
        served = sum(
            1 for model in list(primary_down.tiers.values())[1:] for g in attempts(model.calls)
        )
        assert len(attempts(primary.calls)) < served / 2
        assert any(key == f"model:{TIERS[0]}" for key, _ in primary_down.breakers.opened)


class TestDeterminism:
    async def test_a_seed_replays_the_same_chaos(self) -> None:
        first = await run_workload(seed=3, runs=120, batch=40)
        again = await run_workload(seed=3, runs=120, batch=40)
        assert first.statuses() == again.statuses()
        assert first.clock.now() == again.clock.now()
        for name in TIERS:
            assert [c.fault for c in first.tiers[name].calls] == [
                c.fault for c in again.tiers[name].calls
            ]
