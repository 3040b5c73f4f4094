"""`Breaker` driven with a fake `call_next` and a fake clock: when circuits open, fail
fast, probe and close."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tether.errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    ModelAuthError,
    ModelConnectionError,
    ModelHTTPError,
    ModelRateLimited,
    ModelTimeout,
    ToolArgumentsInvalid,
    ToolError,
    ToolExecutionError,
    ToolTimeout,
)
from tether.messages import (
    AssistantMessage,
    EffectPolicy,
    ModelEffect,
    ModelRequest,
    ModelResponse,
    RunState,
    ToolCall,
    ToolEffect,
    ToolResult,
    UserMessage,
)
from tether.policy.breaker import Breaker, InMemoryBreakerStore, is_availability_failure
from tether.policy.retry import Retry
from tether.testing import FakeClock
from tether.tools import tool

RESPONSE = ModelResponse(message=AssistantMessage(), model="test:m")


class Next:
    """A fake rest-of-the-onion: fails with `error` while it is set, else answers."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error
        self.calls = 0

    async def __call__(self, effect: Any) -> Any:
        self.calls += 1
        if self.error is not None:
            raise self.error
        if isinstance(effect, ToolEffect):
            return ToolResult.of(effect.call, "ok")
        return RESPONSE


def model_effect() -> ModelEffect:
    return ModelEffect(
        RunState(run_id="r", agent="a"), ModelRequest(messages=[UserMessage(content="hi")])
    )


def tool_effect() -> ToolEffect:
    return ToolEffect(RunState(run_id="r", agent="a"), ToolCall(id="c1", name="lookup"), 0, {})


async def fail(policy: EffectPolicy, call_next: Next, times: int = 1) -> None:
    for _ in range(times):
        with pytest.raises(type(call_next.error)):
            await policy(model_effect(), call_next)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def breaker(clock: FakeClock) -> Breaker:
    return Breaker(failures=3, window=10.0, cooldown=30.0, clock=clock)


KEY = "model:test:m"


class TestOpening:
    @pytest.mark.parametrize(
        "error",
        [
            ModelHTTPError("boom", retryable=True, status_code=500),
            ModelRateLimited("slow", status_code=429),
            ModelTimeout("slow"),
            ModelConnectionError("refused"),
        ],
        ids=["500", "429", "timeout", "connection"],
    )
    async def test_opens_after_n_failures_in_the_window(
        self, breaker: Breaker, clock: FakeClock, error: Exception
    ) -> None:
        policy = breaker.for_model("test:m")
        call_next = Next(error)
        await fail(policy, call_next, 2)
        assert await breaker.state(KEY) == "closed"
        clock.advance(9.0)
        await fail(policy, call_next)
        assert await breaker.state(KEY) == "open"

        with pytest.raises(CircuitOpen) as caught:
            await policy(model_effect(), call_next)
        assert call_next.calls == 3  # failed fast: call_next never called
        assert caught.value.target == KEY
        assert caught.value.retry_after == pytest.approx(30.0)

    async def test_failures_spread_beyond_the_window_do_not_open(
        self, breaker: Breaker, clock: FakeClock
    ) -> None:
        policy = breaker.for_model("test:m")
        call_next = Next(ModelTimeout("slow"))
        for _ in range(10):
            await fail(policy, call_next)
            clock.advance(5.1)  # any three failures span more than 10 s
        assert await breaker.state(KEY) == "closed"
        assert call_next.calls == 10

    async def test_successes_in_between_do_not_reset_the_count(self, breaker: Breaker) -> None:
        policy = breaker.for_model("test:m")
        failing, working = Next(ModelTimeout("slow")), Next()
        for _ in range(2):
            await fail(policy, failing)
            await policy(model_effect(), working)
        await fail(policy, failing)
        assert await breaker.state(KEY) == "open"

    @pytest.mark.parametrize(
        "error",
        [
            ModelAuthError("bad key", status_code=401),
            ModelHTTPError("bad request", status_code=400),
            ToolArgumentsInvalid("bad args"),
            ToolError("order 42 does not exist"),
            BudgetExceeded("budget"),
            ValueError("a bug"),
        ],
        ids=["401", "400", "arguments", "tool-error", "budget", "plain"],
    )
    async def test_other_errors_do_not_count(self, breaker: Breaker, error: Exception) -> None:
        policy = breaker.for_model("test:m")
        call_next = Next(error)
        await fail(policy, call_next, 10)
        assert await breaker.state(KEY) == "closed"
        assert call_next.calls == 10

    async def test_cancellation_does_not_count(self, breaker: Breaker) -> None:
        policy = breaker.for_model("test:m")
        call_next = Next(asyncio.CancelledError())
        await fail(policy, call_next, 10)
        assert await breaker.state(KEY) == "closed"


class TestRecovery:
    async def open_it(self, breaker: Breaker) -> tuple[EffectPolicy, Next]:
        policy = breaker.for_model("test:m")
        call_next = Next(ModelTimeout("slow"))
        await fail(policy, call_next, breaker.failures)
        assert await breaker.state(KEY) == "open"
        return policy, call_next

    async def test_fails_fast_until_the_cooldown(self, breaker: Breaker, clock: FakeClock) -> None:
        policy, call_next = await self.open_it(breaker)
        clock.advance(29.0)
        with pytest.raises(CircuitOpen) as caught:
            await policy(model_effect(), call_next)
        assert caught.value.retry_after == pytest.approx(1.0)
        assert call_next.calls == 3
        clock.advance(1.0)
        assert await breaker.state(KEY) == "half_open"

    async def test_a_successful_probe_closes(self, breaker: Breaker, clock: FakeClock) -> None:
        policy, call_next = await self.open_it(breaker)
        clock.advance(30.0)
        call_next.error = None
        assert await policy(model_effect(), call_next) is RESPONSE
        assert await breaker.state(KEY) == "closed"
        await policy(model_effect(), call_next)
        assert call_next.calls == 5

    async def test_a_failed_probe_reopens(self, breaker: Breaker, clock: FakeClock) -> None:
        policy, call_next = await self.open_it(breaker)
        clock.advance(30.0)
        await fail(policy, call_next)
        assert call_next.calls == 4
        assert await breaker.state(KEY) == "open"
        with pytest.raises(CircuitOpen) as caught:
            await policy(model_effect(), call_next)
        assert caught.value.retry_after == pytest.approx(30.0)  # a full cooldown again
        assert call_next.calls == 4

    @pytest.mark.parametrize("probes", [1, 3])
    async def test_half_open_lets_exactly_probes_through(
        self, clock: FakeClock, probes: int
    ) -> None:
        breaker = Breaker(failures=2, cooldown=10.0, probes=probes, clock=clock)
        policy, _ = await self.open_it(breaker)
        clock.advance(10.0)

        release = asyncio.Event()
        entered = 0

        async def slow(effect: Any) -> Any:
            nonlocal entered
            entered += 1
            await release.wait()
            return RESPONSE

        probing = [asyncio.create_task(policy(model_effect(), slow)) for _ in range(probes)]
        await asyncio.sleep(0)
        assert entered == probes
        with pytest.raises(CircuitOpen):  # every probe is out: the rest still fail fast
            await policy(model_effect(), slow)
        assert entered == probes

        release.set()
        assert await asyncio.gather(*probing) == [RESPONSE] * probes
        assert await breaker.state(KEY) == "closed"

    async def test_all_probes_must_succeed(self, clock: FakeClock) -> None:
        breaker = Breaker(failures=2, cooldown=10.0, probes=2, clock=clock)
        policy, failing = await self.open_it(breaker)
        clock.advance(10.0)
        await policy(model_effect(), Next())
        assert await breaker.state(KEY) == "half_open"
        await fail(policy, failing)
        assert await breaker.state(KEY) == "open"

    async def test_a_cancelled_probe_frees_its_slot(
        self, breaker: Breaker, clock: FakeClock
    ) -> None:
        policy, _ = await self.open_it(breaker)
        clock.advance(30.0)
        await fail(policy, Next(asyncio.CancelledError()))
        assert await breaker.state(KEY) == "half_open"
        await policy(model_effect(), Next())
        assert await breaker.state(KEY) == "closed"

    async def test_a_probe_that_never_reports_is_given_up_after_a_cooldown(
        self, breaker: Breaker, clock: FakeClock
    ) -> None:
        policy, _ = await self.open_it(breaker)
        clock.advance(30.0)
        hung = asyncio.create_task(policy(model_effect(), lambda e: asyncio.Event().wait()))
        await asyncio.sleep(0)
        with pytest.raises(CircuitOpen):
            await policy(model_effect(), Next())
        clock.advance(30.0)
        await policy(model_effect(), Next())
        assert await breaker.state(KEY) == "closed"
        hung.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hung
        assert await breaker.state(KEY) == "closed"  # its late news changes nothing


class TestKeys:
    async def test_independent_keys_are_independent(self, breaker: Breaker) -> None:
        first, second = breaker.for_model("a:one"), breaker.for_model("a:two")
        await fail(first, Next(ModelTimeout("slow")), 3)
        assert await breaker.state("model:a:one") == "open"
        assert await breaker.state("model:a:two") == "closed"
        assert await second(model_effect(), Next()) is RESPONSE

    async def test_a_shared_store_shares_state(self, clock: FakeClock) -> None:
        store = InMemoryBreakerStore()
        one = Breaker(failures=2, store=store, clock=clock).for_model("test:m")
        other = Breaker(failures=2, cooldown=5.0, store=store, clock=clock).for_model("test:m")
        await fail(one, Next(ModelTimeout("slow")), 2)
        call_next = Next()
        with pytest.raises(CircuitOpen):
            await other(model_effect(), call_next)
        assert call_next.calls == 0

    async def test_closed_says_true_only_while_before_call_would_let_it_go_unchanged(
        self, clock: FakeClock
    ) -> None:
        store = InMemoryBreakerStore()
        cfg = Breaker(failures=2, cooldown=5.0, store=store, clock=clock)
        policy = cfg.for_model("test:m")
        assert store.closed(KEY)  # never failed
        await fail(policy, Next(ModelTimeout("slow")))
        assert store.closed(KEY)  # failed once: still closed
        await fail(policy, Next(ModelTimeout("slow")))
        assert not store.closed(KEY)  # open
        clock.advance(5.0)
        assert not store.closed(KEY)  # half-open: a probe must be counted
        assert await policy(model_effect(), Next()) is RESPONSE
        assert store.closed(KEY)  # the probe closed it

    async def test_a_shared_store_honours_each_configs_count(self, clock: FakeClock) -> None:
        store = InMemoryBreakerStore()
        strict = Breaker(failures=2, store=store, clock=clock)
        lenient = Breaker(failures=4, store=store, clock=clock)
        await fail(strict.for_model("test:m"), Next(ModelTimeout("slow")))
        await fail(lenient.for_model("test:m"), Next(ModelTimeout("slow")), 2)
        assert await lenient.state(KEY) == "closed"
        await fail(lenient.for_model("test:m"), Next(ModelTimeout("slow")))
        assert await lenient.state(KEY) == "open"

    async def test_a_retried_call_counts_once(self, breaker: Breaker, clock: FakeClock) -> None:
        retry = Retry(attempts=3, clock=clock).for_model("test:m")
        assert retry is not None
        policy = breaker.for_model("test:m")
        call_next = Next(ModelTimeout("slow"))

        async def retried(effect: Any) -> Any:
            return await retry(effect, call_next)

        for _ in range(2):
            with pytest.raises(ModelTimeout):
                await policy(model_effect(), retried)
        assert call_next.calls == 6
        assert await breaker.state(KEY) == "closed"

    async def test_default_stores_are_not_shared(self, clock: FakeClock) -> None:
        one = Breaker(failures=2, clock=clock).for_model("test:m")
        other = Breaker(failures=2, clock=clock).for_model("test:m")
        await fail(one, Next(ModelTimeout("slow")), 2)
        assert await other(model_effect(), Next()) is RESPONSE

    async def test_tools_count_timeouts_and_crashes(self, breaker: Breaker) -> None:
        lookup = tool(lambda: "x", name="lookup")
        policy = breaker.for_tool(lookup)
        assert policy.kinds == frozenset({"tool"})
        for error in (ToolTimeout("t"), ToolExecutionError("e"), ToolTimeout("t")):
            with pytest.raises(type(error)):
                await policy(tool_effect(), Next(error))
        assert await breaker.state("tool:lookup") == "open"
        call_next = Next()
        with pytest.raises(CircuitOpen) as caught:
            await policy(tool_effect(), call_next)
        assert caught.value.target == "tool:lookup"
        assert call_next.calls == 0
        assert await breaker.state(KEY) == "closed"

    def test_model_policies_wrap_model_effects_only(self, breaker: Breaker) -> None:
        assert breaker.for_model("test:m").kinds == frozenset({"model"})


class TestClassification:
    def test_availability_failures(self) -> None:
        assert is_availability_failure(ModelTimeout("t"))
        assert is_availability_failure(ModelHTTPError("x", status_code=503, retryable=True))
        assert is_availability_failure(ToolExecutionError("e"))
        assert not is_availability_failure(ModelHTTPError("x", status_code=400))
        assert not is_availability_failure(ToolError("e"))
        assert not is_availability_failure(CircuitOpen("open", target=KEY))
        assert not is_availability_failure(asyncio.CancelledError())


class TestConfig:
    @pytest.mark.parametrize(
        ("options", "named"),
        [
            ({"failures": 0}, "failures"),
            ({"failures": 1.5}, "failures"),
            ({"window": 0}, "window"),
            ({"window": float("inf")}, "window"),
            ({"cooldown": -1}, "cooldown"),
            ({"probes": 0}, "probes"),
            ({"probes": True}, "probes"),
        ],
    )
    def test_bad_values_name_the_accepted_form(self, options: dict[str, Any], named: str) -> None:
        with pytest.raises(ConfigError, match=rf"Breaker\.{named} must be"):
            Breaker(**options)
