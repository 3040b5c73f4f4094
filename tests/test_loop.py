"""The control loop, driven through `Agent` with scripted models and real tools."""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
import weakref
from dataclasses import dataclass

import pytest

from tether import (
    Agent,
    MaxStepsExceeded,
    Policy,
    RunContext,
    RunResult,
    ToolError,
    UsageLimitExceeded,
    UsageLimits,
    tool,
)
from tether.errors import ModelRateLimited
from tether.loop import run_loop
from tether.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolResult,
    Usage,
    UserMessage,
)
from tether.models import Model
from tether.models.pricing import cost_of
from tether.testing import FunctionModel, ScriptedModel, call, calls, raise_error, reply


@dataclass
class Deps:
    prefix: str


def tool_results(request: ModelRequest) -> list[ToolResult]:
    return [m for m in request.messages if isinstance(m, ToolResult)]


@tool
async def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


@tool
async def echo(text: str) -> str:
    return text


class TestSteps:
    async def test_one_tool_call_then_answer(self) -> None:
        model = ScriptedModel([call("add", a=2, b=3), reply("It is 5.")])
        result = await Agent(model=model, tools=[add]).run("2+3?")

        assert result.status == "completed"
        assert result.output == "It is 5."
        assert result.steps == 2
        model.assert_complete()
        # The second request carries the tool result for the first call.
        [returned] = tool_results(model.requests[1])
        assert returned.status == "ok"
        assert returned.content == "5"
        assert returned.name == "add"
        assert returned.call_id == model.requests[1].messages[-2].tool_calls[0].id
        roles = [m.role for m in result.messages]
        assert roles == ["user", "assistant", "tool", "assistant"]

    async def test_answer_without_tools_sends_tool_choice_none(self) -> None:
        model = ScriptedModel([reply("hi")])
        result = await Agent(model=model).run("hello")
        assert result.output == "hi"
        assert result.text == "hi"
        assert model.requests[0].tools == []
        assert model.requests[0].tool_choice == "none"

    async def test_tools_offered_with_tool_choice_auto(self) -> None:
        model = ScriptedModel([reply("hi")])
        await Agent(model=model, tools=[add, echo]).run("hello")
        assert [t.name for t in model.requests[0].tools] == ["add", "echo"]
        assert model.requests[0].tool_choice == "auto"

    async def test_parallel_calls_run_concurrently_and_keep_call_order(self) -> None:
        both_running = asyncio.Barrier(2)

        @tool
        async def slow(n: int) -> int:
            # Only passes if the other call is running at the same time.
            await asyncio.wait_for(both_running.wait(), timeout=5)
            # Finish in reverse order: the later call returns first.
            await asyncio.sleep(0.01 * (2 - n))
            return n * 10

        model = ScriptedModel([calls(call("slow", n=1), call("slow", n=2)), reply("done")])
        result = await Agent(model=model, tools=[slow]).run("go")

        results = tool_results(model.requests[1])
        assert [r.content for r in results] == ["10", "20"]
        assert [r.status for r in results] == ["ok", "ok"]
        assert result.usage.tool_calls == 2

    async def test_a_failing_call_does_not_affect_its_siblings(self) -> None:
        @tool
        async def fails() -> str:
            raise RuntimeError("boom")

        model = ScriptedModel(
            [
                calls(call("add", a=1, b=1), call("fails"), call("nope"), call("add", a=2, b=2)),
                reply("ok"),
            ]
        )
        result = await Agent(model=model, tools=[add, fails]).run("go")
        assert result.status == "completed"
        results = tool_results(model.requests[1])
        assert [(r.name, r.status) for r in results] == [
            ("add", "ok"),
            ("fails", "error"),
            ("nope", "error"),
            ("add", "ok"),
        ]
        assert [results[0].content, results[3].content] == ["2", "4"]


class TestToolErrorsReachTheModel:
    """Every failure of a tool call becomes an error result; the run goes on."""

    async def run_one(self, step, *tools) -> ToolResult:  # type: ignore[no-untyped-def]
        model = ScriptedModel([step, reply("recovered")])
        result = await Agent(model=model, tools=list(tools)).run("go")
        assert result.status == "completed"
        assert result.output == "recovered"
        model.assert_complete()
        [returned] = tool_results(model.requests[1])
        assert returned.status == "error"
        return returned

    async def test_unknown_tool(self) -> None:
        returned = await self.run_one(call("subtract", a=1, b=2), add, echo)
        assert "subtract" in returned.content
        assert "add, echo" in returned.content
        assert returned.name == "subtract"

    async def test_malformed_json_arguments(self) -> None:
        returned = await self.run_one(call("add", raw="{bad"), add)
        assert "not a JSON object" in returned.content
        assert "'add'" in returned.content

    async def test_arguments_not_an_object(self) -> None:
        returned = await self.run_one(call("add", raw="[1, 2]"), add)
        assert "not a JSON object" in returned.content

    async def test_schema_invalid_arguments(self) -> None:
        returned = await self.run_one(call("add", a="two", b=3), add)
        assert "invalid arguments for tool 'add'" in returned.content
        assert "a:" in returned.content
        assert '"two"' in returned.content

    async def test_missing_argument(self) -> None:
        returned = await self.run_one(call("add", a=1), add)
        assert "b: Field required" in returned.content

    async def test_extra_hallucinated_argument(self) -> None:
        returned = await self.run_one(call("add", a=1, b=2, c=3), add)
        assert "c:" in returned.content
        assert "Extra inputs are not permitted" in returned.content

    async def test_tool_error_message_is_passed_verbatim(self) -> None:
        @tool
        async def lookup(order_id: int) -> str:
            raise ToolError(f"order {order_id} does not exist; list orders first")

        returned = await self.run_one(call("lookup", order_id=42), lookup)
        assert returned.content == "order 42 does not exist; list orders first"

    async def test_arbitrary_exception_shows_type_and_text(self) -> None:
        @tool
        def divide(a: int, b: int) -> float:
            return a / b

        returned = await self.run_one(call("divide", a=1, b=0), divide)
        assert "ZeroDivisionError" in returned.content
        assert "division by zero" in returned.content

    async def test_timeout(self) -> None:
        cancelled = asyncio.Event()

        @tool(timeout=0.05)
        async def sleepy() -> str:
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return "never"

        returned = await self.run_one(call("sleepy"), sleepy)
        assert "did not finish within 0.05s" in returned.content
        assert cancelled.is_set()


class TestStops:
    async def test_max_steps_raises_with_partial_result(self) -> None:
        model = ScriptedModel([call("add", a=1, b=1)] * 5)
        agent = Agent(model=model, tools=[add], policy=Policy(max_steps=3))
        with pytest.raises(MaxStepsExceeded) as info:
            await agent.run("loop forever")
        partial = info.value.result
        assert partial is not None
        assert partial.status == "max_steps"
        assert partial.steps == 3
        assert len(model.requests) == 3
        assert partial.usage.requests == 3
        # The conversation is kept: user, then 3 x (assistant, tool).
        assert [m.role for m in partial.messages] == ["user"] + ["assistant", "tool"] * 3
        assert partial.error is not None
        assert "3 steps" in partial.error

    async def test_model_error_propagates_with_partial_result(self) -> None:
        model = ScriptedModel(
            [call("add", a=1, b=2), raise_error(ModelRateLimited("slow down", retry_after=3))]
        )
        with pytest.raises(ModelRateLimited) as info:  # retries off: nothing absorbs it
            await Agent(model=model, tools=[add], policy=Policy(retry=None)).run("go")
        assert info.value.retry_after == 3
        partial: RunResult = info.value.result  # type: ignore[attr-defined]
        assert partial.status == "failed"
        assert partial.steps == 2
        assert partial.usage.requests == 1
        assert [m.role for m in partial.messages] == ["user", "assistant", "tool"]
        assert partial.error == "ModelRateLimited: slow down"


class TestUsageLimits:
    async def test_max_requests(self) -> None:
        model = ScriptedModel([call("add", a=1, b=1)] * 5)
        agent = Agent(model=model, tools=[add], policy=Policy(limits=UsageLimits(max_requests=2)))
        with pytest.raises(UsageLimitExceeded) as info:
            await agent.run("go")
        assert len(model.requests) == 2  # the third request was never made
        partial = info.value.result
        assert partial is not None
        assert partial.status == "usage_limit"
        assert partial.usage.requests == 2
        assert "2 requests" in str(info.value)

    async def test_max_tool_calls_sequential(self) -> None:
        executed: list[int] = []

        @tool
        async def work(n: int) -> int:
            executed.append(n)
            return n

        model = ScriptedModel([call("work", n=i) for i in range(5)] + [reply("done")])
        agent = Agent(
            model=model, tools=[work], policy=Policy(limits=UsageLimits(max_tool_calls=2))
        )
        with pytest.raises(UsageLimitExceeded) as info:
            await agent.run("go")
        assert executed == [0, 1]
        assert info.value.result is not None
        assert info.value.result.status == "usage_limit"

    async def test_max_tool_calls_in_one_step_runs_none_past_the_limit(self) -> None:
        executed: list[int] = []

        @tool
        async def work(n: int) -> int:
            executed.append(n)
            return n

        model = ScriptedModel([calls(*(call("work", n=i) for i in range(3))), reply("done")])
        agent = Agent(
            model=model, tools=[work], policy=Policy(limits=UsageLimits(max_tool_calls=2))
        )
        with pytest.raises(UsageLimitExceeded):
            await agent.run("go")
        assert len(executed) <= 2
        assert 2 not in executed

    @pytest.mark.parametrize(
        ("limits", "what"),
        [
            (UsageLimits(max_input_tokens=15), "input tokens"),
            (UsageLimits(max_output_tokens=7), "output tokens"),
            (UsageLimits(max_total_tokens=25), "tokens"),
        ],
    )
    async def test_token_limits(self, limits: UsageLimits, what: str) -> None:
        # Each response uses 10 input and 5 output tokens: the second crosses every limit.
        model = ScriptedModel(
            [call("add", a=1, b=1)] * 5, usage=Usage(input_tokens=10, output_tokens=5)
        )
        agent = Agent(model=model, tools=[add], policy=Policy(limits=limits))
        with pytest.raises(UsageLimitExceeded) as info:
            await agent.run("go")
        assert len(model.requests) == 2
        assert what in str(info.value)
        partial = info.value.result
        assert partial is not None
        assert partial.status == "usage_limit"
        # The second response's tool call is not run: one tool result only.
        assert sum(isinstance(m, ToolResult) for m in partial.messages) == 1

    async def test_token_limit_counts_the_tokens_it_spent(self) -> None:
        model = ScriptedModel(
            [call("add", a=1, b=1)] * 3,
            name="openai:gpt-4.1-mini",
            usage=Usage(input_tokens=1000, output_tokens=100),
        )
        agent = Agent(
            model=model,
            tools=[add],
            policy=Policy(limits=UsageLimits(max_input_tokens=1500)),
        )
        with pytest.raises(UsageLimitExceeded) as info:
            await agent.run("go")
        partial = info.value.result
        assert partial is not None
        # Two responses arrived and were paid for, though the second crossed the limit.
        assert partial.usage.requests == 2
        assert partial.usage.input_tokens == 2000
        assert partial.cost_usd == pytest.approx(
            2 * cost_of("openai:gpt-4.1-mini", Usage(input_tokens=1000, output_tokens=100))
        )

    def test_negative_limit_is_a_config_error(self) -> None:
        from tether import ConfigError

        with pytest.raises(ConfigError, match="max_requests"):
            UsageLimits(max_requests=-1)


class TestAccounting:
    async def test_usage_and_cost_are_summed_per_run(self) -> None:
        model = ScriptedModel(
            [
                calls(call("add", a=1, b=2), call("add", a=3, b=4)),
                reply("done"),
            ],
            name="openai:gpt-4.1-mini",
            usage=Usage(input_tokens=1_000, output_tokens=500, cached_tokens=200),
        )
        result = await Agent(model=model, tools=[add]).run("go")
        assert result.usage == Usage(
            input_tokens=2_000, output_tokens=1_000, cached_tokens=400, requests=2, tool_calls=2
        )
        one = (800 * 0.40 + 200 * 0.10 + 500 * 1.60) / 1_000_000
        assert result.cost_usd == pytest.approx(2 * one)
        assert result.cost_usd > 0

    async def test_unknown_model_costs_nothing(self) -> None:
        result = await Agent(model=ScriptedModel([reply("x")], name="nobody:knows")).run("go")
        assert result.cost_usd == 0.0
        assert result.usage.requests == 1

    async def test_runs_do_not_share_usage(self) -> None:
        model = ScriptedModel([reply("a"), reply("b")])
        agent = Agent(model=model)
        first = await agent.run("1")
        second = await agent.run("2")
        assert first.usage.requests == second.usage.requests == 1
        assert first.run_id != second.run_id


class TestInputs:
    async def test_instructions_become_the_system_message(self) -> None:
        model = ScriptedModel([reply("ok")])
        result = await Agent(model=model, instructions="Be brief.").run("hello")
        assert model.requests[0].messages == [
            SystemMessage(content="Be brief."),
            UserMessage(content="hello"),
        ]
        assert result.messages[0] == SystemMessage(content="Be brief.")

    async def test_history_continues_a_conversation(self) -> None:
        model = ScriptedModel([call("add", a=1, b=2), reply("3"), reply("and again: 3")])
        agent = Agent(model=model, tools=[add], instructions="Be brief.")
        first = await agent.run("1+2?")
        kept = list(first.messages)
        second = await agent.run("repeat that", history=first.messages)

        sent = model.requests[2].messages
        assert sent[: len(first.messages)] == first.messages
        assert sent[-1] == UserMessage(content="repeat that")
        # The system message is not repeated.
        assert sum(isinstance(m, SystemMessage) for m in sent) == 1
        assert second.messages[: len(first.messages)] == first.messages
        assert second.output == "and again: 3"
        # The caller's list is not changed by the second run.
        assert first.messages == kept
        assert isinstance(kept[-1], AssistantMessage)
        assert kept[-1].text == "3"

    async def test_deps_and_context_reach_the_tool(self) -> None:
        seen: list[RunContext[Deps]] = []

        @tool
        async def greet(ctx: RunContext[Deps], name: str) -> str:
            seen.append(ctx)
            return f"{ctx.deps.prefix} {name}"

        model = ScriptedModel(
            [
                reply("first", call("add", a=1, b=1)),
                calls(call("add", a=1, b=1), call("greet", name="Ada")),
                reply("ok"),
            ]
        )
        result = await Agent(model=model, tools=[add, greet]).run(
            "go", deps=Deps("Hello"), user="u-17", run_id="run-1"
        )
        assert "ctx" not in greet.definition.parameters["properties"]
        [ctx] = seen
        assert ctx.deps == Deps("Hello")
        assert ctx.user == "u-17"
        assert ctx.run_id == result.run_id == "run-1"
        assert ctx.step == 2
        assert ctx.call_index == 1
        assert ctx.idempotency_key == "run-1:2:1"
        assert ctx.call_id == model.requests[2].messages[-3].tool_calls[1].id
        assert tool_results(model.requests[2])[-1].content == "Hello Ada"

    async def test_model_override_per_run(self) -> None:
        default = ScriptedModel([reply("default")])
        agent = Agent(model=default)
        first = ScriptedModel([reply("override one")])
        second = ScriptedModel([reply("override two")])
        assert (await agent.run("x", model=first)).output == "override one"
        # A second model with the same name is not mistaken for the first.
        assert (await agent.run("x", model=second)).output == "override two"
        assert (await agent.run("x")).output == "default"
        assert [len(m.requests) for m in (default, first, second)] == [1, 1, 1]

    async def test_function_model_sees_each_request(self) -> None:
        def respond(request: ModelRequest) -> str | object:
            results = tool_results(request)
            if not results:
                return call("add", a=20, b=22)
            return f"The answer is {results[-1].content}"

        model = FunctionModel(respond)
        result = await Agent(model=model, tools=[add]).run("go")
        assert result.output == "The answer is 42"
        assert len(model.requests) == 2


class TestWhatARunKeeps:
    """With thousands of runs in flight, each object a run keeps is work for the
    garbage collector; these pin down what it must and must not keep."""

    async def test_each_request_keeps_the_conversation_it_was_sent(self) -> None:
        model = ScriptedModel([call("add", a=1, b=2), call("add", a=3, b=4), reply("done")])
        result = await Agent(model=model, tools=[add]).run("go")
        assert [len(r.messages) for r in model.requests] == [1, 3, 5]
        result.messages.append(UserMessage(content="later"))
        assert [len(r.messages) for r in model.requests] == [1, 3, 5]

    async def test_no_response_is_kept_past_its_step(self) -> None:
        sent: list[weakref.ref[ModelResponse]] = []
        alive: list[int] = []

        class Weak(Model):
            name = "test:weak"

            async def request(self, request: ModelRequest) -> ModelResponse:
                alive.append(sum(ref() is not None for ref in sent))
                part = ToolCall(id=f"c{len(sent)}", name="add", arguments='{"a": 1, "b": 2}')
                response = ModelResponse(
                    message=AssistantMessage(
                        parts=[part] if len(sent) < 2 else [TextPart(text="3")]
                    )
                )
                sent.append(weakref.ref(response))
                return response

        result = await Agent(model=Weak(), tools=[add]).run("go")
        assert result.output == "3"
        assert alive == [0, 0, 0]  # its message is in the history; the response itself is gone

    async def test_the_messages_it_keeps_share_their_fields_sets(self) -> None:
        def respond(request: ModelRequest) -> ModelResponse:
            done = len(request.messages) > 3
            part = (
                TextPart(text="done")
                if done
                else ToolCall(id=f"c{len(request.messages)}", name="add", arguments="{}")
            )
            return ModelResponse(message=AssistantMessage(parts=[part]))

        result = await Agent(model=FunctionModel(respond), tools=[add]).run("go")
        first, second = [m for m in result.messages if isinstance(m, AssistantMessage)][:2]
        assert first.model_fields_set is second.model_fields_set
        assert first.parts[0].model_fields_set is second.parts[0].model_fields_set

    async def test_run_ids_are_random_uuid4_hex(self) -> None:
        agent = Agent(model=ScriptedModel([reply("a"), reply("b")]))
        ids = [(await agent.run("x")).run_id for _ in range(2)]
        assert ids[0] != ids[1]
        for run_id in ids:
            parsed = uuid.UUID(hex=run_id)
            assert (parsed.hex, parsed.version, parsed.variant) == (run_id, 4, uuid.RFC_4122)

    async def test_run_loop_hands_back_the_runs_coroutine(self) -> None:
        model = ScriptedModel([reply("done")])
        pending = run_loop(Agent(model=model).spec(), "go", run_id="r-1")
        assert inspect.iscoroutine(pending)
        assert model.requests == []  # nothing runs until it is awaited
        result = await pending
        assert (result.output, result.run_id) == ("done", "r-1")


def test_run_sync() -> None:
    threads: list[int] = []

    @tool
    def where() -> str:
        threads.append(threading.get_ident())
        return "here"

    model = ScriptedModel([call("where"), reply("done")])
    result = Agent(model=model, tools=[where]).run_sync("go")
    assert result.status == "completed"
    assert result.output == "done"
    assert len(threads) == 1
    assert threads[0] != threading.get_ident()


def test_run_sync_twice_with_a_concurrency_capped_tool() -> None:
    # A capped tool outlives event loops (one per run_sync) and must keep working.
    @tool(max_concurrency=1)
    async def capped(n: int) -> int:
        await asyncio.sleep(0.001)
        return n

    for _ in range(2):
        model = ScriptedModel([calls(call("capped", n=1), call("capped", n=2)), reply("ok")])
        result = Agent(model=model, tools=[capped]).run_sync("go")
        assert [r.status for r in result.messages if isinstance(r, ToolResult)] == ["ok", "ok"]
