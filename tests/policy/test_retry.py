"""`Retry` driven with a fake `call_next` and a fake clock: what is retried, how often,
how long it waits."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest

from tether.errors import (
    BudgetExceeded,
    CircuitOpen,
    ConfigError,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelRateLimited,
    ModelResponseError,
    ModelTimeout,
    RateLimited,
    ToolArgumentsInvalid,
    ToolError,
    ToolExecutionError,
    ToolNotFound,
    ToolTimeout,
    UsageLimitExceeded,
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
from tether.policy.retry import Retry, RetryAttempt, is_retryable
from tether.testing import FakeClock
from tether.tools import tool

RESPONSE = ModelResponse(message=AssistantMessage(), model="test:m")


class Next:
    """A fake rest-of-the-onion: raises the given errors in turn, then answers."""

    def __init__(self, errors: Sequence[BaseException] = ()) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self, effect: Any) -> Any:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        if isinstance(effect, ToolEffect):
            return ToolResult.of(effect.call, "ok")
        return RESPONSE


def model_effect() -> ModelEffect:
    return ModelEffect(
        RunState(run_id="r", agent="a"), ModelRequest(messages=[UserMessage(content="hi")])
    )


def tool_effect(name: str = "lookup") -> ToolEffect:
    return ToolEffect(RunState(run_id="r", agent="a"), ToolCall(id="c1", name=name), 0, {})


def model_policy(clock: FakeClock, **options: Any) -> EffectPolicy:
    policy = Retry(clock=clock, seed=1, **options).for_model("test:m")
    assert policy is not None
    return policy


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def http(status: int) -> ModelHTTPError:
    return ModelHTTPError(f"HTTP {status}", status_code=status, retryable=status >= 500)


RETRYABLE_MODEL_ERRORS = [
    pytest.param(lambda: ModelRateLimited("slow down", status_code=429), id="429"),
    pytest.param(lambda: ModelHTTPError("boom", retryable=True, status_code=500), id="500"),
    pytest.param(lambda: ModelHTTPError("bad gw", retryable=True, status_code=503), id="503"),
    pytest.param(lambda: ModelTimeout("slow"), id="timeout"),
    pytest.param(lambda: ModelConnectionError("refused"), id="connection"),
]

NEVER_RETRIED = [
    pytest.param(lambda: ModelAuthError("bad key", status_code=401), id="401"),
    pytest.param(lambda: http(400), id="400"),
    pytest.param(lambda: http(404), id="404"),
    pytest.param(lambda: ModelResponseError("garbage"), id="unreadable"),
    pytest.param(lambda: CircuitOpen("open", target="model:test:m", retry_after=5), id="circuit"),
    pytest.param(lambda: UsageLimitExceeded("limit"), id="usage-limit"),
    pytest.param(lambda: BudgetExceeded("budget"), id="budget"),
    pytest.param(lambda: RateLimited("rate", retry_after=1), id="rate-limited"),
    pytest.param(lambda: ToolArgumentsInvalid("bad args"), id="tool-args"),
    pytest.param(lambda: ToolNotFound("no such tool"), id="tool-not-found"),
    pytest.param(lambda: ToolError("order 42 does not exist"), id="tool-error"),
    pytest.param(lambda: ValueError("not a tether error"), id="plain"),
]


class TestModelRetries:
    @pytest.mark.parametrize("make", RETRYABLE_MODEL_ERRORS)
    async def test_retries_up_to_the_limit_then_succeeds(self, clock: FakeClock, make: Any) -> None:
        call_next = Next([make(), make()])
        result = await model_policy(clock, attempts=3)(model_effect(), call_next)
        assert result is RESPONSE
        assert call_next.calls == 3
        assert len(clock.sleeps) == 2

    @pytest.mark.parametrize("make", RETRYABLE_MODEL_ERRORS)
    async def test_no_more_than_the_limit(self, clock: FakeClock, make: Any) -> None:
        errors = [make() for _ in range(5)]
        call_next = Next(errors)
        with pytest.raises(type(errors[0])) as caught:
            await model_policy(clock, attempts=3)(model_effect(), call_next)
        assert call_next.calls == 3
        assert caught.value is errors[2]  # the last attempt's error, not a RetryError

    @pytest.mark.parametrize("make", NEVER_RETRIED)
    async def test_never_retries(self, clock: FakeClock, make: Any) -> None:
        error = make()
        call_next = Next([error])
        with pytest.raises(type(error)) as caught:
            await model_policy(clock, attempts=5)(model_effect(), call_next)
        assert caught.value is error
        assert call_next.calls == 1
        assert clock.sleeps == []

    async def test_a_later_unretryable_error_stops_the_retries(self, clock: FakeClock) -> None:
        call_next = Next([ModelTimeout("slow"), ModelAuthError("bad key"), ModelTimeout("x")])
        with pytest.raises(ModelAuthError):
            await model_policy(clock, attempts=5)(model_effect(), call_next)
        assert call_next.calls == 2

    async def test_cancellation_is_not_retried(self, clock: FakeClock) -> None:
        call_next = Next([asyncio.CancelledError()])
        with pytest.raises(asyncio.CancelledError):
            await model_policy(clock)(model_effect(), call_next)
        assert call_next.calls == 1

    async def test_success_first_time_does_not_wait(self, clock: FakeClock) -> None:
        call_next = Next()
        assert await model_policy(clock)(model_effect(), call_next) is RESPONSE
        assert call_next.calls == 1
        assert clock.sleeps == []

    def test_one_attempt_means_no_policy(self) -> None:
        assert Retry(attempts=1).for_model("test:m") is None

    def test_the_policy_wraps_model_effects_only(self, clock: FakeClock) -> None:
        assert model_policy(clock).kinds == frozenset({"model"})


class TestWaits:
    async def test_full_jitter_stays_within_the_exponential_bound(self, clock: FakeClock) -> None:
        base, cap = 0.5, 3.0
        for seed in range(30):
            clock = FakeClock()
            policy = Retry(attempts=6, base=base, cap=cap, clock=clock, seed=seed).for_model("m")
            assert policy is not None
            with pytest.raises(ModelTimeout):
                await policy(model_effect(), Next([ModelTimeout("t") for _ in range(6)]))
            assert len(clock.sleeps) == 5
            for n, wait in enumerate(clock.sleeps, start=1):
                assert 0 <= wait <= min(cap, base * 2 ** (n - 1))

    async def test_the_same_seed_gives_the_same_waits(self) -> None:
        runs = []
        for _ in range(2):
            clock = FakeClock()
            policy = Retry(attempts=4, clock=clock, seed=7).for_model("m")
            assert policy is not None
            await policy(model_effect(), Next([ModelTimeout("t") for _ in range(3)]))
            runs.append(clock.sleeps)
        assert runs[0] == runs[1]
        assert len(set(runs[0])) == 3

    async def test_honours_retry_after_seconds(self, clock: FakeClock) -> None:
        error = ModelRateLimited("slow down", status_code=429, retry_after=12.0)
        call_next = Next([error])
        assert await model_policy(clock, cap=1.0)(model_effect(), call_next) is RESPONSE
        assert clock.sleeps == [12.0]  # longer than the cap: the provider knows best
        assert clock.now() == 12.0

    async def test_jitter_wins_over_a_shorter_retry_after(self, clock: FakeClock) -> None:
        error = ModelRateLimited("slow down", status_code=429, retry_after=0.0)
        await model_policy(clock, base=1000.0, cap=1000.0)(model_effect(), Next([error]))
        (wait,) = clock.sleeps
        assert 0.0 <= wait <= 1000.0
        assert wait > 0.0  # seed 1 draws well above zero

    async def test_a_too_long_retry_after_reraises_at_once(self, clock: FakeClock) -> None:
        error = ModelRateLimited("come back later", status_code=429, retry_after=61.0)
        call_next = Next([error])
        with pytest.raises(ModelRateLimited) as caught:
            await model_policy(clock, max_retry_after=60.0)(model_effect(), call_next)
        assert caught.value is error
        assert call_next.calls == 1
        assert clock.sleeps == []

    async def test_a_too_long_retry_after_on_a_later_attempt(self, clock: FakeClock) -> None:
        late = ModelRateLimited("come back later", status_code=429, retry_after=600.0)
        call_next = Next([ModelTimeout("t"), late])
        with pytest.raises(ModelRateLimited):
            await model_policy(clock, attempts=5)(model_effect(), call_next)
        assert call_next.calls == 2
        assert len(clock.sleeps) == 1

    async def test_retry_after_at_the_limit_is_waited(self, clock: FakeClock) -> None:
        error = ModelRateLimited("slow down", status_code=429, retry_after=60.0)
        await model_policy(clock, max_retry_after=60.0)(model_effect(), Next([error]))
        assert clock.sleeps == [60.0]

    async def test_on_retry_sees_every_retry(self, clock: FakeClock) -> None:
        seen: list[RetryAttempt] = []
        errors = [ModelTimeout("t"), ModelConnectionError("c")]
        effect = model_effect()
        policy = model_policy(clock, attempts=3, on_retry=seen.append)
        await policy(effect, Next(errors))
        assert [(a.target, a.attempt, a.error) for a in seen] == [
            ("model:test:m", 1, errors[0]),
            ("model:test:m", 2, errors[1]),
        ]
        assert [a.wait for a in seen] == clock.sleeps
        assert all(a.run is effect.run for a in seen)


class TestToolRetries:
    def test_tool_attempts_default_to_one(self) -> None:
        @tool
        async def lookup() -> str:
            return "x"

        assert Retry().for_tool(lookup) is None
        assert Retry(tool_attempts=2).for_tool(lookup) is not None

    async def test_retries_from_the_tool_declaration(self, clock: FakeClock) -> None:
        @tool(retries=2)
        async def lookup() -> str:
            return "x"

        policy = Retry(tool_attempts=1, clock=clock, seed=1).for_tool(lookup)
        assert policy is not None
        assert policy.kinds == frozenset({"tool"})
        errors = [ToolTimeout("t"), ToolExecutionError("e"), ToolTimeout("t")]
        call_next = Next(errors)
        with pytest.raises(ToolTimeout) as caught:
            await policy(tool_effect(), call_next)
        assert call_next.calls == 3  # retries=2: three attempts in all
        assert caught.value is errors[2]

    async def test_a_tool_declaring_no_retries_is_not_retried(self) -> None:
        @tool(retries=0)
        async def lookup() -> str:
            return "x"

        assert Retry(tool_attempts=5).for_tool(lookup) is None

    def test_a_tool_that_must_not_run_twice_is_never_retried(self) -> None:
        @tool(retries=3, retryable=False)
        async def refund() -> str:
            return "x"

        assert Retry(tool_attempts=5).for_tool(refund) is None
        assert not is_retryable(ToolTimeout("t"), tool_retryable=False)
        assert not is_retryable(ToolExecutionError("e"), tool_retryable=False)

    @pytest.mark.parametrize(
        "error",
        [ToolError("no such order"), ToolArgumentsInvalid("bad"), ToolNotFound("nope")],
        ids=["own-error", "arguments", "not-found"],
    )
    async def test_the_tools_own_errors_are_not_retried(
        self, clock: FakeClock, error: ToolError
    ) -> None:
        policy = Retry(tool_attempts=4, clock=clock).for_tool(tool(lambda: "x", name="lookup"))
        assert policy is not None
        call_next = Next([error])
        with pytest.raises(type(error)):
            await policy(tool_effect(), call_next)
        assert call_next.calls == 1

    async def test_success_after_a_timeout(self, clock: FakeClock) -> None:
        policy = Retry(tool_attempts=2, clock=clock).for_tool(tool(lambda: "x", name="lookup"))
        assert policy is not None
        result = await policy(tool_effect(), Next([ToolTimeout("t")]))
        assert isinstance(result, ToolResult)
        assert result.content == "ok"


class TestClassification:
    @pytest.mark.parametrize("make", RETRYABLE_MODEL_ERRORS)
    def test_retryable(self, make: Any) -> None:
        assert is_retryable(make(), tool_retryable=False)

    @pytest.mark.parametrize("make", NEVER_RETRIED)
    def test_not_retryable(self, make: Any) -> None:
        assert not is_retryable(make(), tool_retryable=True)

    @pytest.mark.parametrize("status", [408, 409, 429, 500, 502, 503, 504])
    def test_model_http_retryable_flag_decides(self, status: int) -> None:
        assert is_retryable(
            ModelHTTPError("x", status_code=status, retryable=True), tool_retryable=False
        )
        assert not is_retryable(ModelError("x"), tool_retryable=False)

    def test_cancellation(self) -> None:
        assert not is_retryable(asyncio.CancelledError(), tool_retryable=True)


class TestConfig:
    @pytest.mark.parametrize(
        ("options", "named"),
        [
            ({"attempts": 0}, "attempts"),
            ({"attempts": 2.5}, "attempts"),
            ({"attempts": True}, "attempts"),
            ({"tool_attempts": 0}, "tool_attempts"),
            ({"base": -1}, "base"),
            ({"cap": float("inf")}, "cap"),
            ({"max_retry_after": float("nan")}, "max_retry_after"),
            ({"base": "1"}, "base"),
            ({"seed": 1.5}, "seed"),
        ],
    )
    def test_bad_values_name_the_accepted_form(self, options: dict[str, Any], named: str) -> None:
        with pytest.raises(ConfigError, match=rf"Retry\.{named} must be"):
            Retry(**options)
