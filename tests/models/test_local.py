"""The embedded local model: the protocol (fast) and real runs on the CPU (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import BaseModel

from tether import Agent, ConfigError, ModelSettings, ToolCalled, ToolReturned
from tether.cli import load_agent
from tether.messages import (
    AssistantMessage,
    ModelRequest,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolResult,
    UserMessage,
)
from tether.models.embedded import EMBEDDED_SHA256, EMBEDDED_SIZE, embedded_model_path
from tether.models.local import LocalModel, _from_protocol, _protocol, _to_chat
from tether.settings import get_settings

EXAMPLE = Path(__file__).parents[2] / "examples" / "weather.py"

WEATHER = ToolDefinition(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
)


class TestProtocol:
    def test_no_tools_means_plain_chat(self) -> None:
        request = ModelRequest(messages=[UserMessage(content="hi")])
        assert _protocol(request) is None
        chat = _to_chat(request, None)
        assert chat == [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "hi"},
        ]

    def test_schema_allows_each_tool_and_an_answer(self) -> None:
        request = ModelRequest(messages=[UserMessage(content="hi")], tools=[WEATHER])
        schema = _protocol(request)
        assert schema is not None
        branches = schema["anyOf"]
        assert branches[0]["properties"]["tool"] == {"const": "get_weather"}
        assert branches[0]["properties"]["arguments"] == WEATHER.parameters
        assert branches[1]["required"] == ["answer"]

    def test_required_tool_choice_drops_the_answer_branch(self) -> None:
        request = ModelRequest(
            messages=[UserMessage(content="hi")], tools=[WEATHER], tool_choice="required"
        )
        schema = _protocol(request)
        assert schema is not None
        assert all("tool" in b["properties"] for b in schema["anyOf"])
        system = _to_chat(request, schema)[0]["content"]
        assert '{"answer"' not in system

    def test_tool_results_go_back_as_plain_user_turns(self) -> None:
        call = ToolCall(id="c1", name="get_weather", arguments={"city": "Paris"})
        request = ModelRequest(
            messages=[
                SystemMessage(content="Be brief."),
                UserMessage(content="Weather in Paris?"),
                AssistantMessage(parts=[call]),
                ToolResult(call_id="c1", name="get_weather", content='{"t": 18}'),
            ],
            tools=[WEATHER],
        )
        chat = _to_chat(request, _protocol(request))
        assert [m["role"] for m in chat] == ["system", "user", "assistant", "user"]
        assert chat[0]["content"].startswith("Be brief.")
        assert "get_weather" in chat[0]["content"]
        assert json.loads(chat[2]["content"]) == {
            "tool": "get_weather",
            "arguments": {"city": "Paris"},
        }
        assert chat[3]["content"].startswith('Result of get_weather: {"t": 18}')
        assert all(m["role"] != "tool" for m in chat)

    def test_error_results_are_marked(self) -> None:
        request = ModelRequest(
            messages=[
                UserMessage(content="?"),
                AssistantMessage(parts=[ToolCall(id="c", name="get_weather", arguments={})]),
                ToolResult(call_id="c", name="get_weather", content="bad", status="error"),
            ],
            tools=[WEATHER],
        )
        assert _to_chat(request, _protocol(request))[-1]["content"].startswith(
            "Error from get_weather: bad"
        )

    def test_parsing_answers_and_calls(self) -> None:
        request = ModelRequest(messages=[UserMessage(content="?")], tools=[WEATHER])
        call = _from_protocol('{"tool": "get_weather", "arguments": {"city": "Oslo"}}', request)
        assert call.tool_calls[0].name == "get_weather"
        assert call.tool_calls[0].arguments == {"city": "Oslo"}
        assert _from_protocol('{"answer": "Sunny."}', request).text == "Sunny."

    def test_truncated_json_is_a_typed_error(self) -> None:
        from tether.errors import ModelResponseError

        request = ModelRequest(messages=[UserMessage(content="?")], tools=[WEATHER])
        with pytest.raises(ModelResponseError, match="max_tokens"):
            _from_protocol('{"tool": "get_wea', request)


def test_a_missing_model_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LocalModel(tmp_path / "missing.gguf")


@pytest.mark.local_model
def test_embedded_file_is_joined_and_verified() -> None:
    path = embedded_model_path(get_settings().cache_dir)
    assert path.stat().st_size == EMBEDDED_SIZE
    assert path.with_name(path.name + ".sha256").read_text().strip() == EMBEDDED_SHA256


@pytest.mark.local_model
async def test_readme_example_calls_the_tool_and_uses_its_result() -> None:
    agent = load_agent(f"{EXAMPLE}:agent")
    events = [event async for event in agent.stream("What's the weather in Paris?")]
    calls = [e.call for e in events if isinstance(e, ToolCalled)]
    results = [e.result for e in events if isinstance(e, ToolReturned)]
    assert calls
    assert calls[0].name == "get_weather"
    assert calls[0].arguments_dict()["city"].lower() == "paris"
    assert results[0].status == "ok"
    assert "light rain" in results[0].content
    result = events[-1].result  # type: ignore[union-attr]
    assert result.status == "completed"
    answer = result.output.lower()
    assert "18" in answer or "rain" in answer, answer
    assert result.usage.requests == 2
    assert result.usage.input_tokens > 0
    assert result.cost_usd == 0.0


class Report(BaseModel):
    city: str
    temperature_c: float


@pytest.mark.local_model
async def test_structured_output_through_the_grammar() -> None:
    agent = load_agent(f"{EXAMPLE}:agent")
    structured = Agent(
        model="local",
        instructions="You are a weather assistant.",
        tools=list(agent.tools),
        output=Report,
    )
    result = await structured.run("Weather report for Berlin")
    assert isinstance(result.output, Report)
    assert result.output.city.lower() == "berlin"
    assert result.output.temperature_c == 16.0


def test_no_key_and_no_model_means_local() -> None:
    assert Agent().spec().model_name == "local"


@pytest.mark.local_model
async def test_tether_local_model_names_another_file(monkeypatch: pytest.MonkeyPatch) -> None:
    path = embedded_model_path(get_settings().cache_dir)  # any GGUF file will do
    monkeypatch.setenv("TETHER_LOCAL_MODEL", str(path))
    get_settings.cache_clear()
    agent = Agent(model="local", model_settings=ModelSettings(max_tokens=8))
    assert agent.spec().model_name == f"local:{path}"
    result = await agent.run("Say OK.")
    assert result.status == "completed"
    assert result.output.strip()
    assert 0 < result.usage.output_tokens <= 8
