"""A fake OpenAI chat-completions server over real HTTP, strict about what it accepts.

Every request body is validated against the installed SDK's own request schema
(`CompletionCreateParamsNonStreaming` / `...Streaming`), with unknown keys rejected at
every level; failures are answered 400 (as OpenAI does) and recorded in `invalid`, so a
test asserts `server.invalid == []`. Replies are scripted: an `Answer` is served as JSON
or, when the request asks to stream, as SSE chunks in the real format ending with
`data: [DONE]`; a `Reply` (errors, dropped connections) is served as-is.

Example:
    ```python
    with openai_server(Answer(text="Hi"), error(429, headers={"Retry-After": "2"})) as server:
        model = OpenAIModel("gpt-test", base_url=server.base_url, api_key="sk-test")
    ```
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.chat.completion_create_params import (
    CompletionCreateParamsNonStreaming,
    CompletionCreateParamsStreaming,
)
from pydantic import ConfigDict, TypeAdapter, ValidationError

from tests.fakes.http_server import FakeHTTPServer, Reply, Request

__all__ = ["Answer", "FakeOpenAI", "Reply", "error", "openai_server"]

SERVED_MODEL = "gpt-test-2025-01-01"
"""The snapshot name the fake reports, unlike the configured id (as OpenAI does)."""


class _StrictNonStreaming(CompletionCreateParamsNonStreaming, total=False):
    # Nested TypedDicts without their own config inherit this one: unknown keys fail
    # everywhere (a message, a tool, a tool call), not only at the top level.
    __pydantic_config__ = ConfigDict(extra="forbid")


class _StrictStreaming(CompletionCreateParamsStreaming, total=False):
    __pydantic_config__ = ConfigDict(extra="forbid")


_NON_STREAMING = TypeAdapter(_StrictNonStreaming)
_STREAMING = TypeAdapter(_StrictStreaming)


def _exhaust(value: Any) -> Any:
    """Run pydantic's lazy `Iterable[...]` validators (messages, tools) to the end."""
    if isinstance(value, dict):
        return {k: _exhaust(v) for k, v in value.items()}
    if isinstance(value, str | bytes | int | float | bool) or value is None:
        return value
    if isinstance(value, Iterable):
        return [_exhaust(v) for v in value]
    return value


def validate_request(body: Any) -> str | None:
    """Why `body` is not a valid chat.completions request, or `None` if it is."""
    if not isinstance(body, dict):
        return f"the body is not a JSON object: {body!r}"
    adapter = _STREAMING if body.get("stream") else _NON_STREAMING
    try:
        _exhaust(adapter.validate_python(body))
    except ValidationError as exc:
        return str(exc)
    nulls = sorted(k for k, v in body.items() if v is None)
    if nulls:
        return f"null top-level parameters (leave them out instead): {nulls}"
    return None


@dataclass
class Answer:
    """A scripted model answer, served as JSON or as SSE chunks to a streaming request.

    `calls` are `(id, name, arguments_json)`; `usage` is `(prompt, completion, cached)`.
    `pieces` is how many SSE chunks each text and arguments string is cut into;
    `interleave` streams the argument pieces of parallel calls alternately.
    """

    text: str | None = None
    calls: list[tuple[str, str, str]] = field(default_factory=list)
    usage: tuple[int, int, int] | None = (12, 7, 0)
    finish_reason: str | None = None
    pieces: int = 3
    interleave: bool = False
    delay: float = 0.0

    @property
    def finish(self) -> str:
        return self.finish_reason or ("tool_calls" if self.calls else "stop")

    def usage_json(self) -> dict[str, Any] | None:
        if self.usage is None:
            return None
        prompt, completion, cached = self.usage
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": cached, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    def completion(self) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": self.text,
            "refusal": None,
            "annotations": [],
        }
        if self.calls:
            message["tool_calls"] = [
                {"id": i, "type": "function", "function": {"name": n, "arguments": a}}
                for i, n, a in self.calls
            ]
        body = {
            "id": "chatcmpl-fake",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": SERVED_MODEL,
            "system_fingerprint": "fp_fake",
            "service_tier": "default",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": self.finish}
            ],
            "usage": self.usage_json(),
        }
        ChatCompletion.model_validate(body)  # the fake must speak the real format
        return body

    def chunks(self, include_usage: bool) -> list[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1_700_000_000,
                "model": SERVED_MODEL,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
                **({"usage": None} if include_usage else {}),
            }

        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"content": piece}) for piece in _cut(self.text or "", self.pieces)]
        heads, tails = [], []
        for index, (call_id, name, arguments) in enumerate(self.calls):
            head = {
                "index": index,
                "id": call_id,
                "type": "function",
                "function": {"name": name, "arguments": ""},
            }
            heads.append(chunk({"tool_calls": [head]}))
            tails.append(
                [
                    chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                    for piece in _cut(arguments, self.pieces)
                ]
            )
        if self.interleave:
            out += heads
            longest = max((len(t) for t in tails), default=0)
            out += [t[i] for i in range(longest) for t in tails if i < len(t)]
        else:
            for head, tail in zip(heads, tails, strict=True):
                out += [head, *tail]
        out.append(chunk({}, self.finish))
        if include_usage:
            out.append({**chunk({}), "choices": [], "usage": self.usage_json()})
        for body in out:
            ChatCompletionChunk.model_validate(body)
        return out


def _cut(text: str, pieces: int) -> list[str]:
    if not text:
        return []
    size = max(1, -(-len(text) // max(pieces, 1)))
    return [text[i : i + size] for i in range(0, len(text), size)]


def error(
    status: int,
    message: str = "something went wrong",
    *,
    headers: dict[str, str] | None = None,
    type: str = "server_error",
) -> Reply:
    """An OpenAI-style error reply."""
    body = {"error": {"message": message, "type": type, "param": None, "code": None}}
    return Reply(status=status, json=body, headers=headers or {})


class FakeOpenAI:
    """Serves `POST /v1/chat/completions` from a queue of scripted replies."""

    def __init__(self, replies: Iterable[Answer | Reply] = ()) -> None:
        self.replies: deque[Answer | Reply] = deque(replies)
        self.invalid: list[str] = []
        self.bodies: list[dict[str, Any]] = []
        self.server = FakeHTTPServer(self._handle)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1"

    @property
    def requests(self) -> list[Request]:
        return self.server.requests

    def add(self, *replies: Answer | Reply) -> None:
        self.replies.extend(replies)

    def _reject(self, why: str) -> Reply:
        self.invalid.append(why)
        return error(400, why, type="invalid_request_error")

    def _handle(self, request: Request) -> Reply:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return self._reject(f"unexpected {request.method} {request.path}")
        if not request.headers.get("authorization", "").startswith("Bearer "):
            return self._reject("no bearer token")
        try:
            body = request.json()
        except json.JSONDecodeError as exc:
            return self._reject(f"the body is not JSON: {exc}")
        why = validate_request(body)
        if why is not None:
            return self._reject(why)
        self.bodies.append(body)
        if not self.replies:
            return self._reject("the fake has no scripted reply left")
        reply = self.replies.popleft()
        if isinstance(reply, Reply):
            return reply
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            sse: list[tuple[str | None, Any]] = [(None, c) for c in reply.chunks(include_usage)]
            return Reply(sse=[*sse, (None, "[DONE]")], delay=reply.delay)
        return Reply(json=reply.completion(), delay=reply.delay)


@contextmanager
def openai_server(*replies: Answer | Reply) -> Iterator[FakeOpenAI]:
    """Run a `FakeOpenAI` for the duration of a `with` block."""
    fake = FakeOpenAI(replies)
    fake.server.start()
    try:
        yield fake
    finally:
        fake.server.stop()
