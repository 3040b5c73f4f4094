"""`AnthropicModel`: the Anthropic Messages API through the official `anthropic` SDK.

System messages become the top-level `system` string. Tool results become `tool_result`
blocks, merged with a following user message into one user turn: Anthropic wants roles
to alternate and every `tool_use` answered in the next user turn. `max_tokens` is
required by Anthropic (default 4096); `stop` becomes `stop_sequences`. The Messages API
of the SDK targeted here (anthropic 2.x) has no `seed`, `temperature` or `top_p`, so they
are not sent (with a warning for the last two): one `ModelSettings` can then serve a
fallback chain across providers. Usage counts prompt-cache reads and writes inside
`input_tokens` (Anthropic reports them apart), as OpenAI does.
"""

from __future__ import annotations

import json
import warnings
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
    ToolResult,
    Usage,
    UserMessage,
)
from tether.models.base import Model, TextSink
from tether.models.status import error_from_status
from tether.settings import Settings, get_settings

try:
    import anthropic
    import httpx2
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ConfigError(
        "the 'anthropic' package is needed for 'anthropic:...' models: "
        "pip install 'tether[anthropic]'"
    ) from exc

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicModel"]

DEFAULT_MAX_TOKENS = 4096
"""`max_tokens` sent when `ModelSettings.max_tokens` is unset (Anthropic requires one)."""

_SDK_ERRORS = (anthropic.AnthropicError, httpx2.HTTPError)

_NO_KEY = "no-key"
"""Sent as the key to a custom `base_url` (a proxy, a gateway) when none is configured."""

_TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}

_STREAM_ERROR_STATUS = {  # the HTTP status an `error` event inside a 200 stream stands for
    "invalid_request_error": 400, "authentication_error": 401, "billing_error": 402,
    "permission_error": 403, "not_found_error": 404, "conflict_error": 409,
    "request_too_large": 413, "rate_limit_error": 429, "api_error": 500,
    "timeout_error": 504, "overloaded_error": 529,
}  # fmt: skip


class AnthropicModel(Model):
    """A Claude model behind the Anthropic Messages API.

    Args:
        model_id: The Anthropic model id, e.g. `claude-haiku-4-5`.
        settings: API key, base URL and default timeout; the process settings by default.
        api_key: Overrides `settings.anthropic_api_key`.
        base_url: Overrides `settings.anthropic_base_url` (a proxy or a test server).
        client: An `anthropic.AsyncAnthropic` to use as is; `aclose` leaves it open.

    Raises:
        ConfigError: no API key is configured and no `base_url` is given.

    Example:
        ```python
        model = AnthropicModel("claude-haiku-4-5")  # key from TETHER_ANTHROPIC_API_KEY
        agent = Agent(model=model, tools=[get_weather])
        ```
    """

    def __init__(
        self,
        model_id: str,
        *,
        settings: Settings | None = None,
        api_key: str | None = None,
        base_url: str | None = None,
        client: anthropic.AsyncAnthropic | None = None,
    ) -> None:
        if not model_id:
            raise ConfigError("an Anthropic model needs an id, e.g. 'anthropic:claude-haiku-4-5'")
        settings = settings or get_settings()
        self.model_id = model_id
        self.name = f"anthropic:{model_id}"
        self._api_key = SecretStr(api_key) if api_key is not None else settings.anthropic_api_key
        self._base_url = base_url or settings.anthropic_base_url
        self._timeout = settings.model_timeout
        if client is None and self._api_key is None and self._base_url is None:
            raise ConfigError(
                f"{self.name}: no Anthropic API key: set TETHER_ANTHROPIC_API_KEY or "
                "ANTHROPIC_API_KEY, or pass api_key=... (or base_url=... for a proxy)"
            )
        self._client = client
        self._owns_client = client is None
        self._warned = False

    def _get_client(self) -> anthropic.AsyncAnthropic:
        if self._client is None:
            key = self._api_key.get_secret_value() if self._api_key is not None else _NO_KEY
            self._client = anthropic.AsyncAnthropic(
                api_key=key, base_url=self._base_url, timeout=self._timeout, max_retries=0
            )
        return self._client

    async def aclose(self) -> None:
        """Close the HTTP connections of the client this model built (not a given one)."""
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await client.close()

    async def request(self, request: ModelRequest) -> ModelResponse:
        """Send one Messages API request and return the whole response."""
        params = self._params(request)
        try:
            messages_api: Any = self._get_client().messages
            message = await messages_api.create(**params, timeout=self._call_timeout(request))
        except _SDK_ERRORS as exc:
            raise self._error(exc, request) from exc
        try:
            blocks = [_block_dict(block) for block in message.content]
            usage, stop_reason = _usage_dict(message.usage), message.stop_reason
        except (AttributeError, TypeError) as exc:
            raise self._unreadable(exc) from exc
        return self._response(blocks=blocks, usage=usage, stop_reason=stop_reason)

    async def request_stream(self, request: ModelRequest, on_text: TextSink) -> ModelResponse:
        """Stream one request (server-sent events), calling `on_text` with each text delta.

        Returns the same `ModelResponse` as `request` would.
        """
        params = self._params(request)
        message = _StreamedMessage()
        try:
            messages_api: Any = self._get_client().messages
            stream = await messages_api.create(
                **params, stream=True, timeout=self._call_timeout(request)
            )
            async with stream:
                async for event in stream:
                    try:
                        text = message.feed(event)
                    except (AttributeError, KeyError, TypeError) as exc:
                        raise self._unreadable(exc) from exc
                    if text:
                        on_text(text)
        except _SDK_ERRORS as exc:
            raise self._error(exc, request) from exc
        if not message.done:
            raise ModelConnectionError(
                f"{self.name}: the stream from {self._where()} ended before message_stop "
                "(the connection was dropped?)",
                model=self.name,
            )
        blocks = [message.blocks[i] for i in sorted(message.blocks)]
        return self._response(blocks=blocks, usage=message.usage, stop_reason=message.stop_reason)

    # --- tether -> Anthropic ------------------------------------------------------------

    def _params(self, request: ModelRequest) -> dict[str, Any]:
        system, messages = _to_anthropic(request.messages)
        settings = request.settings
        params: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": settings.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": messages,
        }
        if system:
            params["system"] = system
        if request.tools:
            params["tools"] = [
                {"name": t.name, "description": t.description, "input_schema": t.parameters}
                for t in request.tools
            ]
            params["tool_choice"] = _TOOL_CHOICE[request.tool_choice]
        if settings.stop:
            params["stop_sequences"] = list(settings.stop)
        if (settings.temperature is not None or settings.top_p is not None) and not self._warned:
            self._warned = True
            warnings.warn(
                f"{self.name}: the Anthropic Messages API takes no temperature or top_p; "
                "they are not sent",
                UserWarning,
                stacklevel=3,
            )
        return params

    def _call_timeout(self, request: ModelRequest) -> float:
        return request.settings.timeout or self._timeout

    # --- Anthropic -> tether ------------------------------------------------------------

    def _response(
        self, *, blocks: list[dict[str, Any]], usage: dict[str, Any], stop_reason: Any
    ) -> ModelResponse:
        try:
            parts = [_part(block) for block in blocks if block["type"] in ("text", "tool_use")]
            read = usage.get("cache_read_input_tokens") or 0
            written = usage.get("cache_creation_input_tokens") or 0
            input_tokens = (usage.get("input_tokens") or 0) + read + written
            output_tokens = usage.get("output_tokens") or 0
            return ModelResponse(
                message=AssistantMessage(parts=parts),
                usage=Usage(
                    input_tokens=input_tokens,
                    output_tokens=output_tokens,
                    cached_tokens=read,
                    requests=1,
                ),
                model=self.name,
                finish_reason=stop_reason,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise self._unreadable(exc) from exc

    def _unreadable(self, exc: Exception) -> ModelResponseError:
        return ModelResponseError(
            f"{self.name}: the response is not a readable message ({type(exc).__name__}: "
            f"{exc}); is the base URL an Anthropic Messages API?",
            model=self.name,
        )

    def _where(self) -> str:
        if self._client is not None:
            return str(self._client.base_url)
        return self._base_url or "the Anthropic API"

    def _error(self, exc: Exception, request: ModelRequest) -> ModelError:
        """The tether error for an SDK or transport error."""
        if isinstance(exc, anthropic.APIStatusError):
            status = exc.status_code
            if status < 400:  # an `error` event inside a 200 stream
                status = _STREAM_ERROR_STATUS.get(str(exc.type), 500)
            message = exc.api_message or exc.message
            return error_from_status(
                status, message, model=self.name, headers=exc.response.headers, body=exc.body
            )
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return ModelTimeout(
                f"{self.name}: no answer within {self._call_timeout(request)}s; raise "
                "ModelSettings(timeout=...) or TETHER_MODEL_TIMEOUT",
                model=self.name,
            )
        if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
            cause = exc.__cause__ or exc
            return ModelConnectionError(
                f"{self.name}: could not reach {self._where()} ({type(cause).__name__}: "
                f"{cause}); check the base URL and that the server is up",
                model=self.name,
            )
        if isinstance(exc, anthropic.APIResponseValidationError):
            return ModelResponseError(f"{self.name}: {exc.message}", model=self.name)
        return ModelError(f"{self.name}: {type(exc).__name__}: {exc}", model=self.name)


class _StreamedMessage:
    """A message put together from the raw event stream."""

    def __init__(self) -> None:
        self.blocks: dict[int, dict[str, Any]] = {}
        self.usage: dict[str, Any] = {}
        self.stop_reason: str | None = None
        self.done = False

    def feed(self, event: Any) -> str:
        """Take one event; return the text it adds (empty if none)."""
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            delta, block = event.delta, self.blocks[event.index]
            if delta.type == "text_delta":
                block["text"] += delta.text
                return str(delta.text)
            if delta.type == "input_json_delta":
                block["json"] = block.get("json", "") + delta.partial_json
        elif kind == "content_block_start":
            block = self.blocks[event.index] = _block_dict(event.content_block)
            return str(block.get("text", ""))
        elif kind == "message_start":
            self.usage.update(_usage_dict(event.message.usage))
        elif kind == "message_delta":
            self.stop_reason = event.delta.stop_reason
            self.usage.update(_usage_dict(event.usage))
        elif kind == "message_stop":
            self.done = True
        return ""


def _to_anthropic(messages: list[Message]) -> tuple[str, list[dict[str, Any]]]:
    """The `system` string and the alternating `messages` of a tether conversation."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})

    for message in messages:
        if isinstance(message, SystemMessage):
            system.append(message.content)
        elif isinstance(message, UserMessage):
            add("user", [{"type": "text", "text": message.content}])
        elif isinstance(message, ToolResult):
            block: dict[str, Any] = {"type": "tool_result", "tool_use_id": message.call_id}
            block["content"] = message.content
            if message.status != "ok":  # `error` and `denied`
                block["is_error"] = True
            add("user", [block])
        elif isinstance(message, AssistantMessage):
            parts = [p for p in message.parts if not isinstance(p, TextPart) or p.text]
            add("assistant", [_assistant_block(part) for part in parts])  # no empty text
    for turn in turns:  # a lone user text goes as a plain string, as people write it
        content = turn["content"]
        if turn["role"] == "user" and len(content) == 1 and content[0]["type"] == "text":
            turn["content"] = content[0]["text"]
    return "\n\n".join(system), turns


def _assistant_block(part: TextPart | ToolCall) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    try:
        arguments = part.arguments_dict()
    except ValueError:
        # Anthropic only takes an object as `input`. Malformed arguments (from another
        # provider, or a cut-off stream) were already answered with a tool_result error
        # that quotes the problem, so the model still learns what went wrong.
        arguments = {}
    return {"type": "tool_use", "id": part.id, "name": part.name, "input": arguments}


def _block_dict(block: Any) -> dict[str, Any]:
    """A response content block as a plain dict (`json` collects streamed tool input)."""
    kind = getattr(block, "type", None)
    if kind == "text":
        return {"type": "text", "text": block.text}
    if kind == "tool_use":
        return {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
    return {"type": str(kind)}  # thinking and server-tool blocks: not mapped


def _part(block: dict[str, Any]) -> TextPart | ToolCall:
    if block["type"] == "text":
        return TextPart(text=block["text"])
    arguments: str | dict[str, Any] = dict(block["input"] or {})
    if text := block.get("json", ""):  # streamed input, as JSON pieces
        try:
            parsed: object = json.loads(text)
        except ValueError:
            parsed = None
        # Malformed streamed input is kept as sent: the tool's validator tells the model.
        arguments = parsed if isinstance(parsed, dict) else text
    return ToolCall(id=block["id"], name=block["name"], arguments=arguments)


def _usage_dict(usage: Any) -> dict[str, Any]:
    """The token counts an SDK usage object carries, leaving out the unset ones."""
    counts = {name: getattr(usage, name, None) for name in _USAGE_FIELDS}
    return {name: value for name, value in counts.items() if value is not None}


_USAGE_FIELDS = (
    "input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"
)  # fmt: skip
