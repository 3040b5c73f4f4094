"""Structured output: `final_result`, validation, re-asks, lenient text, wrapped types."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from tether import Agent, ConfigError, OutputValidationError, Policy, tool
from tether.errors import ToolArgumentsInvalid
from tether.messages import ToolCall, ToolResult, UserMessage
from tether.testing import ScriptedModel, call, calls, reply
from tether.tools import OUTPUT_TOOL_NAME, OutputTool


class Decision(BaseModel):
    approve: bool
    amount: float = Field(ge=0)
    reason: str


@tool
async def get_order(order_id: int) -> dict[str, object]:
    return {"id": order_id, "total": 20.0}


VALID = {"approve": True, "amount": 12.5, "reason": "damaged"}


async def test_final_result_is_offered_with_tool_choice_required() -> None:
    model = ScriptedModel([call(OUTPUT_TOOL_NAME, **VALID)])
    await Agent(model=model, tools=[get_order], output=Decision).run("refund?")
    request = model.requests[0]
    assert request.tool_choice == "required"
    assert [t.name for t in request.tools] == ["get_order", OUTPUT_TOOL_NAME]
    schema = request.tools[1].parameters
    assert schema["type"] == "object"
    assert set(schema["required"]) == {"approve", "amount", "reason"}
    assert "title" not in schema


async def test_a_valid_final_call_ends_the_run_with_the_typed_output() -> None:
    model = ScriptedModel([call("get_order", order_id=7), call(OUTPUT_TOOL_NAME, **VALID)])
    result = await Agent(model=model, tools=[get_order], output=Decision).run("refund?")
    assert result.status == "completed"
    assert result.output == Decision(**VALID)
    assert isinstance(result.output, Decision)
    assert result.steps == 2
    model.assert_complete()


async def test_final_result_without_other_tools_still_required() -> None:
    model = ScriptedModel([call(OUTPUT_TOOL_NAME, **VALID)])
    result = await Agent(model=model, output=Decision).run("decide")
    assert model.requests[0].tool_choice == "required"
    assert result.output.reason == "damaged"


async def test_an_invalid_final_call_is_reasked_and_succeeds_on_retry() -> None:
    model = ScriptedModel(
        [
            call(OUTPUT_TOOL_NAME, approve=True, amount=-1, reason="x"),
            call(OUTPUT_TOOL_NAME, **VALID),
        ]
    )
    result = await Agent(model=model, output=Decision).run("decide")
    assert result.output == Decision(**VALID)
    [error] = [m for m in model.requests[1].messages if isinstance(m, ToolResult)]
    assert error.status == "error"
    assert error.name == OUTPUT_TOOL_NAME
    assert "amount" in error.content
    assert "greater than or equal to 0" in error.content
    assert model.requests[1].tool_choice == "required"


async def test_malformed_final_call_is_reasked() -> None:
    model = ScriptedModel([call(OUTPUT_TOOL_NAME, raw="{nope"), call(OUTPUT_TOOL_NAME, **VALID)])
    result = await Agent(model=model, output=Decision).run("decide")
    assert result.output == Decision(**VALID)
    [error] = [m for m in model.requests[1].messages if isinstance(m, ToolResult)]
    assert "not a JSON object" in error.content


async def test_an_invalid_final_call_alongside_another_call_runs_the_other() -> None:
    model = ScriptedModel(
        [
            calls(call("get_order", order_id=1), call(OUTPUT_TOOL_NAME, approve="maybe")),
            call(OUTPUT_TOOL_NAME, **VALID),
        ]
    )
    result = await Agent(model=model, tools=[get_order], output=Decision).run("decide")
    assert result.output == Decision(**VALID)
    results = [m for m in model.requests[1].messages if isinstance(m, ToolResult)]
    assert sorted((r.name, r.status) for r in results) == [
        ("final_result", "error"),
        ("get_order", "ok"),
    ]


async def test_exceeding_output_retries_raises_with_partial() -> None:
    bad = call(OUTPUT_TOOL_NAME, approve="maybe")
    model = ScriptedModel([bad, bad, bad])
    agent = Agent(model=model, output=Decision, policy=Policy(output_retries=1))
    with pytest.raises(OutputValidationError) as info:
        await agent.run("decide")
    assert len(model.requests) == 2  # one ask and one re-ask
    partial = info.value.result
    assert partial is not None
    assert partial.status == "output_invalid"
    assert partial.steps == 2
    assert partial.output is None
    assert "2 times" in str(info.value)


async def test_zero_output_retries_fails_on_the_first_bad_answer() -> None:
    model = ScriptedModel([call(OUTPUT_TOOL_NAME, approve="maybe")])
    agent = Agent(model=model, output=Decision, policy=Policy(output_retries=0))
    with pytest.raises(OutputValidationError):
        await agent.run("decide")
    assert len(model.requests) == 1


async def test_plain_text_json_is_accepted() -> None:
    text = 'Here you go: {"approve": false, "amount": 0, "reason": "late"}'
    result = await Agent(model=ScriptedModel([reply(text)]), output=Decision).run("decide")
    assert result.output == Decision(approve=False, amount=0, reason="late")


async def test_fenced_json_text_is_accepted() -> None:
    text = '```json\n{"approve": true, "amount": 1, "reason": "ok"}\n```'
    result = await Agent(model=ScriptedModel([reply(text)]), output=Decision).run("decide")
    assert result.output == Decision(approve=True, amount=1, reason="ok")


async def test_plain_text_that_is_not_json_is_reasked_with_a_user_message() -> None:
    model = ScriptedModel([reply("I approve."), call(OUTPUT_TOOL_NAME, **VALID)])
    result = await Agent(model=model, output=Decision).run("decide")
    assert result.output == Decision(**VALID)
    last = model.requests[1].messages[-1]
    assert isinstance(last, UserMessage)
    assert OUTPUT_TOOL_NAME in last.content


class TestWrappedTypes:
    async def test_int_is_wrapped_and_unwrapped(self) -> None:
        model = ScriptedModel([call(OUTPUT_TOOL_NAME, response=42)])
        result = await Agent(model=model, output=int).run("answer")
        assert result.output == 42
        schema = model.requests[0].tools[0].parameters
        assert schema == {
            "type": "object",
            "properties": {"response": {"type": "integer"}},
            "required": ["response"],
            "additionalProperties": False,
        }

    async def test_list_of_str(self) -> None:
        model = ScriptedModel([call(OUTPUT_TOOL_NAME, response=["a", "b"])])
        result = await Agent(model=model, output=list[str]).run("answer")
        assert result.output == ["a", "b"]

    async def test_wrapped_plain_text(self) -> None:
        assert (await Agent(model=ScriptedModel([reply("42")]), output=int).run("x")).output == 42
        result = await Agent(model=ScriptedModel([reply('["x", "y"]')]), output=list[str]).run("x")
        assert result.output == ["x", "y"]

    async def test_wrapped_type_rejects_a_bad_value(self) -> None:
        model = ScriptedModel([call(OUTPUT_TOOL_NAME, response="many"), reply("7")])
        result = await Agent(model=model, output=int).run("x")
        assert result.output == 7
        [error] = [m for m in model.requests[1].messages if isinstance(m, ToolResult)]
        # The error names the field the model was shown.
        assert "response: Input should be a valid integer" in error.content

    def test_a_missing_response_is_not_read_as_none(self) -> None:
        tool_ = OutputTool(int | None)
        with pytest.raises(ToolArgumentsInvalid, match="response: Field required"):
            tool_.validate_call(ToolCall(id="1", name=OUTPUT_TOOL_NAME, arguments={}))
        assert (
            tool_.validate_call(
                ToolCall(id="1", name=OUTPUT_TOOL_NAME, arguments={"response": None})
            )
            is None
        )

    def test_wrapped_definitions_keep_defs(self) -> None:
        tool_ = OutputTool(list[Decision])
        params = tool_.definition.parameters
        assert params["properties"]["response"]["items"] == {"$ref": "#/$defs/Decision"}
        assert "Decision" in params["$defs"]

    def test_validate_call_with_string_arguments(self) -> None:
        tool_ = OutputTool(Decision)
        value = tool_.validate_call(
            ToolCall(
                id="1", name=OUTPUT_TOOL_NAME, arguments='{"approve":true,"amount":2,"reason":"r"}'
            )
        )
        assert value == Decision(approve=True, amount=2, reason="r")


def test_output_type_that_is_not_describable_is_a_config_error() -> None:
    class Opaque:
        pass

    with pytest.raises(ConfigError, match="output type"):
        Agent(model=ScriptedModel([]), output=Opaque)
