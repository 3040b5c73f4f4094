"""Fault injection (`FaultyModel`, `faulty_tool`) and the virtual clock (`FakeClock`)."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from tether import Agent, ConfigError, Policy, tool
from tether.errors import (
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelRateLimited,
    ModelTimeout,
    ToolArgumentsInvalid,
    ToolExecutionError,
    ToolTimeout,
)
from tether.messages import ModelRequest, ModelSettings, ToolResult, UserMessage
from tether.policy.retry import Retry
from tether.testing import (
    MODEL_FAULTS,
    FakeClock,
    FaultyModel,
    FunctionModel,
    ScriptedModel,
    call,
    faulty_tool,
    reply,
)


def request(timeout: float | None = None) -> ModelRequest:
    return ModelRequest(
        messages=[UserMessage(content="hi")], settings=ModelSettings(timeout=timeout)
    )


def echo_model(name: str = "openai:gpt-4.1-mini") -> FunctionModel:
    return FunctionModel(lambda _: call("add", a=1, b=2), name=name)


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


async def outcomes(model: FaultyModel, n: int) -> list[str | None]:
    for _ in range(n):
        with contextlib.suppress(ModelError):
            await model.request(request())
    return [c.fault for c in model.calls]


class TestFakeClock:
    async def test_sleep_jumps_ahead_and_records(self) -> None:
        clock = FakeClock(start=100.0)
        await clock.sleep(2.5)
        await clock.sleep(0)
        await clock.sleep(1)
        assert clock.now() == 103.5
        assert clock.sleeps == [2.5, 0, 1]

    async def test_advance(self) -> None:
        clock = FakeClock()
        clock.advance(30)
        assert clock.now() == 30
        with pytest.raises(ValueError, match="back"):
            clock.advance(-1)

    async def test_concurrent_sleepers_share_one_timeline(self) -> None:
        clock = FakeClock()
        woke: list[tuple[str, float]] = []

        async def sleeper(name: str, seconds: float) -> None:
            await clock.sleep(seconds)
            woke.append((name, clock.now()))

        await asyncio.gather(sleeper("c", 3), sleeper("a", 1), sleeper("b", 2), sleeper("a2", 1))
        assert woke == [("a", 1), ("a2", 1), ("b", 2), ("c", 3)]
        assert clock.now() == 3  # not 7: sleepers overlap, as on a real clock

    async def test_runnable_work_goes_first(self) -> None:
        clock = FakeClock()
        seen: list[float] = []

        async def busy() -> None:
            for _ in range(50):
                seen.append(clock.now())
                await asyncio.sleep(0)

        await asyncio.gather(clock.sleep(10), busy())
        assert seen == [0.0] * 50  # time jumped only once nothing else could run

    async def test_a_spinning_task_cannot_stop_time(self) -> None:
        clock = FakeClock()
        stop = False

        async def spin() -> None:
            while not stop:  # noqa: ASYNC110 - a task that keeps the loop busy
                await asyncio.sleep(0)

        spinner = asyncio.create_task(spin())
        await clock.sleep(1)
        stop = True
        await spinner
        assert clock.now() == 1

    async def test_cancelled_sleeper_is_dropped(self) -> None:
        clock = FakeClock()
        long = asyncio.create_task(clock.sleep(100))
        await asyncio.sleep(0)
        long.cancel()
        await clock.sleep(1)
        assert clock.now() == 1
        assert clock.sleeping == 0

    async def test_advance_wakes_the_sleepers_it_reaches(self) -> None:
        clock = FakeClock()
        sleeper = asyncio.create_task(clock.sleep(5))
        await asyncio.sleep(0)  # this task stays runnable: the clock does not jump
        clock.advance(6)
        await asyncio.sleep(0)
        assert sleeper.done()
        assert clock.now() == 6


class TestFaultyModel:
    async def test_schedule_then_rate(self) -> None:
        model = FaultyModel(echo_model(), schedule=["429", None, "500"], rate=0.0)
        assert await outcomes(model, 5) == ["429", None, "500", None, None]

    async def test_seeded_draws_replay_exactly(self) -> None:
        def faulty(seed: int) -> FaultyModel:
            return FaultyModel(echo_model(), rate=0.5, seed=seed, clock=FakeClock())

        first = await outcomes(faulty(3), 200)
        again = await outcomes(faulty(3), 200)
        other = await outcomes(faulty(4), 200)
        assert first == again
        assert first != other

    async def test_rate_is_roughly_honoured(self) -> None:
        model = FaultyModel(
            echo_model(), rate=0.3, seed=11, faults=("429", "500", "timeout", "reset")
        )
        faults = await outcomes(model, 4000)
        share = sum(f is not None for f in faults) / len(faults)
        assert 0.27 < share < 0.33
        counts = model.faults_injected()
        assert set(counts) == {"429", "500", "timeout", "reset"}
        assert all(200 < n < 400 for n in counts.values())  # ~300 each

    @pytest.mark.parametrize(
        ("fault", "error", "status", "retryable"),
        [
            ("429", ModelRateLimited, 429, True),
            ("500", ModelHTTPError, 500, True),
            ("400", ModelHTTPError, 400, False),
            ("auth", ModelAuthError, 401, False),
            ("timeout", ModelTimeout, None, True),
            ("reset", ModelConnectionError, None, True),
        ],
    )
    async def test_each_error_fault(
        self, fault: str, error: type[ModelError], status: int | None, retryable: bool
    ) -> None:
        inner = echo_model()
        model = FaultyModel(inner, schedule=[fault], retry_after=7.0)
        with pytest.raises(error) as caught:
            await model.request(request())
        assert type(caught.value) is error
        assert caught.value.status_code == status
        assert caught.value.retryable is retryable
        assert caught.value.model == "openai:gpt-4.1-mini"
        assert caught.value.retry_after == (7.0 if fault == "429" else None)
        assert inner.requests == []  # the wrapped model never saw it
        record = model.calls[0]
        assert record.fault == fault
        assert record.error is caught.value

    async def test_malformed_breaks_the_first_tool_call(self) -> None:
        model = FaultyModel(echo_model(), schedule=["malformed"])
        response = await model.request(request())
        (broken,) = response.message.tool_calls
        assert broken.name == "add"
        assert isinstance(broken.arguments, str)
        with pytest.raises(ToolArgumentsInvalid):
            add.validate(broken)

    async def test_malformed_without_a_tool_call_answers_unchanged(self) -> None:
        model = FaultyModel(FunctionModel(lambda _: "plain"), schedule=["malformed"])
        response = await model.request(request())
        assert response.message.text == "plain"
        assert model.calls[0].fault is None  # recorded as what it was: a clean call

    async def test_slow_waits_on_the_clock(self) -> None:
        clock = FakeClock()
        model = FaultyModel(echo_model(), schedule=["slow"], slow_seconds=4, clock=clock)
        await model.request(request())
        assert clock.sleeps == [4]
        record = model.calls[0]
        assert (record.time, record.ended, record.error) == (0, 4, None)

    async def test_slow_past_the_timeout_times_out(self) -> None:
        clock = FakeClock()
        model = FaultyModel(echo_model(), schedule=["slow"], slow_seconds=30, clock=clock)
        with pytest.raises(ModelTimeout):
            await model.request(request(timeout=10))
        assert clock.now() == 10

    async def test_an_outage_fails_every_call_while_it_lasts(self) -> None:
        clock = FakeClock()
        model = FaultyModel(echo_model(), outages=[(10, 20)], schedule=["429"], clock=clock)
        seen: list[str | None] = []
        for at in (0, 5, 5, 10):  # arrive at t = 0, 5, 10, 20
            await clock.sleep(at)
            with contextlib.suppress(ModelError):
                await model.request(request())
            seen.append(model.calls[-1].fault)
        assert seen == ["429", None, "500", None]
        with pytest.raises(ConfigError, match="outages"):
            FaultyModel(echo_model(), outages=[(5, 5)])

    async def test_name_defaults_to_the_wrapped_one(self) -> None:
        assert FaultyModel(echo_model("anthropic:claude-haiku-4-5")).name == (
            "anthropic:claude-haiku-4-5"
        )
        assert FaultyModel(echo_model(), name="tier-1").name == "tier-1"

    async def test_streams_through_the_wrapped_model(self) -> None:
        model = FaultyModel(FunctionModel(lambda _: "hello"))
        got: list[str] = []
        response = await model.request_stream(request(), got.append)
        assert got == ["hello"]
        assert response.message.text == "hello"

    async def test_in_an_agent_errors_surface_typed(self) -> None:
        model = FaultyModel(ScriptedModel([reply("ok")]), schedule=["reset"])
        with pytest.raises(ModelConnectionError):
            await Agent(model=model, policy=Policy(retry=None)).run("hi")

    async def test_in_an_agent_a_retry_absorbs_it(self) -> None:
        clock = FakeClock()
        model = FaultyModel(ScriptedModel([reply("ok")]), schedule=["429"], clock=clock)
        retry = Retry(attempts=2, clock=clock, seed=1)
        result = await Agent(model=model, policy=Policy(retry=retry)).run("hi")
        assert result.output == "ok"
        assert [c.fault for c in model.calls] == ["429", None]
        assert model.calls[1].time - model.calls[0].time >= 1.0  # its Retry-After

    @pytest.mark.parametrize(
        "kwargs",
        [
            {"rate": 1.5},
            {"rate": -0.1},
            {"faults": ("503",), "rate": 0.1},
            {"schedule": ["boom"]},
            {"rate": 0.5, "faults": ()},
            {"retry_after": -1},
            {"slow_seconds": float("inf")},
        ],
    )
    def test_bad_configuration(self, kwargs: dict[str, object]) -> None:
        with pytest.raises(ConfigError):
            FaultyModel(echo_model(), **kwargs)  # type: ignore[arg-type]

    def test_knows_every_fault(self) -> None:
        assert set(MODEL_FAULTS) >= {"429", "500", "timeout", "reset", "malformed", "slow"}


class TestFaultyTool:
    def test_same_name_schema_and_limits(self) -> None:
        @tool(timeout=3, retries=2, retryable=False)
        async def lookup(order_id: int) -> str:
            """Find an order."""
            return str(order_id)

        flaky = faulty_tool(lookup, rate=0.5)
        assert flaky.name == "lookup"
        assert flaky.definition == lookup.definition
        assert (flaky.timeout, flaky.retries, flaky.retryable) == (3, 2, False)
        assert flaky.original is lookup

    def test_wraps_a_plain_function(self) -> None:
        def multiply(a: int, b: int) -> int:
            return a * b

        assert faulty_tool(multiply).name == "multiply"

    async def test_schedule_and_errors(self) -> None:
        flaky = faulty_tool(add, schedule=["timeout", "error", None])
        with pytest.raises(ToolTimeout):
            await flaky.execute({"a": 1, "b": 2}, None)
        with pytest.raises(ToolExecutionError) as caught:
            await flaky.execute({"a": 1, "b": 2}, None)
        assert isinstance(caught.value.__cause__, ConnectionError)
        assert await flaky.execute({"a": 1, "b": 2}, None) == 3
        assert [c.fault for c in flaky.calls] == ["timeout", "error", None]
        assert [c.failed for c in flaky.calls] == [True, True, False]

    async def test_slow_and_timeout_on_the_clock(self) -> None:
        clock = FakeClock()
        slow = faulty_tool(add, schedule=["slow"], slow_seconds=2, clock=clock)
        assert await slow.execute({"a": 1, "b": 2}, None) == 3
        assert clock.now() == 2
        capped = faulty_tool(
            tool(timeout=1)(add.function), schedule=["slow"], slow_seconds=2, clock=clock
        )
        with pytest.raises(ToolTimeout):
            await capped.execute({"a": 1, "b": 2}, None)
        assert clock.now() == 3

    async def test_an_outage(self) -> None:
        clock = FakeClock(start=100)
        flaky = faulty_tool(add, outages=[(0, 150)], clock=clock)
        with pytest.raises(ToolExecutionError):
            await flaky.execute({"a": 1, "b": 2}, None)
        clock.advance(50)
        assert await flaky.execute({"a": 1, "b": 2}, None) == 3

    async def test_seeded_rate(self) -> None:
        async def run(seed: int) -> list[str | None]:
            flaky = faulty_tool(add, rate=0.3, seed=seed, clock=FakeClock())
            for _ in range(3000):
                with contextlib.suppress(ToolTimeout, ToolExecutionError):
                    await flaky.execute({"a": 1, "b": 2}, None)
            return [c.fault for c in flaky.calls]

        first = await run(5)
        assert first == await run(5)
        share = sum(f is not None for f in first) / len(first)
        assert 0.27 < share < 0.33

    async def test_in_an_agent_a_fault_is_a_tool_result(self) -> None:
        flaky = faulty_tool(add, schedule=["error"])
        model = ScriptedModel([call("add", a=1, b=2), reply("done")])
        result = await Agent(model=model, tools=[flaky]).run("1+2")
        assert result.status == "completed"
        (tool_result,) = [m for m in result.messages if isinstance(m, ToolResult)]
        assert tool_result.status in ("error", "degraded")
        assert len(flaky.calls) >= 1
