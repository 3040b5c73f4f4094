"""A fake Anthropic Messages API (`POST /v1/messages`) for tests, on `FakeHTTPServer`.

Every request is checked against the installed SDK's own request types
(`MessageCreateParamsNonStreaming` / `MessageCreateParamsStreaming`, validated with a
pydantic `TypeAdapter`), with unknown keys refused, and against the rules of the API
that the types cannot express (roles alternate, the first turn is the user's, every
`tool_use` is answered by a `tool_result` at the start of the next user turn, ...).
A request that breaks one is answered 400 `invalid_request_error`, as the real API
would, and recorded in `failures`, which a test asserts empty.

The script is a list of replies, one per request: a message (a dict built with
`message(...)`), answered as JSON or as the real server-sent event sequence depending on
the request's `stream`; a `Reply` sent as is (errors, drops); or a function of the
request body returning either.

Example:
    ```python
    with anthropic_server(message(text("Hi")), status_error(529)) as server:
        model = AnthropicModel("claude-test", api_key="sk-test", base_url=server.url)
        ...
    assert server.failures == []
    ```
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import count
from typing import Any

from anthropic.types import TextBlockParam, ToolParam, ToolResultBlockParam, ToolUseBlockParam
from anthropic.types.message_create_params import (
    MessageCreateParamsNonStreaming,
    MessageCreateParamsStreaming,
)
from pydantic import TypeAdapter, ValidationError

from tests.fakes.http_server import FakeHTTPServer, Reply, Request

__all__ = [
    "FakeAnthropic",
    "anthropic_server",
    "message",
    "status_error",
    "stream_error",
    "text",
    "tool_use",
    "truncated_stream",
]

Script = dict[str, Any] | Reply | Callable[[dict[str, Any]], "dict[str, Any] | Reply"]

_ADAPTERS = {
    False: TypeAdapter(MessageCreateParamsNonStreaming),
    True: TypeAdapter(MessageCreateParamsStreaming),
}


def _keys(typed: Any) -> frozenset[str]:
    return frozenset(typed.__required_keys__ | typed.__optional_keys__)


_TOP_KEYS = {
    False: _keys(MessageCreateParamsNonStreaming),
    True: _keys(MessageCreateParamsStreaming),
}
_BLOCK_KEYS = {
    "text": _keys(TextBlockParam),
    "tool_use": _keys(ToolUseBlockParam),
    "tool_result": _keys(ToolResultBlockParam),
}
_TOOL_KEYS = _keys(ToolParam)
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}
_ids = count(1)


# --- building replies -----------------------------------------------------------------------


def text(value: str) -> dict[str, Any]:
    """A text content block of a response."""
    return {"type": "text", "text": value}


def tool_use(
    name: str, input: dict[str, Any] | None = None, id: str | None = None
) -> dict[str, Any]:
    """A tool_use content block of a response."""
    return {
        "type": "tool_use",
        "id": id or f"toolu_{next(_ids):04d}",
        "name": name,
        "input": input or {},
    }


def message(
    *content: dict[str, Any],
    stop_reason: str | None = None,
    input_tokens: int = 10,
    output_tokens: int = 5,
    cache_read: int | None = None,
    cache_creation: int | None = None,
    model: str = "claude-test",
) -> dict[str, Any]:
    """A whole Messages API response body; `stop_reason` defaults from the content."""
    if stop_reason is None:
        stop_reason = "tool_use" if any(b["type"] == "tool_use" for b in content) else "end_turn"
    return {
        "id": f"msg_{next(_ids):04d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": input_tokens,
            "output_tokens": output_tokens,
            "cache_read_input_tokens": cache_read,
            "cache_creation_input_tokens": cache_creation,
        },
    }


def sse_events(body: dict[str, Any], piece: int = 4) -> list[tuple[str | None, Any]]:
    """The event sequence the real API streams for `body`, text and tool input in pieces."""
    usage = body["usage"]
    start = {**body, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    events: list[tuple[str | None, Any]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    events.append(("ping", {"type": "ping"}))
    for index, block in enumerate(body["content"]):
        if block["type"] == "text":
            first, deltas = {"type": "text", "text": ""}, block["text"]
            kind, field = "text_delta", "text"
        else:
            first, deltas = {**block, "input": {}}, json.dumps(block["input"])
            kind, field = "input_json_delta", "partial_json"
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": first},
            )
        )
        for at in range(0, len(deltas), piece):
            delta = {"type": kind, field: deltas[at : at + piece]}
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": body["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _error_body(status: int, error_type: str | None, text: str) -> dict[str, Any]:
    return {
        "type": "error",
        "error": {"type": error_type or _ERROR_TYPES.get(status, "api_error"), "message": text},
        "request_id": f"req_{next(_ids):04d}",
    }


def status_error(
    status: int,
    text: str = "something went wrong",
    *,
    error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Reply:
    """An HTTP error with Anthropic's error body (`{"type": "error", "error": {...}}`)."""
    return Reply(status=status, json=_error_body(status, error_type, text), headers=headers or {})


def stream_error(
    body: dict[str, Any], error_type: str = "overloaded_error", after: int = 4
) -> Reply:
    """A 200 stream that sends the first `after` events of `body`, then an `error` event."""
    error = _error_body(
        500, error_type, "Overloaded" if error_type == "overloaded_error" else "error"
    )
    return Reply(sse=[*sse_events(body)[:after], ("error", error)])


def truncated_stream(body: dict[str, Any], after: int = 4) -> Reply:
    """A 200 stream that ends cleanly after `after` events, with no `message_stop`."""
    return Reply(sse=sse_events(body)[:after])


# --- the server -------------------------------------------------------------------------------


class FakeAnthropic:
    """The fake API: checks each request, answers with the next scripted reply."""

    def __init__(self, script: list[Script]) -> None:
        self.script = list(script)
        self.bodies: list[dict[str, Any]] = []
        self.failures: list[str] = []
        self.server = FakeHTTPServer(self.handle)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path.split("?")[0] != "/v1/messages":
            return self._fail(f"unexpected {request.method} {request.path}", status=404)
        try:
            body = request.json()
        except ValueError:
            return self._fail("the body is not JSON")
        problems = check_request(body, request.headers)
        if problems:
            return self._fail("; ".join(problems))
        self.bodies.append(body)
        if not self.script:
            return self._fail("the script has no reply left for this request", status=500)
        reply = self.script.pop(0)
        if callable(reply):
            reply = reply(body)
        if isinstance(reply, Reply):
            return reply
        if body.get("stream"):
            return Reply(sse=sse_events(reply))
        return Reply(json=reply)

    def _fail(self, problem: str, status: int = 400) -> Reply:
        self.failures.append(problem)
        return status_error(status, problem)


def check_request(body: Any, headers: dict[str, str]) -> list[str]:
    """What is wrong with a Messages API request (empty when nothing is)."""
    if not isinstance(body, dict):
        return [f"the body is a {type(body).__name__}, not an object"]
    problems = []
    if "anthropic-version" not in headers:
        problems.append("no anthropic-version header")
    if "x-api-key" not in headers and "authorization" not in headers:
        problems.append("no API key header")
    streaming = body.get("stream") is True
    unknown = set(body) - _TOP_KEYS[streaming]
    if unknown:
        problems.append(f"unknown top-level keys {sorted(unknown)}")
    try:
        _materialize(_ADAPTERS[streaming].validate_python(body))
    except ValidationError as exc:
        problems.append(f"the body does not match the SDK's request type: {exc}")
        return problems
    return problems + _check_rules(body)


def _materialize(value: Any) -> Any:
    """Consume the lazy iterators pydantic returns for `Iterable[...]`, validating them."""
    if isinstance(value, dict):
        return {key: _materialize(item) for key, item in value.items()}
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple) or hasattr(value, "__next__"):
        return [_materialize(item) for item in value]
    return value


def _check_rules(body: dict[str, Any]) -> list[str]:
    """Anthropic's rules that the request types do not express."""
    problems: list[str] = []
    if body["max_tokens"] < 1:
        problems.append("max_tokens must be at least 1")
    tools = body.get("tools") or []
    for tool in tools:
        if set(tool) - _TOOL_KEYS:
            problems.append(
                f"tool {tool.get('name')!r} has unknown keys {sorted(set(tool) - _TOOL_KEYS)}"
            )
    if "tool_choice" in body and not tools:
        problems.append("tool_choice is only allowed with tools")
    system = body.get("system")
    if system is not None and not (isinstance(system, str) and system):
        problems.append("system, when sent, must be a non-empty string")
    messages = body["messages"]
    if not messages:
        return [*problems, "messages is empty"]
    if messages[0]["role"] != "user":
        problems.append("the first message must be the user's")
    pending: set[str] = set()  # tool_use ids the next user turn must answer
    uses_tools = False
    for i, turn in enumerate(messages):
        role, content = turn["role"], turn["content"]
        if i and role == messages[i - 1]["role"]:
            problems.append(f"messages[{i}]: two {role} turns in a row")
        if role not in ("user", "assistant"):
            problems.append(f"messages[{i}]: role {role!r} (tether sends system top-level)")
        blocks = [{"type": "text", "text": content}] if isinstance(content, str) else content
        if not blocks:
            problems.append(f"messages[{i}]: empty content")
        for j, block in enumerate(blocks):
            kind = block.get("type")
            extra = set(block) - _BLOCK_KEYS.get(kind, set(block))
            if extra:
                problems.append(f"messages[{i}].content[{j}]: unknown keys {sorted(extra)}")
            if kind == "text" and not block.get("text"):
                problems.append(f"messages[{i}].content[{j}]: text blocks must be non-empty")
            if kind in ("tool_use", "tool_result"):
                uses_tools = True
            if kind == "tool_use" and role != "assistant":
                problems.append(f"messages[{i}].content[{j}]: tool_use outside an assistant turn")
            if kind == "tool_result" and role != "user":
                problems.append(f"messages[{i}].content[{j}]: tool_result outside a user turn")
        if role == "user":
            results = [b for b in blocks if b.get("type") == "tool_result"]
            answered = {b["tool_use_id"] for b in results}
            if blocks[: len(results)] != results:
                problems.append(f"messages[{i}]: tool_result blocks must come first")
            if pending - answered:
                problems.append(
                    f"messages[{i}]: tool_use ids {sorted(pending - answered)} not answered"
                )
            if answered - pending:
                problems.append(
                    f"messages[{i}]: tool_result for unknown ids {sorted(answered - pending)}"
                )
            pending = set()
        else:
            if pending:
                problems.append(f"messages[{i}]: tool_use ids {sorted(pending)} not answered")
            pending = {b["id"] for b in blocks if b.get("type") == "tool_use"}
            if len(pending) != sum(b.get("type") == "tool_use" for b in blocks):
                problems.append(f"messages[{i}]: duplicate tool_use ids")
    if pending:
        problems.append("the conversation ends with unanswered tool_use blocks")
    if uses_tools and not tools:
        problems.append("tool_use/tool_result blocks need the tools to be defined")
    return problems


@contextmanager
def anthropic_server(*script: Script) -> Iterator[FakeAnthropic]:
    """Serve a `FakeAnthropic` with `script` for the duration of a `with` block."""
    fake = FakeAnthropic(list(script))
    fake.server.start()
    try:
        yield fake
    finally:
        fake.server.stop()
