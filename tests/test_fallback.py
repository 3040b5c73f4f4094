"""Fallback chains through the seam: model tiers, tool fallbacks, degraded results, timeouts."""

from __future__ import annotations

import asyncio

import pytest

from tether import Agent, Policy, tool
from tether.errors import (
    ModelAuthError,
    ModelError,
    ModelHTTPError,
    RunTimeout,
    ToolExecutionError,
)
from tether.messages import ModelRequest, ModelResponse, ToolResult
from tether.models.base import Model
from tether.policy import Breaker, Retry
from tether.testing import FakeClock, ScriptedModel, call, reply


class Down(Model):
    """A deployment that fails every call with `error`, counting the calls."""

    def __init__(self, name: str, error: Exception) -> None:
        self.name = name
        self.error = error
        self.calls = 0

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.calls += 1
        raise self.error


def no_retry() -> Policy:
    return Policy(retry=None)


class TestModelChain:
    async def test_a_retryable_failure_moves_down_the_chain(self) -> None:
        primary = Down("openai:a", ModelHTTPError("overloaded", retryable=True, status_code=503))
        backup = ScriptedModel([reply("from the backup")], name="anthropic:b")
        result = await Agent(model=[primary, backup], policy=no_retry()).run("hi")
        assert result.output == "from the backup"
        assert primary.calls == 1
        assert result.degraded
        [reason] = result.degraded_reasons
        assert "served by anthropic:b" in reason
        assert "openai:a: ModelHTTPError" in reason

    async def test_a_non_retryable_failure_is_not_hidden_by_the_chain(self) -> None:
        primary = Down("openai:a", ModelAuthError("bad key", status_code=401))
        backup = ScriptedModel([reply("never")], name="anthropic:b")
        with pytest.raises(ModelAuthError):
            await Agent(model=[primary, backup], policy=no_retry()).run("hi")
        assert backup.requests == []

    async def test_a_configured_error_class_moves_on(self) -> None:
        class Refused(ModelError):
            pass

        primary = Down("openai:a", Refused("content policy"))
        backup = ScriptedModel([reply("ok")], name="anthropic:b")
        policy = Policy(retry=None, fallback_on=(Refused,))
        result = await Agent(model=[primary, backup], policy=policy).run("hi")
        assert result.output == "ok"

    async def test_when_every_tier_fails_the_last_error_is_raised(self) -> None:
        a = Down("openai:a", ModelHTTPError("503", retryable=True, status_code=503))
        b = Down("anthropic:b", ModelHTTPError("529", retryable=True, status_code=529))
        with pytest.raises(ModelHTTPError, match="529") as info:
            await Agent(model=[a, b], policy=no_retry()).run("hi")
        assert info.value.result.status == "failed"  # type: ignore[attr-defined]
        assert (a.calls, b.calls) == (1, 1)

    async def test_an_open_breaker_skips_the_tier_without_calling_it(self) -> None:
        clock = FakeClock()
        primary = Down("openai:a", ModelHTTPError("503", retryable=True, status_code=503))
        backup = ScriptedModel([reply(str(i)) for i in range(8)], name="anthropic:b")
        policy = Policy(retry=None, breaker=Breaker(failures=2, cooldown=30, clock=clock))
        agent = Agent(model=[primary, backup], policy=policy)
        for _ in range(6):
            result = await agent.run("hi")
            assert result.degraded
        assert primary.calls == 2  # then open: later runs never reach it
        assert "CircuitOpen" in result.degraded_reasons[0]
        clock.advance(31)  # cool-down over: one probe goes through, fails, re-opens
        await agent.run("hi")
        assert primary.calls == 3
        await agent.run("hi")
        assert primary.calls == 3

    async def test_retries_happen_inside_a_tier_before_it_falls_back(self) -> None:
        clock = FakeClock()
        primary = Down("openai:a", ModelHTTPError("503", retryable=True, status_code=503))
        backup = ScriptedModel([reply("ok")], name="anthropic:b")
        policy = Policy(retry=Retry(attempts=3, clock=clock, seed=1), breaker=None)
        result = await Agent(model=[primary, backup], policy=policy).run("hi")
        assert result.output == "ok"
        assert primary.calls == 3
        assert len(clock.sleeps) == 2


class TestToolFallbacks:
    async def test_a_fallback_tool_serves_when_the_primary_fails(self) -> None:
        @tool
        async def backup_rates(currency: str) -> str:
            return f"{currency}: 1.08 (backup)"

        @tool(fallbacks=[backup_rates])
        async def rates(currency: str) -> str:
            raise ConnectionError("rates API down")

        model = ScriptedModel([call("rates", currency="EUR"), reply("done")])
        result = await Agent(model=model, tools=[rates], policy=no_retry()).run("rate?")
        tool_result = result.messages[2]
        assert isinstance(tool_result, ToolResult)
        assert tool_result.status == "ok"
        assert tool_result.content == "EUR: 1.08 (backup)"
        assert result.degraded
        assert "served by backup_rates" in result.degraded_reasons[0]

    async def test_when_every_tier_fails_the_model_gets_a_degraded_result(self) -> None:
        @tool
        async def backup_rates(currency: str) -> str:
            raise TimeoutError("also down")

        @tool(fallbacks=[backup_rates])
        async def rates(currency: str) -> str:
            raise ConnectionError("down")

        model = ScriptedModel([call("rates", currency="EUR"), reply("sorry")])
        result = await Agent(model=model, tools=[rates], policy=no_retry()).run("rate?")
        tool_result = result.messages[2]
        assert isinstance(tool_result, ToolResult)
        assert tool_result.status == "degraded"
        assert "Do not call it again" in tool_result.content
        # The model saw it, and the run says so.
        assert model.requests[1].messages[-1] == tool_result
        assert result.status == "completed"
        assert result.degraded
        assert "tool rates unavailable" in result.degraded_reasons[0]

    async def test_a_tool_that_must_not_run_twice_is_not_replaced(self) -> None:
        ran: list[str] = []

        @tool
        async def charge_backup(amount: int) -> str:
            ran.append("backup")
            return "charged by backup"

        @tool(retryable=False, fallbacks=[charge_backup])
        async def charge(amount: int) -> str:
            ran.append("primary")
            raise ToolExecutionError("outcome unknown")

        model = ScriptedModel([call("charge", amount=5), reply("checking")])
        result = await Agent(model=model, tools=[charge], policy=no_retry()).run("pay")
        assert ran == ["primary"]
        assert result.messages[2].status == "error"  # type: ignore[union-attr]

    async def test_a_tool_with_an_open_breaker_answers_degraded(self) -> None:
        calls = 0

        @tool
        async def flaky(x: int) -> int:
            nonlocal calls
            calls += 1
            raise ConnectionError("down")

        steps = [call("flaky", x=i) for i in range(4)] + [reply("gave up")]
        model = ScriptedModel(steps)
        policy = Policy(retry=None, breaker=Breaker(failures=2, clock=FakeClock()), loop_guard=None)
        result = await Agent(model=model, tools=[flaky], policy=policy).run("go")
        statuses = [m.status for m in result.messages if isinstance(m, ToolResult)]
        assert statuses == ["error", "error", "degraded", "degraded"]
        assert calls == 2


async def test_a_run_past_its_wall_clock_limit_stops_with_a_partial_result() -> None:
    @tool
    async def slow() -> str:
        await asyncio.sleep(5)
        return "late"

    model = ScriptedModel([call("slow"), reply("never")])
    agent = Agent(model=model, tools=[slow], policy=Policy(timeout=0.1))
    with pytest.raises(RunTimeout) as info:
        await agent.run("go")
    partial = info.value.result
    assert partial is not None
    assert partial.status == "timeout"
    assert partial.steps == 1


async def test_a_tool_brings_its_own_retry_policy() -> None:
    clock = FakeClock()
    attempts = 0

    @tool(retry=Retry(tool_attempts=4, base=2.0, cap=2.0, clock=clock, seed=3))
    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        if attempts < 4:
            raise ConnectionError("try again")
        return "ok"

    model = ScriptedModel([call("flaky"), reply("done")])
    policy = Policy(retry=Retry(tool_attempts=1), breaker=None)  # the agent's: no tool retry
    result = await Agent(model=model, tools=[flaky], policy=policy).run("go")
    assert result.messages[2].status == "ok"  # type: ignore[union-attr]
    assert attempts == 4
    assert len(clock.sleeps) == 3
    assert all(0 <= wait <= 2.0 for wait in clock.sleeps)
