"""Provider-neutral messages: JSON round trips, usage arithmetic, tool call arguments."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ConfigDict, TypeAdapter, ValidationError

from tether import Agent, RunResult, Usage, tool
from tether.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolResult,
    UserMessage,
    construct,
    share_fields_sets,
)
from tether.testing import ScriptedModel, call, calls, reply


@tool
async def lookup(key: str) -> dict[str, str]:
    return {"key": key}


class TestRoundTrip:
    async def test_a_real_run_result_round_trips_exactly(self) -> None:
        model = ScriptedModel(
            [
                reply("Let me check.", call("lookup", key="a")),
                calls(call("lookup", raw='{"key": "b"}'), call("nope", raw="{bad")),
                reply("Done: a, b."),
            ],
            name="openai:gpt-4.1-mini",
        )
        result = await Agent(model=model, tools=[lookup], instructions="Be brief.").run("go")
        assert result.status == "completed"

        loaded = RunResult.model_validate_json(result.model_dump_json())
        assert loaded == result
        assert loaded.model_dump() == result.model_dump()
        assert loaded.messages == result.messages
        assert [type(m) for m in loaded.messages] == [type(m) for m in result.messages]
        # Arguments come back as they were sent: a dict, a JSON string, malformed text.
        sent = [
            c.arguments
            for m in loaded.messages
            if isinstance(m, AssistantMessage)
            for c in m.tool_calls
        ]
        assert sent == [{"key": "a"}, '{"key": "b"}', "{bad"]
        assert loaded.text == "Done: a, b."

    def test_every_message_kind_round_trips(self) -> None:
        messages: list[Message] = [
            SystemMessage(content="sys"),
            UserMessage(content="héllo ☃"),
            AssistantMessage(
                parts=[
                    TextPart(text="thinking"),
                    ToolCall(id="1", name="f", arguments={"nested": {"x": [1, 2.5, None]}}),
                    ToolCall(id="2", name="g", arguments=""),
                ]
            ),
            ToolResult(call_id="1", name="f", content="denied", status="denied"),
            ToolResult(call_id="2", name="g", content="oops", status="error"),
        ]
        adapter = TypeAdapter(list[Message])
        assert adapter.validate_json(adapter.dump_json(messages)) == messages

    def test_request_round_trips(self) -> None:
        request = ModelRequest(
            messages=[UserMessage(content="x")],
            tools=[lookup.definition],
            tool_choice="required",
        )
        assert ModelRequest.model_validate_json(request.model_dump_json()) == request

    def test_messages_are_frozen_and_strict(self) -> None:
        message = UserMessage(content="x")
        with pytest.raises(ValidationError):
            message.content = "y"  # type: ignore[misc]
        with pytest.raises(ValidationError):
            UserMessage(content="x", extra="no")  # type: ignore[call-arg]
        with pytest.raises(ValidationError):
            TypeAdapter(Message).validate_python({"role": "robot", "content": "x"})


class TestUsage:
    def test_addition(self) -> None:
        a = Usage(input_tokens=1, output_tokens=2, cached_tokens=3, requests=4, tool_calls=5)
        b = Usage(input_tokens=10, output_tokens=20, cached_tokens=30, requests=40, tool_calls=50)
        total = a + b
        assert total == Usage(
            input_tokens=11, output_tokens=22, cached_tokens=33, requests=44, tool_calls=55
        )
        assert total.total_tokens == 33
        assert a == Usage(
            input_tokens=1, output_tokens=2, cached_tokens=3, requests=4, tool_calls=5
        )

    def test_zero_is_neutral(self) -> None:
        a = Usage(input_tokens=3, output_tokens=4)
        assert a + Usage() == a
        assert sum([a, a, a], Usage()) == Usage(input_tokens=9, output_tokens=12)


class TestToolCallArguments:
    def test_dict_arguments(self) -> None:
        tc = ToolCall(id="1", name="f", arguments={"city": "Zürich", "n": 2})
        assert tc.arguments_dict() == {"city": "Zürich", "n": 2}
        assert json.loads(tc.arguments_json()) == {"city": "Zürich", "n": 2}
        assert "Zürich" in tc.arguments_json()  # not escaped

    def test_string_arguments_are_kept_verbatim(self) -> None:
        raw = '{ "city" : "Paris" }'
        tc = ToolCall(id="1", name="f", arguments=raw)
        assert tc.arguments_json() == raw
        assert tc.arguments_dict() == {"city": "Paris"}

    @pytest.mark.parametrize("raw", ["", "   "])
    def test_empty_string_is_no_arguments(self, raw: str) -> None:
        assert ToolCall(id="1", name="f", arguments=raw).arguments_dict() == {}

    def test_default_is_no_arguments(self) -> None:
        tc = ToolCall(id="1", name="f")
        assert tc.arguments_dict() == {}
        assert tc.arguments_json() == "{}"

    def test_malformed_json_raises_value_error(self) -> None:
        tc = ToolCall(id="1", name="f", arguments="{bad")
        assert tc.arguments_json() == "{bad"
        with pytest.raises(ValueError, match="Expecting property name"):
            tc.arguments_dict()

    @pytest.mark.parametrize("raw", ["[1, 2]", '"text"', "3", "null"])
    def test_json_that_is_not_an_object_raises_value_error(self, raw: str) -> None:
        with pytest.raises(ValueError, match="must be a JSON object"):
            ToolCall(id="1", name="f", arguments=raw).arguments_dict()


def test_assistant_text_and_tool_calls_keep_order() -> None:
    message = AssistantMessage(
        parts=[
            TextPart(text="a"),
            ToolCall(id="1", name="f"),
            TextPart(text="b"),
            ToolCall(id="2", name="g"),
        ]
    )
    assert message.text == "ab"
    assert [c.id for c in message.tool_calls] == ["1", "2"]


def test_run_result_text_is_the_last_assistant_text() -> None:
    result = RunResult(
        run_id="r",
        status="completed",
        messages=[
            UserMessage(content="q"),
            AssistantMessage(parts=[TextPart(text="first")]),
            AssistantMessage(parts=[ToolCall(id="1", name="f")]),
        ],
    )
    assert result.text == "first"
    assert RunResult(run_id="r", status="completed").text == ""


class TestConstruct:
    """`construct` is a faster `model_construct` for the hot path: same objects out."""

    @pytest.mark.parametrize(
        ("cls", "values"),
        [
            (
                Usage,
                {
                    "input_tokens": 3,
                    "output_tokens": 4,
                    "cached_tokens": 1,
                    "requests": 1,
                    "tool_calls": 2,
                },
            ),
            (
                ToolResult,
                {"role": "tool", "call_id": "c", "name": "t", "content": "x", "status": "error"},
            ),
            (UserMessage, {"role": "user", "content": "hi"}),
        ],
    )
    def test_equals_model_construct(self, cls: Any, values: dict[str, Any]) -> None:
        fast = construct(cls, **values)
        slow = cls.model_construct(**values)
        assert fast == slow
        assert fast.model_dump() == slow.model_dump()
        assert fast.model_dump_json() == slow.model_dump_json()
        assert type(fast).model_validate_json(fast.model_dump_json()) == slow

    def test_partial_values_fall_back_to_model_construct(self) -> None:
        usage = construct(Usage, input_tokens=5)
        assert usage == Usage(input_tokens=5)
        assert usage.model_fields_set == {"input_tokens"}

    def test_frozen_still_holds_and_copies_are_independent(self) -> None:
        values = {"input_tokens": 1, "output_tokens": 0, "cached_tokens": 0, "requests": 0}
        a = construct(Usage, **values, tool_calls=0)
        with pytest.raises(ValidationError):
            a.input_tokens = 10  # type: ignore[misc]
        b = a.model_copy(update={"requests": 3})
        assert (a.requests, b.requests) == (0, 3)
        assert a.model_fields_set == set(Usage.model_fields)


class TestShareFieldsSets:
    """A run keeps every message it receives; equal fields-sets become one object."""

    def message(self, call_id: str) -> AssistantMessage:
        # Built as an adapter builds one: validated, each object with a set of its own.
        return AssistantMessage(
            parts=[TextPart(text="a"), ToolCall(id=call_id, name="t", arguments="{}")]
        )

    def test_equal_sets_become_one_and_say_the_same(self) -> None:
        first, second = self.message("c1"), self.message("c2")
        before = [(m.model_fields_set, m.model_dump(exclude_unset=True)) for m in (first, second)]
        assert first.model_fields_set is not second.model_fields_set
        share_fields_sets(first)
        share_fields_sets(second)
        assert first.model_fields_set is second.model_fields_set
        assert first.parts[1].model_fields_set is second.parts[1].model_fields_set
        after = [(m.model_fields_set, m.model_dump(exclude_unset=True)) for m in (first, second)]
        assert after == before

    def test_different_sets_stay_apart(self) -> None:
        full = AssistantMessage(role="assistant", parts=[])
        share_fields_sets(self.message("c1"))
        share_fields_sets(full)
        assert full.model_fields_set == {"role", "parts"}

    def test_a_copy_gets_its_own(self) -> None:
        first, second = self.message("c1"), self.message("c2")
        share_fields_sets(first)
        share_fields_sets(second)
        copied = first.parts[1].model_copy(update={"arguments": "{}"})
        assert copied.model_fields_set is not first.parts[1].model_fields_set
        assert second.parts[1].model_fields_set == {"id", "name", "arguments"}

    def test_models_that_are_not_frozen_keep_their_own(self) -> None:
        class Loose(TextPart):
            model_config = ConfigDict(frozen=False)

        first, second = Loose(text="a"), Loose(text="b")
        share_fields_sets(AssistantMessage.model_construct(parts=[first, second]))
        assert first.model_fields_set is not second.model_fields_set
        first.text = "changed"
        assert second.model_fields_set == {"text"}
