"""`OpenAIModel`: OpenAI chat completions, and every server that speaks them (vLLM,
Ollama, llama.cpp's server), through the official async SDK.

The SDK is built with its own retries off (`max_retries=0`): tether's retry policy is the
only one. SDK errors are translated here, at the boundary, into `tether.errors` types,
so nothing above this module ever sees an `openai` type.

Example:
    ```python
    model = OpenAIModel("gpt-4.1-mini")                      # key from TETHER_OPENAI_API_KEY
    local = OpenAIModel("qwen2.5:7b", base_url="http://localhost:11434/v1")  # Ollama, no key
    agent = Agent(model=local, tools=[get_weather])
    ```
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from tether.errors import (
    ConfigError,
    ModelConnectionError,
    ModelError,
    ModelResponseError,
    ModelTimeout,
)
from tether.messages import (
    AssistantMessage,
    Message,
    ModelRequest,
    ModelResponse,
    SystemMessage,
    TextPart,
    ToolCall,
    ToolDefinition,
    ToolResult,
    Usage,
    UserMessage,
)
from tether.models.base import Model, TextSink
from tether.models.status import error_from_status
from tether.settings import Settings, get_settings

try:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
    from openai.types.completion_usage import CompletionUsage
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        "the OpenAI adapter needs the openai SDK: pip install 'tether[openai]'"
    ) from exc

__all__ = ["OpenAIModel"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
_NO_KEY = "not-needed"
"""Sent to a custom base URL when no key is set: local servers ignore it, the SDK wants one."""
# tether's ModelSettings field -> chat.completions parameter.
_SETTINGS = (
    ("max_tokens", "max_completion_tokens"),
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("seed", "seed"),
    ("stop", "stop"),
)


class OpenAIModel(Model):
    """A chat-completions model: `openai:<model_id>`.

    Args:
        model_id: The model as the server names it (`gpt-4.1-mini`, `qwen2.5:7b`).
        settings: Where the key, base URL and default timeout come from; the process-wide
            settings when omitted.
        api_key: Overrides `settings.openai_api_key` (`TETHER_OPENAI_API_KEY` or
            `OPENAI_API_KEY`). Optional with a custom `base_url`: local servers need none.
        base_url: Overrides `settings.openai_base_url`; any OpenAI-compatible server,
            e.g. `http://localhost:8000/v1` for vLLM.
        client: An `openai.AsyncOpenAI` to use instead of building one (its retries are
            turned off on a copy; it is not closed by `aclose`, its owner closes it).

    `ModelResponse.model` is this adapter's `name` (the configured id), not the snapshot
    the server reports (`gpt-4.1-mini-2025-04-14`), so prices registered for the name you
    chose always apply and runs are reproducible across snapshots.

    Raises:
        ConfigError: no API key and no custom base URL.
    """

    def __init__(
        self,
        model_id: str,
        *,
        settings: Settings | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        client: openai.AsyncOpenAI | None = None,
    ) -> None:
        if not model_id:
            raise ConfigError("OpenAIModel needs a model id, e.g. OpenAIModel('gpt-4.1-mini')")
        settings = settings or get_settings()
        self.model_id = model_id
        self.name = f"openai:{model_id}"
        self.base_url = base_url or settings.openai_base_url or DEFAULT_BASE_URL
        self._timeout = settings.model_timeout
        self._api_key: SecretStr | None = SecretStr(api_key) if api_key else settings.openai_api_key
        self._owns_client = client is None
        self._client: openai.AsyncOpenAI | None = None
        if client is not None:
            self._client = client.with_options(max_retries=0)
            self.base_url = str(client.base_url)
        elif self._api_key is None and self.base_url == DEFAULT_BASE_URL:
            raise ConfigError(
                f"{self.name}: no OpenAI API key: set TETHER_OPENAI_API_KEY or OPENAI_API_KEY, "
                "pass OpenAIModel(..., api_key=...), or point base_url at a local "
                "OpenAI-compatible server"
            )

    def _sdk(self) -> openai.AsyncOpenAI:
        """The SDK client, built on first use (the key is unwrapped only here)."""
        if self._client is None:
            key = self._api_key.get_secret_value() if self._api_key is not None else _NO_KEY
            self._client = openai.AsyncOpenAI(
                api_key=key, base_url=self.base_url, timeout=self._timeout, max_retries=0
            )
        return self._client

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one chat completion and return the complete response."""
        params = self.parameters(request)
        timeout = request.settings.timeout or self._timeout
        with self._translated(timeout):
            async with asyncio.timeout(timeout):
                completion = await self._sdk().chat.completions.create(**params, timeout=timeout)
        if not isinstance(completion, ChatCompletion):
            raise ModelResponseError(
                f"{self.name}: expected a chat completion from {self.base_url}, got "
                f"{type(completion).__name__}: {str(completion)[:200]!r}",
                model=self.name,
            )
        with self._reading():
            if not completion.choices:
                raise ModelResponseError(
                    f"{self.name}: the response has no choices", model=self.name
                )
            choice = completion.choices[0]
            message = choice.message
            calls = []
            for call in message.tool_calls or ():
                function = getattr(call, "function", None)  # not a custom-tool call
                if function is None:
                    raise ModelResponseError(f"{self.name}: unexpected {call!r}", model=self.name)
                calls.append((call.id, function.name, function.arguments))
            text = message.content or message.refusal
            return self._response(text, calls, completion.usage, choice.finish_reason)

    async def request_stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        """Stream one chat completion, calling `on_text` with each text delta.

        Returns the same `ModelResponse` as `request` would: tool-call deltas are
        joined by index, usage comes from the final chunk (`include_usage`).
        """
        params = self.parameters(request)
        timeout = request.settings.timeout or self._timeout
        acc = _Accumulated()
        with self._translated(timeout):
            async with asyncio.timeout(timeout):
                stream = await self._sdk().chat.completions.create(
                    **params, stream=True, stream_options={"include_usage": True}, timeout=timeout
                )
                async with stream:
                    async for chunk in stream:
                        with self._reading():
                            text = acc.add(chunk)
                        if text:
                            on_text(text)
        if acc.finish_reason is None:
            raise ModelConnectionError(
                f"{self.name}: the stream from {self.base_url} ended before the answer was "
                "finished (no finish_reason); the server may have dropped the connection",
                model=self.name,
            )
        calls = [(i, name, "".join(args)) for _, (i, name, args) in sorted(acc.calls.items())]
        with self._reading():
            return self._response("".join(acc.text), calls, acc.usage, acc.finish_reason)

    def parameters(self, request: ModelRequest) -> dict[str, Any]:
        """The chat.completions parameters for `request` (unset settings left out)."""
        params: dict[str, Any] = {
            "model": self.model_id,
            "messages": [_message(m) for m in request.messages],
        }
        if request.tools:
            params["tools"] = [_tool(t) for t in request.tools]
            params["tool_choice"] = request.tool_choice
        settings = request.settings
        for ours, theirs in _SETTINGS:
            value = getattr(settings, ours)
            if value is not None:
                params[theirs] = value
        return params

    async def aclose(self) -> None:
        """Close the SDK client's connections (not those of a client you passed in)."""
        client, self._client = self._client, None
        if client is not None and self._owns_client:
            await client.close()

    def _response(
        self,
        text: str | None,
        calls: list[tuple[str, str, str]],
        usage: CompletionUsage | None,
        finish_reason: str | None,
    ) -> ModelResponse:
        """The same `ModelResponse` from a completion and from a joined stream."""
        parts: list[TextPart | ToolCall] = [TextPart(text=text)] if text else []
        parts += [ToolCall(id=i, name=name, arguments=args) for i, name, args in calls]
        used = Usage(requests=1)
        if usage is not None:
            details = usage.prompt_tokens_details
            used = Usage(
                input_tokens=usage.prompt_tokens or 0,
                output_tokens=usage.completion_tokens or 0,
                cached_tokens=(details.cached_tokens or 0) if details is not None else 0,
                requests=1,
            )
        return ModelResponse(
            message=AssistantMessage(parts=parts),
            usage=used,
            model=self.name,
            finish_reason=finish_reason,
        )

    @contextmanager
    def _translated(self, timeout: float) -> Iterator[None]:
        """SDK and transport errors -> tether's `ModelError` family, `__cause__` kept."""
        try:
            yield
        except openai.APIStatusError as exc:
            body = exc.body
            error = body.get("message") if isinstance(body, dict) else None
            raise error_from_status(
                exc.status_code,
                error if isinstance(error, str) and error else exc.message,
                model=self.name,
                headers=dict(exc.response.headers.items()),
                body=body,
            ) from exc
        except (openai.APITimeoutError, TimeoutError) as exc:
            raise ModelTimeout(
                f"{self.name}: no complete answer within {timeout:g}s; raise "
                "ModelSettings(timeout=...) or TETHER_MODEL_TIMEOUT for long answers",
                model=self.name,
            ) from exc
        except openai.APIConnectionError as exc:
            raise ModelConnectionError(
                f"{self.name}: could not reach {self.base_url} ({_cause(exc)}); check the "
                "base URL and that the server is up",
                model=self.name,
            ) from exc
        except (openai.APIResponseValidationError, json.JSONDecodeError) as exc:
            raise ModelResponseError(
                f"{self.name}: {self.base_url} answered with something that is not a chat "
                f"completion: {exc}",
                model=self.name,
            ) from exc
        except openai.APIError as exc:
            # An error event inside a stream: the server failed mid-answer; try again.
            raise ModelError(
                f"{self.name}: the server reported an error mid-stream: {exc.message}",
                model=self.name,
                retryable=True,
                body=exc.body,
            ) from exc
        except openai.OpenAIError as exc:
            raise ModelResponseError(f"{self.name}: {exc}", model=self.name) from exc

    @contextmanager
    def _reading(self) -> Iterator[None]:
        """A response that parsed as JSON but not as a chat completion -> `ModelResponseError`."""
        try:
            yield
        except (AttributeError, TypeError, ValueError, IndexError, KeyError) as exc:
            raise ModelResponseError(
                f"{self.name}: malformed chat completion from {self.base_url}: {exc}",
                model=self.name,
            ) from exc


@dataclass(slots=True)
class _Accumulated:
    """A streamed chat completion, joined chunk by chunk."""

    text: list[str] = field(default_factory=list)
    calls: dict[int, tuple[str, str, list[str]]] = field(default_factory=dict)
    usage: CompletionUsage | None = None
    finish_reason: str | None = None

    def add(self, chunk: ChatCompletionChunk) -> str | None:
        """Take one chunk in; return its text delta, if any."""
        if chunk.usage is not None:
            self.usage = chunk.usage
        if not chunk.choices:
            return None  # the usage chunk (or an Azure prompt-filter chunk)
        choice = chunk.choices[0]
        if choice.finish_reason is not None:
            self.finish_reason = choice.finish_reason
        delta = choice.delta
        for piece in delta.tool_calls or ():
            call_id, name, arguments = self.calls.get(piece.index, ("", "", []))
            function = piece.function
            if function is not None:
                name += function.name or ""
                arguments.append(function.arguments or "")
            self.calls[piece.index] = (call_id or piece.id or "", name, arguments)
        text = delta.content or delta.refusal
        if text:
            self.text.append(text)
        return text


def _message(message: Message) -> dict[str, Any]:
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.role, "content": message.content}
    if isinstance(message, ToolResult):
        return {"role": "tool", "tool_call_id": message.call_id, "content": message.content}
    calls = message.tool_calls
    # `content` may be null only beside tool calls; an empty turn is sent as "".
    out: dict[str, Any] = {"role": "assistant", "content": message.text or (None if calls else "")}
    if calls:
        out["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments_json()},
            }
            for call in calls
        ]
    return out


def _tool(tool: ToolDefinition) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": tool.name,
            "description": tool.description,
            "parameters": tool.parameters,
        },
    }


def _cause(exc: BaseException) -> str:
    """The innermost transport error, which names what went wrong (refused, reset...)."""
    for _ in range(8):  # bounded: a cause chain may loop
        if exc.__cause__ is None:
            break
        exc = exc.__cause__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
