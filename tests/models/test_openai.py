"""`OpenAIModel` through the official SDK, over real HTTP, against a strict fake server.

The fake validates every request against the SDK's own request schema; each test ends
by asserting it rejected nothing (the `server` fixture does it).
"""

from __future__ import annotations

import email.utils
import importlib
import socket
import sys
import time
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.fakes.http_server import Reply
from tests.fakes.openai_server import Answer, FakeOpenAI, error, openai_server, validate_request
from tether import Agent, ModelResponded, RunCompleted, TextDelta, ToolCalled, ToolReturned, tool
from tether.errors import (
    ConfigError,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    ModelHTTPError,
    ModelRateLimited,
    ModelResponseError,
    ModelTimeout,
)
from tether.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolDefinition,
    ToolResult,
    Usage,
    UserMessage,
)
from tether.models import infer_model
from tether.models.openai import OpenAIModel
from tether.settings import Settings

KEY = "sk-test-do-not-leak"
WEATHER = ToolDefinition(
    name="get_weather",
    description="Current weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings that ignore the developer's environment and .env file."""
    for name in ("OPENAI_API_KEY", "TETHER_OPENAI_API_KEY", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("TETHER_OPENAI_BASE_URL", raising=False)
    return Settings(_env_file=None, model_timeout=10.0)  # type: ignore[call-arg]


@pytest.fixture
def server() -> Iterator[FakeOpenAI]:
    with openai_server() as fake:
        yield fake
    assert fake.invalid == [], "the fake OpenAI server rejected a request"


@pytest.fixture
async def model(server: FakeOpenAI, settings: Settings) -> Any:
    model = OpenAIModel("gpt-test", settings=settings, api_key=KEY, base_url=server.base_url)
    yield model
    await model.aclose()


def ask(*messages: Any, tools: list[ToolDefinition] | None = None, **settings: Any) -> ModelRequest:
    return ModelRequest(
        messages=list(messages) or [UserMessage(content="hi")],
        tools=tools or [],
        settings=ModelSettings(**settings),
    )


async def both(model: OpenAIModel, request: ModelRequest) -> tuple[ModelResponse, ModelResponse]:
    """The same request, plain then streamed: the server must have two answers queued."""
    plain = await model.request(request)
    deltas: list[str] = []
    streamed = await model.request_stream(request, deltas.append)
    assert "".join(deltas) == streamed.message.text
    return plain, streamed


async def send(model: OpenAIModel, request: ModelRequest, streaming: bool) -> ModelResponse:
    if streaming:
        return await model.request_stream(request, lambda _: None)
    return await model.request(request)


# --- the fake is as strict as the SDK's schema ---------------------------------------------


@pytest.mark.parametrize(
    ("body", "why"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}]}, None),
        ({"model": "m", "messages": [{"role": "user", "content": "hi"}], "bogus": 1}, "bogus"),
        ({"model": "m", "messages": [{"role": "user", "content": "hi", "name2": "x"}]}, "name2"),
        ({"model": "m", "messages": [{"role": "robot", "content": "hi"}]}, "role"),
        ({"model": "m", "messages": [{"role": "tool", "content": "x"}]}, "tool_call_id"),
        ({"model": "m", "messages": [], "temperature": None}, "null"),
        ({"messages": []}, "model"),
        (
            {
                "model": "m",
                "messages": [],
                "tools": [{"type": "function", "function": {"name": "f", "extra": 1}}],
            },
            "extra",
        ),
    ],
)
def test_fake_server_validates_requests(body: dict[str, Any], why: str | None):
    found = validate_request(body)
    if why is None:
        assert found is None
    else:
        assert found is not None
        assert why in found


# --- request mapping ------------------------------------------------------------------------


async def test_every_message_kind_is_mapped_exactly(model: OpenAIModel, server: FakeOpenAI):
    server.add(Answer(text="ok"))
    request = ModelRequest(
        messages=[
            SystemMessage(content="Be brief."),
            UserMessage(content="Weather in Paris and Rome?"),
            AssistantMessage(
                parts=[
                    TextPart(text="Checking."),
                    ToolCall(id="call_1", name="get_weather", arguments='{"city":"Paris"}'),
                    ToolCall(id="call_2", name="get_weather", arguments={"city": "Rome"}),
                ]
            ),
            ToolResult(call_id="call_1", name="get_weather", content="21 °C"),
            ToolResult(
                call_id="call_2", name="get_weather", content="no such city", status="error"
            ),
            AssistantMessage(parts=[ToolCall(id="call_3", name="get_weather", arguments="{bad")]),
            ToolResult(call_id="call_3", name="get_weather", content="denied", status="denied"),
            UserMessage(content="Thanks"),
        ],
        tools=[WEATHER],
        tool_choice="required",
        settings=ModelSettings(
            max_tokens=64, temperature=0.2, top_p=0.9, seed=7, stop=["END"], timeout=5
        ),
    )
    await model.request(request)
    body = server.bodies[0]
    assert body["model"] == "gpt-test"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "21 °C"},
        {"role": "tool", "tool_call_id": "call_2", "content": "no such city"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_3",
                    "type": "function",
                    # malformed arguments go back exactly as the model wrote them
                    "function": {"name": "get_weather", "arguments": "{bad"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_3", "content": "denied"},
        {"role": "user", "content": "Thanks"},
    ]
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather for a city.",
                "parameters": WEATHER.parameters,
            },
        }
    ]
    assert body["tool_choice"] == "required"
    assert body["max_completion_tokens"] == 64
    assert body["temperature"] == 0.2
    assert body["top_p"] == 0.9
    assert body["seed"] == 7
    assert body["stop"] == ["END"]
    assert "max_tokens" not in body
    assert "stream" not in body
    assert "timeout" not in body
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"


async def test_unset_settings_and_absent_tools_are_left_out(model: OpenAIModel, server: FakeOpenAI):
    server.add(Answer(text="ok"))
    await model.request(ask(UserMessage(content="hi")))
    assert server.bodies[0] == {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "hi"}],
    }


@pytest.mark.parametrize("choice", ["auto", "required", "none"])
async def test_tool_choice(model: OpenAIModel, server: FakeOpenAI, choice: Any):
    server.add(Answer(text="ok"))
    await model.request(
        ModelRequest(messages=[UserMessage(content="hi")], tools=[WEATHER], tool_choice=choice)
    )
    assert server.bodies[0]["tool_choice"] == choice
    assert server.bodies[0]["tools"][0]["function"]["name"] == "get_weather"


async def test_streaming_request_asks_for_usage(model: OpenAIModel, server: FakeOpenAI):
    server.add(Answer(text="ok"))
    await model.request_stream(ask(temperature=0.0), lambda _: None)
    body = server.bodies[0]
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["temperature"] == 0.0


# --- response mapping -----------------------------------------------------------------------


async def test_text_response(model: OpenAIModel, server: FakeOpenAI):
    server.add(Answer(text="Sunny, 21 °C.", usage=(120, 9, 100)))
    response = await model.request(ask())
    assert response.message == AssistantMessage(parts=[TextPart(text="Sunny, 21 °C.")])
    assert response.usage == Usage(input_tokens=120, output_tokens=9, cached_tokens=100, requests=1)
    assert response.finish_reason == "stop"
    # the configured name, not the served snapshot, so registered prices apply
    assert response.model == "openai:gpt-test" == model.name


async def test_tool_call_response_keeps_raw_arguments(model: OpenAIModel, server: FakeOpenAI):
    server.add(Answer(calls=[("call_9", "get_weather", '{"city": "Paris"}')]))
    response = await model.request(ask(tools=[WEATHER]))
    (call,) = response.message.parts
    assert call == ToolCall(id="call_9", name="get_weather", arguments='{"city": "Paris"}')
    assert response.finish_reason == "tool_calls"
    assert response.message.text == ""


async def test_parallel_tool_calls_with_text(model: OpenAIModel, server: FakeOpenAI):
    calls = [("a", "get_weather", '{"city":"Paris"}'), ("b", "get_time", '{"tz":"CET"}')]
    server.add(Answer(text="Both:", calls=calls, finish_reason="tool_calls"))
    response = await model.request(ask(tools=[WEATHER]))
    assert response.message.parts == [
        TextPart(text="Both:"),
        ToolCall(id="a", name="get_weather", arguments='{"city":"Paris"}'),
        ToolCall(id="b", name="get_time", arguments='{"tz":"CET"}'),
    ]


async def test_missing_usage_still_counts_the_request(model: OpenAIModel, server: FakeOpenAI):
    server.add(Answer(text="ok", usage=None, finish_reason="length"))
    response = await model.request(ask())
    assert response.usage == Usage(requests=1)
    assert response.finish_reason == "length"


# --- streaming ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer",
    [
        Answer(text="The weather in Paris is sunny.", usage=(30, 8, 16), pieces=5),
        Answer(calls=[("call_1", "get_weather", '{"city":"Paris"}')], pieces=4),
        Answer(
            text="Looking both up.",
            calls=[
                ("a", "get_weather", '{"city":"Paris"}'),
                ("b", "get_weather", '{"city":"Rome"}'),
            ],
            interleave=True,
        ),
        Answer(text="cut short", finish_reason="length", usage=None),
    ],
    ids=["text", "tool-call", "parallel-interleaved", "no-usage"],
)
async def test_stream_equals_plain(model: OpenAIModel, server: FakeOpenAI, answer: Answer):
    server.add(answer, answer)
    plain, streamed = await both(model, ask(tools=[WEATHER]))
    assert streamed == plain


async def test_stream_delivers_text_deltas_in_order(model: OpenAIModel, server: FakeOpenAI):
    server.add(Answer(text="abcdefghi", pieces=3))
    deltas: list[str] = []
    await model.request_stream(ask(), deltas.append)
    assert deltas == ["abc", "def", "ghi"]


async def test_error_event_mid_stream(model: OpenAIModel, server: FakeOpenAI):
    server.add(Reply(sse=[(None, {"error": {"message": "overloaded", "type": "server_error"}})]))
    with pytest.raises(ModelError, match="overloaded") as caught:
        await model.request_stream(ask(), lambda _: None)
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, openai.APIError)


# --- errors ---------------------------------------------------------------------------------


def http_date(seconds_from_now: float) -> str:
    return email.utils.formatdate(time.time() + seconds_from_now, usegmt=True)


@pytest.mark.parametrize(
    ("status", "headers", "kind", "retryable", "retry_after"),
    [
        (400, {}, ModelHTTPError, False, None),
        (401, {}, ModelAuthError, False, None),
        (403, {}, ModelAuthError, False, None),
        (404, {}, ModelHTTPError, False, None),
        (408, {}, ModelHTTPError, True, None),
        (409, {}, ModelHTTPError, True, None),
        (422, {}, ModelHTTPError, False, None),
        (429, {"Retry-After": "7"}, ModelRateLimited, True, 7.0),
        (429, {"Retry-After": "<http-date in 30s>"}, ModelRateLimited, True, 30.0),
        (429, {"retry-after-ms": "1500"}, ModelRateLimited, True, 1.5),
        (500, {}, ModelHTTPError, True, None),
        (502, {}, ModelHTTPError, True, None),
        (503, {"Retry-After": "3"}, ModelHTTPError, True, 3.0),
    ],
)
@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "stream"])
async def test_error_status_is_typed(
    model: OpenAIModel,
    server: FakeOpenAI,
    status: int,
    headers: dict[str, str],
    kind: type[ModelError],
    retryable: bool,
    retry_after: float | None,
    streaming: bool,
):
    if headers.get("Retry-After") == "<http-date in 30s>":
        headers = {"Retry-After": http_date(30)}
    server.add(error(status, f"failure {status}", headers=headers))
    with pytest.raises(ModelError) as caught:
        await send(model, ask(), streaming)
    exc = caught.value
    assert type(exc) is kind
    assert exc.retryable is retryable
    assert exc.status_code == status
    assert exc.model == "openai:gpt-test"
    assert f"failure {status}" in str(exc)
    if retry_after is None:
        assert exc.retry_after is None
    else:
        assert exc.retry_after == pytest.approx(retry_after, abs=2)
    assert isinstance(exc.__cause__, openai.APIStatusError)
    assert len(server.requests) == 1, "the SDK must not retry on its own"
    assert KEY not in str(exc)


async def test_dropped_connection(model: OpenAIModel, server: FakeOpenAI):
    server.add(Reply(drop=True))
    with pytest.raises(ModelConnectionError) as caught:
        await model.request(ask())
    assert caught.value.retryable
    assert isinstance(caught.value.__cause__, openai.APIConnectionError)
    assert len(server.requests) == 1


async def test_connection_refused_names_the_base_url(settings: Settings):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}/v1"
    model = OpenAIModel("gpt-test", settings=settings, base_url=base_url)
    try:
        with pytest.raises(ModelConnectionError, match="server is up") as caught:
            await model.request(ask())
        assert base_url in str(caught.value)
        assert caught.value.retryable
    finally:
        await model.aclose()


@pytest.mark.parametrize("streaming", [False, True], ids=["plain", "stream"])
async def test_timeout(model: OpenAIModel, server: FakeOpenAI, streaming: bool):
    server.add(Answer(text="too late", delay=1.0))
    with pytest.raises(ModelTimeout, match=r"0\.2s") as caught:
        await send(model, ask(timeout=0.2), streaming)
    assert caught.value.retryable
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    "body",
    ["not a completion", {"id": "x", "object": "chat.completion", "choices": []}, {"id": "x"}],
    ids=["string", "no-choices", "no-fields"],
)
async def test_malformed_response(model: OpenAIModel, server: FakeOpenAI, body: Any):
    server.add(Reply(json=body))
    with pytest.raises(ModelResponseError) as caught:
        await model.request(ask())
    assert not caught.value.retryable
    assert caught.value.model == "openai:gpt-test"


@pytest.mark.parametrize(
    "sse",
    [
        [(None, "[DONE]")],
        # cut before the finish_reason chunk, with no [DONE]: an unfinished answer
        [(None, c) for c in Answer(text="half an ans").chunks(include_usage=False)[:-1]],
    ],
    ids=["empty", "cut-short"],
)
async def test_unfinished_stream_is_retryable(
    model: OpenAIModel, server: FakeOpenAI, sse: list[Any]
):
    server.add(Reply(sse=sse))
    with pytest.raises(
        ModelConnectionError, match="ended before the answer was finished"
    ) as caught:
        await model.request_stream(ask(), lambda _: None)
    assert caught.value.retryable


# --- configuration --------------------------------------------------------------------------


def test_missing_key_without_base_url_is_a_config_error(settings: Settings):
    with pytest.raises(ConfigError, match="TETHER_OPENAI_API_KEY or OPENAI_API_KEY"):
        OpenAIModel("gpt-4.1-mini", settings=settings)


async def test_custom_base_url_needs_no_key(server: FakeOpenAI, settings: Settings):
    server.add(Answer(text="local"))
    model = OpenAIModel("qwen2.5:7b", settings=settings, base_url=server.base_url)
    try:
        assert (await model.request(ask())).message.text == "local"
    finally:
        await model.aclose()
    assert server.requests[0].headers["authorization"].startswith("Bearer ")


async def test_key_and_base_url_from_settings(server: FakeOpenAI, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("TETHER_OPENAI_API_KEY", KEY)
    monkeypatch.setenv("TETHER_OPENAI_BASE_URL", server.base_url)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    server.add(Answer(text="ok"))
    model = infer_model("openai:gpt-test", settings)
    assert isinstance(model, OpenAIModel)
    try:
        await model.request(ask())
    finally:
        await model.aclose()
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in repr(model)
    assert KEY not in repr(vars(model))


async def test_passed_client_gets_retries_off_and_is_not_closed(
    server: FakeOpenAI, settings: Settings
):
    client = openai.AsyncOpenAI(api_key=KEY, base_url=server.base_url, max_retries=5)
    server.add(error(500))
    model = OpenAIModel("gpt-test", settings=settings, client=client)
    with pytest.raises(ModelHTTPError):
        await model.request(ask())
    assert len(server.requests) == 1
    await model.aclose()
    assert not client.is_closed()
    await client.close()


async def test_aclose_closes_and_a_later_call_reopens(model: OpenAIModel, server: FakeOpenAI):
    server.add(Answer(text="one"), Answer(text="two"))
    assert (await model.request(ask())).message.text == "one"
    await model.aclose()
    await model.aclose()  # idempotent
    assert (await model.request(ask())).message.text == "two"


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setitem(sys.modules, "openai", None)
    monkeypatch.delitem(sys.modules, "tether.models.openai")
    with pytest.raises(ConfigError, match=r"pip install 'tether\[openai\]'"):
        importlib.import_module("tether.models.openai")


# --- end to end through Agent ---------------------------------------------------------------


@tool
def get_weather(city: str) -> str:
    """Current weather for a city."""
    return f"{city}: sunny, 21 °C"


def weather_run() -> list[Answer]:
    return [
        Answer(calls=[("call_1", "get_weather", '{"city": "Paris"}')], usage=(50, 10, 0)),
        Answer(text="It is sunny in Paris.", usage=(80, 8, 40)),
    ]


async def test_agent_runs_a_tool_and_answers(server: FakeOpenAI, settings: Settings):
    server.add(*weather_run())
    model = OpenAIModel("gpt-test", settings=settings, api_key=KEY, base_url=server.base_url)
    agent = Agent(model=model, instructions="Be brief.", tools=[get_weather])
    try:
        result = await agent.run("Weather in Paris?")
    finally:
        await agent.aclose()
    assert result.status == "completed"
    assert result.output == "It is sunny in Paris."
    assert result.usage.input_tokens == 130
    assert result.usage.cached_tokens == 40
    assert result.usage.requests == 2
    second = server.bodies[1]
    assert second["tools"][0]["function"]["name"] == "get_weather"
    assert second["tool_choice"] == "auto"
    assert second["messages"][0] == {"role": "system", "content": "Be brief."}
    assert second["messages"][2]["tool_calls"][0]["id"] == "call_1"
    assert second["messages"][3]["role"] == "tool"
    assert second["messages"][3]["tool_call_id"] == "call_1"
    assert "Paris: sunny, 21 °C" in second["messages"][3]["content"]


async def test_agent_stream(server: FakeOpenAI, settings: Settings):
    server.add(*weather_run())
    model = OpenAIModel("gpt-test", settings=settings, api_key=KEY, base_url=server.base_url)
    agent = Agent(model=model, tools=[get_weather])
    try:
        events = [event async for event in agent.stream("Weather in Paris?")]
    finally:
        await agent.aclose()
    assert all(body["stream"] is True for body in server.bodies)
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert text == "It is sunny in Paris."
    called = [e.call for e in events if isinstance(e, ToolCalled)]
    assert called == [ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')]
    returned = [e.result for e in events if isinstance(e, ToolReturned)]
    assert returned[0].status == "ok"
    responses = [e.response for e in events if isinstance(e, ModelResponded)]
    assert [r.usage.input_tokens for r in responses] == [50, 80]
    final = events[-1]
    assert isinstance(final, RunCompleted)
    assert final.result.output == "It is sunny in Paris."
