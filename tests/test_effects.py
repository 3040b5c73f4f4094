"""The seam: custom effect policies around model and tool calls."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from tether import Agent, Policy, UsageLimitExceeded, UsageLimits, tool
from tether.effects import Effects, compose
from tether.messages import (
    AssistantMessage,
    CallNext,
    ModelEffect,
    ModelRequest,
    ModelResponse,
    RunState,
    TextPart,
    ToolCall,
    ToolEffect,
    ToolResult,
    Usage,
    UserMessage,
)
from tether.testing import ScriptedModel, call, calls, reply
from tether.tools import RunContext, ToolSet


@tool
async def add(a: int, b: int) -> int:
    return a + b


class Recorder:
    """Records what it sees, before and after the rest of the onion."""

    def __init__(
        self, name: str, log: list[str], kinds: frozenset[str] = frozenset({"model", "tool"})
    ) -> None:
        self.name = name
        self.log = log
        self.kinds = kinds

    async def __call__(self, effect: Any, call_next: CallNext) -> Any:
        what = effect.kind if effect.kind == "model" else f"tool:{effect.name}"
        self.log.append(f"{self.name}>{what}@{effect.run.step}")
        result = await call_next(effect)
        self.log.append(f"{self.name}<{what}")
        return result


async def test_policies_see_model_and_tool_effects_in_order_outermost_first() -> None:
    log: list[str] = []
    model = ScriptedModel([call("add", a=1, b=2), reply("3")])
    agent = Agent(
        model=model,
        tools=[add],
        policy=Policy(extra=[Recorder("outer", log), Recorder("inner", log)]),
    )
    result = await agent.run("go")
    assert result.output == "3"
    assert log == [
        "outer>model@1",
        "inner>model@1",
        "inner<model",
        "outer<model",
        "outer>tool:add@1",
        "inner>tool:add@1",
        "inner<tool:add",
        "outer<tool:add",
        "outer>model@2",
        "inner>model@2",
        "inner<model",
        "outer<model",
    ]


async def test_a_tool_only_policy_never_sees_model_effects() -> None:
    log: list[str] = []
    model = ScriptedModel([calls(call("add", a=1, b=2), call("add", a=3, b=4)), reply("ok")])
    only_tools = Recorder("tools", log, kinds=frozenset({"tool"}))
    agent = Agent(model=model, tools=[add], policy=Policy(extra=[only_tools]))
    await agent.run("go")
    assert sorted(log) == sorted(
        ["tools>tool:add@1", "tools<tool:add", "tools>tool:add@1", "tools<tool:add"]
    )
    assert not any("model" in line for line in log)


class CannedAnswer:
    """Answers model calls itself (a cache would), never calling the model."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model"})

    def __init__(self) -> None:
        self.requests: list[ModelRequest] = []

    async def __call__(self, effect: ModelEffect, call_next: CallNext) -> ModelResponse:
        self.requests.append(effect.request)
        return ModelResponse(
            message=AssistantMessage(parts=[TextPart(text="from the cache")]),
            usage=Usage(input_tokens=0, output_tokens=0),
            model="cache",
        )


async def test_a_policy_can_answer_without_calling_the_model() -> None:
    model = ScriptedModel([])  # any call of the model fails the test
    canned = CannedAnswer()
    result = await Agent(model=model, policy=Policy(extra=[canned])).run("hello")
    assert result.output == "from the cache"
    assert model.requests == []
    assert canned.requests[0].messages == [UserMessage(content="hello")]
    assert result.usage.requests == 1
    assert result.cost_usd == 0.0


class DenyTool:
    """Refuses one tool by name; the model sees a denied result."""

    kinds: ClassVar[frozenset[str]] = frozenset({"tool"})

    async def __call__(self, effect: ToolEffect, call_next: CallNext) -> ToolResult:
        if effect.name == "add" and effect.arguments["a"] < 0:
            return ToolResult(
                call_id=effect.call.id, name=effect.name, content="not allowed", status="denied"
            )
        return await call_next(effect)


async def test_a_policy_can_answer_a_tool_call_and_sees_validated_arguments() -> None:
    executed: list[int] = []

    @tool
    async def add(a: int, b: int) -> int:
        executed.append(a)
        return a + b

    model = ScriptedModel([calls(call("add", a=-1, b=2), call("add", a="5", b=2)), reply("ok")])
    await Agent(model=model, tools=[add], policy=Policy(extra=[DenyTool()])).run("go")
    results = [m for m in model.requests[1].messages if isinstance(m, ToolResult)]
    assert [(r.status, r.content) for r in results] == [("denied", "not allowed"), ("ok", "7")]
    assert executed == [5]  # the argument arrived validated: "5" became 5


async def test_usage_limits_sit_outside_the_extra_policies() -> None:
    log: list[str] = []
    model = ScriptedModel([call("add", a=1, b=2), call("add", a=1, b=2), reply("ok")])
    agent = Agent(
        model=model,
        tools=[add],
        policy=Policy(limits=UsageLimits(max_requests=1), extra=[Recorder("mine", log)]),
    )
    with pytest.raises(UsageLimitExceeded):
        await agent.run("go")
    # The refused second request never reached the inner policy.
    assert [line for line in log if line.startswith("mine>model")] == ["mine>model@1"]


class TestCompose:
    async def test_first_policy_is_outermost_and_kinds_filter(self) -> None:
        log: list[str] = []

        class Tag:
            def __init__(self, name: str, kinds: set[str]) -> None:
                self.name = name
                self.kinds = frozenset(kinds)

            async def __call__(self, effect: str, call_next: CallNext) -> str:
                log.append(self.name)
                return await call_next(effect + self.name)

        async def innermost(effect: str) -> str:
            return effect + "!"

        chain = compose(
            [Tag("a", {"model"}), Tag("b", {"tool"}), Tag("c", {"model", "tool"})],
            "model",
            innermost,
        )
        assert await chain("") == "ac!"
        assert log == ["a", "c"]

    async def test_no_policies_calls_innermost_directly(self) -> None:
        async def innermost(effect: str) -> str:
            return effect

        assert compose([], "tool", innermost) is innermost

    async def test_effects_run_a_tool_with_its_context(self) -> None:
        seen: list[RunContext[str]] = []

        @tool
        async def whoami(ctx: RunContext[str]) -> str:
            seen.append(ctx)
            return ctx.deps

        effects = Effects(ScriptedModel([]), ToolSet([whoami]))
        state = RunState(run_id="r", agent="a", user="u", deps="D", step=4)
        result = await effects.tool(ToolEffect(state, ToolCall(id="c1", name="whoami"), 2, {}))
        assert result == ToolResult(call_id="c1", name="whoami", content="D")
        assert seen[0].idempotency_key == "r:4:2"
        assert seen[0].user == "u"

    async def test_effects_run_a_model_call(self) -> None:
        model = ScriptedModel([reply("hi")])
        effects = Effects(model, ToolSet())
        request = ModelRequest(messages=[UserMessage(content="hello")])
        response = await effects.model(ModelEffect(RunState(run_id="r", agent="a"), request))
        assert response.message.text == "hi"
        assert model.requests == [request]

        streamed: list[str] = []
        model.steps.append(reply("streamed"))
        await effects.model(
            ModelEffect(RunState(run_id="r", agent="a"), request, on_text=streamed.append)
        )
        assert streamed == ["streamed"]
