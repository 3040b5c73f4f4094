"""`AnthropicModel` through the official SDK, over real HTTP, against a fake Messages API."""

from __future__ import annotations

import email.utils
import importlib
import socket
import sys
import time
import warnings
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import pytest

from tests.fakes.anthropic_server import (
    anthropic_server,
    check_request,
    message,
    status_error,
    stream_error,
    text,
    tool_use,
    truncated_stream,
)
from tests.fakes.http_server import Reply
from tether import Agent, tool
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
from tether.loop import RunCompleted, TextDelta, ToolCalled, ToolReturned
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
from tether.models.anthropic import DEFAULT_MAX_TOKENS, AnthropicModel
from tether.settings import Settings

KEY = "sk-ant-test-0123456789-secret"
NAME = "anthropic:claude-test"

WEATHER = ToolDefinition(
    name="get_weather",
    description="Weather for a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
)
TIME = ToolDefinition(
    name="get_time", parameters={"type": "object", "properties": {"tz": {"type": "string"}}}
)
NEWS = ToolDefinition(name="get_news", parameters={"type": "object", "properties": {}})


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "ANTHROPIC_API_KEY",
        "TETHER_ANTHROPIC_API_KEY",
        "ANTHROPIC_BASE_URL",
        "TETHER_ANTHROPIC_BASE_URL",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_CUSTOM_HEADERS",
    ):
        monkeypatch.delenv(name, raising=False)


_made: list[AnthropicModel] = []


@pytest.fixture(autouse=True)
async def _close_models() -> AsyncIterator[None]:
    yield
    while _made:
        await _made.pop().aclose()


def make_model(url: str, **kwargs: Any) -> AnthropicModel:
    """A model on `url`, closed after the test."""
    model = AnthropicModel("claude-test", api_key=KEY, base_url=url, **kwargs)
    _made.append(model)
    return model


def ask(text: str = "Hi", **kwargs: Any) -> ModelRequest:
    return ModelRequest(messages=[UserMessage(content=text)], **kwargs)


async def call(model: AnthropicModel, request: ModelRequest, streaming: bool) -> ModelResponse:
    if streaming:
        return await model.request_stream(request, lambda _: None)
    return await model.request(request)


@pytest.fixture(params=[False, True], ids=["json", "stream"])
def streaming(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


# --- request mapping --------------------------------------------------------------------


CONVERSATION = [
    SystemMessage(content="You are terse."),
    SystemMessage(content="Answer in English."),
    UserMessage(content="Weather, time and news for Paris?"),
    AssistantMessage(
        parts=[
            TextPart(text="Checking."),
            ToolCall(id="toolu_1", name="get_weather", arguments='{"city": "Paris"}'),
            ToolCall(id="toolu_2", name="get_time", arguments={"tz": "CET"}),
            ToolCall(id="toolu_3", name="get_news", arguments="{not json"),
        ]
    ),
    ToolResult(call_id="toolu_1", name="get_weather", content="Sunny"),
    ToolResult(call_id="toolu_2", name="get_time", content="clock broke", status="error"),
    ToolResult(call_id="toolu_3", name="get_news", content="not allowed", status="denied"),
    UserMessage(content="And tomorrow?"),
]


async def test_request_maps_every_field(streaming: bool) -> None:
    with anthropic_server(message(text("ok"))) as server:
        model = make_model(server.url)
        request = ModelRequest(messages=CONVERSATION, tools=[WEATHER, TIME, NEWS])
        await call(model, request, streaming)
        await model.aclose()
    assert server.failures == []
    body = server.bodies[0]
    assert body.pop("stream", False) is streaming
    assert body == {
        "model": "claude-test",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "system": "You are terse.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": "Weather, time and news for Paris?"},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Checking."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {
                        "type": "tool_use",
                        "id": "toolu_2",
                        "name": "get_time",
                        "input": {"tz": "CET"},
                    },
                    # malformed arguments cannot be sent: Anthropic takes only an object
                    {"type": "tool_use", "id": "toolu_3", "name": "get_news", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "Sunny"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": "clock broke",
                        "is_error": True,
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_3",
                        "content": "not allowed",
                        "is_error": True,
                    },
                    {"type": "text", "text": "And tomorrow?"},
                ],
            },
        ],
        "tools": [
            {
                "name": "get_weather",
                "description": "Weather for a city.",
                "input_schema": WEATHER.parameters,
            },
            {"name": "get_time", "description": "", "input_schema": TIME.parameters},
            {"name": "get_news", "description": "", "input_schema": NEWS.parameters},
        ],
        "tool_choice": {"type": "auto"},
    }
    request_headers = server.requests[0].headers
    assert request_headers["x-stainless-retry-count"] == "0"
    assert KEY in request_headers.get("x-api-key", "") + request_headers.get("authorization", "")


@pytest.mark.parametrize(
    ("choice", "sent"),
    [("auto", {"type": "auto"}), ("required", {"type": "any"}), ("none", {"type": "none"})],
)
async def test_tool_choice(choice: Any, sent: dict[str, str]) -> None:
    with anthropic_server(message(text("ok"))) as server:
        await make_model(server.url).request(ask(tools=[WEATHER], tool_choice=choice))
    assert server.failures == []
    assert server.bodies[0]["tool_choice"] == sent


async def test_no_tools_sends_neither_tools_nor_tool_choice_nor_system() -> None:
    with anthropic_server(message(text("ok"))) as server:
        await make_model(server.url).request(ask(tool_choice="none"))
    assert server.failures == []
    assert server.bodies[0] == {
        "model": "claude-test",
        "max_tokens": DEFAULT_MAX_TOKENS,
        "messages": [{"role": "user", "content": "Hi"}],
    }


async def test_settings_max_tokens_and_stop_sequences_seed_ignored() -> None:
    settings = ModelSettings(max_tokens=256, stop=["END", "STOP"], seed=7, timeout=30)
    with anthropic_server(message(text("ok"))) as server:
        await make_model(server.url).request(ask(settings=settings))
    assert server.failures == []
    body = server.bodies[0]
    assert body["max_tokens"] == 256
    assert body["stop_sequences"] == ["END", "STOP"]
    assert "seed" not in body
    assert server.requests[0].headers["x-stainless-timeout"] == "30.0"


async def test_temperature_and_top_p_are_not_sent_and_warn_once() -> None:
    # The installed SDK's Messages API has no temperature/top_p (the fake refuses keys
    # the SDK's request type does not have), so they are dropped with a warning.
    settings = ModelSettings(temperature=0.2, top_p=0.9)
    with anthropic_server(message(text("a")), message(text("b"))) as server:
        model = make_model(server.url)
        with pytest.warns(UserWarning, match="temperature or top_p"):
            await model.request(ask(settings=settings))
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # warned once per model, not per request
            await model.request(ask(settings=settings))
    assert server.failures == []
    assert not {"temperature", "top_p"} & set(server.bodies[0])


# --- response mapping -------------------------------------------------------------------


REPLIES = {
    "text": message(text("Hello there, how can I help you today?")),
    "tools": message(
        text("Let me check both."),
        tool_use("get_weather", {"city": "Paris"}, id="toolu_a"),
        tool_use("get_time", {"tz": "Europe/Paris", "format": {"h24": True}}, id="toolu_b"),
        input_tokens=10,
        output_tokens=20,
        cache_read=100,
        cache_creation=30,
    ),
    "tool_only": message(tool_use("get_news", {}, id="toolu_c")),
    "max_tokens": message(text("cut"), stop_reason="max_tokens", cache_read=0),
}


async def test_response_mapping() -> None:
    with anthropic_server(REPLIES["tools"]) as server:
        response = await make_model(server.url).request(ask(tools=[WEATHER, TIME]))
    assert response == ModelResponse(
        message=AssistantMessage(
            parts=[
                TextPart(text="Let me check both."),
                ToolCall(id="toolu_a", name="get_weather", arguments={"city": "Paris"}),
                ToolCall(
                    id="toolu_b",
                    name="get_time",
                    arguments={"tz": "Europe/Paris", "format": {"h24": True}},
                ),
            ]
        ),
        usage=Usage(input_tokens=140, output_tokens=20, cached_tokens=100, requests=1),
        model=NAME,
        finish_reason="tool_use",
    )


@pytest.mark.parametrize("name", list(REPLIES))
async def test_streaming_equals_non_streaming(name: str) -> None:
    body = REPLIES[name]
    deltas: list[str] = []
    with anthropic_server(body, body) as server:
        model = make_model(server.url)
        plain = await model.request(ask(tools=[WEATHER, TIME, NEWS]))
        streamed = await model.request_stream(ask(tools=[WEATHER, TIME, NEWS]), deltas.append)
        await model.aclose()
    assert server.failures == []
    assert server.bodies[1]["stream"] is True
    assert streamed == plain
    assert "".join(deltas) == plain.message.text
    if len(plain.message.text) > 4:
        assert len(deltas) > 1  # really streamed, piece by piece


# --- errors -------------------------------------------------------------------------------


def _in(seconds: float) -> str:
    return email.utils.formatdate(time.time() + seconds, usegmt=True)


ERRORS = [
    # reply, error type, retryable, retry_after (None: absent; a pair: a range), status
    (status_error(429, headers={"retry-after": "7"}), ModelRateLimited, True, 7.0, 429),
    # 50 minutes ahead (under the one-hour cap): the date is made at import, minutes early.
    (
        status_error(429, headers={"retry-after": _in(3000)}),
        ModelRateLimited,
        True,
        (2000, 3001),
        429,
    ),
    (status_error(401, "invalid x-api-key"), ModelAuthError, False, None, 401),
    (status_error(403), ModelAuthError, False, None, 403),
    (status_error(400, "messages: roles must alternate"), ModelHTTPError, False, None, 400),
    (status_error(404, "model: claude-nope"), ModelHTTPError, False, None, 404),
    (status_error(500), ModelHTTPError, True, None, 500),
    (status_error(503, headers={"retry-after": "2"}), ModelHTTPError, True, 2.0, 503),
    (status_error(529, "Overloaded"), ModelHTTPError, True, None, 529),
]


@pytest.mark.parametrize(("reply", "kind", "retryable", "retry_after", "status"), ERRORS)
async def test_http_errors(
    reply: Reply, kind: type[ModelError], retryable: bool, retry_after: Any, status: int,
    streaming: bool,
) -> None:  # fmt: skip
    with anthropic_server(reply) as server, pytest.raises(kind) as caught:
        await call(make_model(server.url), ask(), streaming)
    assert len(server.requests) == 1  # the SDK does not retry on its own
    error = caught.value
    assert type(error) is kind
    assert error.retryable is retryable
    assert error.status_code == status
    assert error.model == NAME
    if isinstance(retry_after, tuple):
        assert retry_after[0] <= error.retry_after <= retry_after[1]
    else:
        assert error.retry_after == retry_after
    assert isinstance(error.__cause__, anthropic.APIStatusError)
    assert error.body == reply.json
    assert reply.json["error"]["message"] in str(error)
    assert KEY not in str(error)


@pytest.mark.parametrize(
    ("error_type", "kind", "retryable", "status"),
    [
        ("overloaded_error", ModelHTTPError, True, 529),
        ("api_error", ModelHTTPError, True, 500),
        ("rate_limit_error", ModelRateLimited, True, 429),
        ("invalid_request_error", ModelHTTPError, False, 400),
    ],
)
async def test_error_event_inside_a_stream(
    error_type: str, kind: type[ModelError], retryable: bool, status: int
) -> None:
    deltas: list[str] = []
    body = message(text("Partial answer that is cut off"))
    with (
        anthropic_server(stream_error(body, error_type, after=6)) as server,
        pytest.raises(kind) as caught,
    ):
        await make_model(server.url).request_stream(ask(), deltas.append)
    assert type(caught.value) is kind
    assert caught.value.retryable is retryable
    assert caught.value.status_code == status
    assert isinstance(caught.value.__cause__, anthropic.APIStatusError)
    assert deltas  # text before the error was delivered
    assert len(server.requests) == 1


async def test_stream_that_ends_without_message_stop() -> None:
    with (
        anthropic_server(truncated_stream(message(text("Half a sentence")), after=5)) as server,
        pytest.raises(ModelConnectionError, match="message_stop") as caught,
    ):
        await make_model(server.url).request_stream(ask(), lambda _: None)
    assert caught.value.retryable is True


async def test_dropped_connection(streaming: bool) -> None:
    with (
        anthropic_server(Reply(drop=True)) as server,
        pytest.raises(ModelConnectionError) as caught,
    ):
        await call(make_model(server.url), ask(), streaming)
    assert caught.value.retryable is True
    assert server.url in str(caught.value)
    assert isinstance(caught.value.__cause__, anthropic.APIConnectionError)
    assert len(server.requests) == 1


@pytest.fixture
def refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_connection_refused(refused_url: str, streaming: bool) -> None:
    with pytest.raises(ModelConnectionError) as caught:
        await call(make_model(refused_url), ask(), streaming)
    assert caught.value.retryable is True
    assert refused_url in str(caught.value)
    assert KEY not in str(caught.value)


async def test_timeout(streaming: bool) -> None:
    slow = Reply(json=message(text("late")), delay=1.5)
    with (
        anthropic_server(slow) as server,
        pytest.raises(ModelTimeout, match=r"0\.2s") as caught,
    ):
        await call(make_model(server.url), ask(settings=ModelSettings(timeout=0.2)), streaming)
    assert caught.value.retryable is True
    assert isinstance(caught.value.__cause__, anthropic.APITimeoutError)
    assert len(server.requests) == 1


@pytest.mark.parametrize(
    "reply",
    [
        Reply(json={"unexpected": True}),
        Reply(json="a string, not a message"),
        Reply(json=message(tool_use("x", id="t")) | {"content": [{"type": "tool_use"}]}),
    ],
    ids=["object", "string", "tool_use_without_fields"],
)
async def test_malformed_response(reply: Reply) -> None:
    with anthropic_server(reply) as server, pytest.raises(ModelResponseError) as caught:
        await make_model(server.url).request(ask())
    assert caught.value.retryable is False
    assert caught.value.__cause__ is not None


async def test_malformed_stream_event() -> None:
    events = [("content_block_delta", {"type": "content_block_delta", "index": 3, "delta": {}})]
    with anthropic_server(Reply(sse=events)) as server, pytest.raises(ModelResponseError):
        await make_model(server.url).request_stream(ask(), lambda _: None)


# --- configuration --------------------------------------------------------------------------


def test_missing_key_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="TETHER_ANTHROPIC_API_KEY or ANTHROPIC_API_KEY"):
        AnthropicModel("claude-test", settings=Settings(_env_file=None))


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "anthropic", None)
    monkeypatch.delitem(sys.modules, "tether.models.anthropic")
    with pytest.raises(ConfigError, match=r"pip install 'tether\[anthropic\]'"):
        importlib.import_module("tether.models.anthropic")


async def test_key_and_base_url_from_settings_never_shown() -> None:
    with anthropic_server(message(text("ok"))) as server:
        settings = Settings(_env_file=None, anthropic_api_key=KEY, anthropic_base_url=server.url)
        model = infer_model("anthropic:claude-test", settings)
        assert isinstance(model, AnthropicModel)
        assert model.name == NAME
        response = await model.request(ask())
        await model.aclose()
    assert response.model == NAME
    assert server.failures == []
    headers = server.requests[0].headers
    assert KEY in headers.get("x-api-key", "") + headers.get("authorization", "")
    assert KEY not in repr(model)
    assert KEY not in repr(vars(model))


async def test_base_url_without_key_is_allowed() -> None:
    with anthropic_server(message(text("ok"))) as server:
        model = AnthropicModel(
            "claude-test", settings=Settings(_env_file=None), base_url=server.url
        )
        assert (await model.request(ask())).message.text == "ok"
        await model.aclose()
    assert server.failures == []


async def test_client_is_built_once_and_closed() -> None:
    with anthropic_server(message(text("a")), message(text("b")), message(text("c"))) as server:
        model = make_model(server.url)
        await model.request(ask())
        client = model._client
        await model.request(ask())
        assert model._client is client
        await model.aclose()
        assert client is not None
        assert client.is_closed()
        await model.aclose()  # twice is fine
        assert (await model.request(ask())).message.text == "c"  # reopens
        await model.aclose()


async def test_a_given_client_is_used_and_left_open() -> None:
    with anthropic_server(message(text("ok"))) as server:
        client = anthropic.AsyncAnthropic(api_key=KEY, base_url=server.url, max_retries=0)
        model = AnthropicModel("claude-test", settings=Settings(_env_file=None), client=client)
        assert (await model.request(ask())).message.text == "ok"
        await model.aclose()
        assert not client.is_closed()
        await client.close()


def test_the_fake_server_refuses_what_the_api_would() -> None:
    headers = {"anthropic-version": "2023-06-01", "x-api-key": KEY}
    good = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
    assert check_request(good, headers) == []
    use = {"type": "tool_use", "id": "t1", "name": "f", "input": {}}
    bad = [
        {**good, "temperature": 0.5},
        {k: v for k, v in good.items() if k != "max_tokens"},
        {**good, "messages": [{"role": "user", "content": [{"type": "bogus"}]}]},
        {**good, "messages": [{"role": "assistant", "content": "hi"}]},
        {**good, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]},
        {
            **good,
            "tools": [{"name": "f", "input_schema": {"type": "object"}}],
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": [use]},
                {"role": "user", "content": "no result"},
            ],
        },
        {**good, "tool_choice": {"type": "auto"}},
    ]
    for body in bad:
        assert check_request(body, headers), body
    assert check_request(good, {})


# --- end to end: an agent on the official SDK ---------------------------------------------


@tool
async def get_weather(city: str) -> str:
    """Weather for a city."""
    return f"Sunny in {city}"


@tool
async def get_time(tz: str) -> str:
    """The time in a time zone."""
    return f"12:00 {tz}"


def _agent_script() -> list[Any]:
    return [
        message(
            text("Checking both."),
            tool_use("get_weather", {"city": "Paris"}, id="toolu_w"),
            tool_use("get_time", {"tz": "CET"}, id="toolu_t"),
            input_tokens=50,
            output_tokens=30,
            cache_read=20,
        ),
        message(text("Sunny in Paris, and it is 12:00."), input_tokens=90, output_tokens=12),
    ]


def _check_second_request(body: dict[str, Any]) -> None:
    assert body["system"] == "Be brief."
    assert [t["name"] for t in body["tools"]] == ["get_weather", "get_time"]
    assert body["tool_choice"] == {"type": "auto"}
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    results = body["messages"][-1]["content"]
    assert [(r["type"], r["tool_use_id"]) for r in results] == [
        ("tool_result", "toolu_w"),
        ("tool_result", "toolu_t"),
    ]
    assert "Sunny in Paris" in results[0]["content"]
    assert "12:00 CET" in results[1]["content"]


async def test_agent_runs_two_tools_in_parallel_and_answers() -> None:
    with anthropic_server(*_agent_script()) as server:
        agent = Agent(
            model=make_model(server.url), instructions="Be brief.", tools=[get_weather, get_time]
        )
        result = await agent.run("Weather and time in Paris?")
        await agent.aclose()
    assert server.failures == []
    assert result.status == "completed"
    assert result.output == "Sunny in Paris, and it is 12:00."
    assert result.usage.requests == 2
    assert result.usage.input_tokens == 70 + 90
    assert result.usage.cached_tokens == 20
    assert result.usage.tool_calls == 2
    _check_second_request(server.bodies[1])


async def test_agent_stream_through_the_sdk() -> None:
    with anthropic_server(*_agent_script()) as server:
        agent = Agent(
            model=make_model(server.url), instructions="Be brief.", tools=[get_weather, get_time]
        )
        events = [event async for event in agent.stream("Weather and time in Paris?")]
        await agent.aclose()
    assert server.failures == []
    assert all(body["stream"] is True for body in server.bodies)
    text_deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(text_deltas) > 2
    assert "".join(text_deltas) == "Checking both.Sunny in Paris, and it is 12:00."
    assert sorted(e.call.name for e in events if isinstance(e, ToolCalled)) == [
        "get_time",
        "get_weather",
    ]
    assert sum(isinstance(e, ToolReturned) for e in events) == 2
    completed = events[-1]
    assert isinstance(completed, RunCompleted)
    assert completed.result.output == "Sunny in Paris, and it is 12:00."
    _check_second_request(server.bodies[1])
