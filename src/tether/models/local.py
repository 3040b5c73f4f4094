"""`local`: a small model on the CPU through llama.cpp, so tether runs with no key and no network.

Tool calling uses a tether-owned JSON protocol rather than the model's chat-template tool
role: the model must answer with one JSON object, either a call of one declared tool
with schema-valid arguments or a final answer, and llama.cpp's grammar sampling (built
from that JSON schema) makes any other output impossible, so a call always parses.
Tool results go back as plain user messages. Measured on Qwen2.5-Coder 1.5B: with the
model's own tool role it wraps calls in code fences and repeats them after seeing the
result; under this protocol it answers correctly.
"""

from __future__ import annotations

import asyncio
import atexit
import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any

from tether.errors import ConfigError, ModelResponseError
from tether.messages import (
    AssistantMessage,
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
from tether.models.base import Model
from tether.models.embedded import embedded_model_path
from tether.settings import Settings, get_settings

__all__ = ["LocalModel"]

_DEFAULT_MAX_TOKENS = 512
_ids = itertools.count(1)

# One loaded model per (file, context size) per process; llama.cpp contexts are not
# thread-safe, so each has a lock and generation runs in a worker thread under it.
_loaded: dict[tuple[str, int], tuple[Any, threading.Lock]] = {}
_loading = threading.Lock()


def _load(path: Path, n_ctx: int, threads: int | None) -> tuple[Any, threading.Lock]:
    key = (str(path), n_ctx)
    with _loading:
        found = _loaded.get(key)
        if found is not None:
            return found
        # With llama.cpp's default OpenMP wait policy, one busy process elsewhere slows
        # decoding about 5x; it must be set before the library is imported.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from llama_cpp import Llama
        except ImportError as exc:
            raise ConfigError(
                "model 'local' needs llama-cpp-python: pip install 'tether[local]'"
            ) from exc
        try:
            llama = Llama(
                model_path=str(path),
                n_ctx=n_ctx,
                n_threads=threads or os.cpu_count() or 1,
                verbose=False,
            )
        except (ValueError, RuntimeError) as exc:
            raise ConfigError(f"cannot load the local model {path}: {exc}") from exc
        found = (llama, threading.Lock())
        if not _loaded:
            # llama.cpp's own finalizer fails at interpreter teardown, once the module
            # globals it needs are gone; close while they still exist.
            atexit.register(_close_all)
        _loaded[key] = found
        return found


def _close_all() -> None:
    for llama, lock in _loaded.values():
        with lock:
            llama.close()
    _loaded.clear()


class LocalModel(Model):
    """The embedded model (or any GGUF file) through llama.cpp, on the CPU.

    Args:
        path: A GGUF file; default `TETHER_LOCAL_MODEL`, else the embedded
            Qwen2.5-Coder-1.5B-Instruct (installed by `tether[local]`).
        settings: Threads, context size and cache directory come from here.
    """

    def __init__(self, path: str | Path | None = None, *, settings: Settings | None = None):
        self._settings = settings or get_settings()
        chosen = path or self._settings.local_model
        self._path = Path(chosen).expanduser() if chosen else None
        if self._path is not None and not self._path.is_file():
            raise ConfigError(
                f"local model file {self._path} does not exist; set TETHER_LOCAL_MODEL to a "
                ".gguf file, or unset it to use the embedded model"
            )
        self.name = "local" if self._path is None else f"local:{self._path}"

    @property
    def path(self) -> Path:
        """The GGUF file, assembling the embedded one on first use."""
        if self._path is None:
            self._path = embedded_model_path(self._settings.cache_dir)
        return self._path

    async def request(self, request: ModelRequest) -> ModelResponse:
        llama, lock = await asyncio.to_thread(
            _load, self.path, self._settings.local_context, self._settings.local_threads
        )
        protocol = _protocol(request)
        messages = _to_chat(request, protocol)
        settings = request.settings
        kwargs: dict[str, Any] = {
            "messages": messages,
            "max_tokens": settings.max_tokens or _DEFAULT_MAX_TOKENS,
            "temperature": 0.0 if settings.temperature is None else settings.temperature,
        }
        if settings.top_p is not None:
            kwargs["top_p"] = settings.top_p
        if settings.seed is not None:
            kwargs["seed"] = settings.seed
        if settings.stop:
            kwargs["stop"] = settings.stop
        if protocol is not None:
            kwargs["response_format"] = {"type": "json_object", "schema": protocol}

        def generate() -> Any:
            with lock:
                return llama.create_chat_completion(**kwargs)

        try:
            completion = await asyncio.to_thread(generate)
        except ValueError as exc:  # llama.cpp: prompt longer than the context window
            raise ModelResponseError(
                f"{self.name}: {exc}. Shorten the conversation or raise TETHER_LOCAL_CONTEXT.",
                model=self.name,
            ) from exc
        choice = completion["choices"][0]
        text = choice["message"].get("content") or ""
        usage = completion.get("usage") or {}
        message = _from_protocol(text, request) if protocol is not None else _text(text)
        return ModelResponse(
            message=message,
            usage=Usage(
                input_tokens=usage.get("prompt_tokens", 0),
                output_tokens=usage.get("completion_tokens", 0),
                requests=1,
            ),
            model=self.name,
            finish_reason="tool_calls" if message.tool_calls else choice.get("finish_reason"),
        )


def _text(text: str) -> AssistantMessage:
    return AssistantMessage(parts=[TextPart(text=text.strip())])


# --- the protocol ---------------------------------------------------------------------------


def _protocol(request: ModelRequest) -> dict[str, Any] | None:
    """The JSON schema every answer must match, or None for plain chat (no tools)."""
    if not request.tools or request.tool_choice == "none":
        return None
    branches: list[dict[str, Any]] = []
    defs: dict[str, Any] = {}
    for tool in request.tools:
        parameters = dict(tool.parameters)
        defs.update(parameters.pop("$defs", {}))
        branches.append(
            {
                "type": "object",
                "properties": {"tool": {"const": tool.name}, "arguments": parameters},
                "required": ["tool", "arguments"],
                "additionalProperties": False,
            }
        )
    if request.tool_choice != "required":
        branches.append(
            {
                "type": "object",
                "properties": {"answer": {"type": "string"}},
                "required": ["answer"],
                "additionalProperties": False,
            }
        )
    schema: dict[str, Any] = {"anyOf": branches}
    if defs:
        schema["$defs"] = defs
    return schema


def _describe(tools: list[ToolDefinition], can_answer: bool) -> str:
    lines = ["You have these tools:"]
    for tool in tools:
        schema = {k: v for k, v in tool.parameters.items() if k != "$defs"}
        lines.append(
            f"- {tool.name}: {tool.description or 'no description'} "
            f"Arguments (JSON schema): {json.dumps(schema, separators=(',', ':'))}"
        )
    lines += [
        "",
        "You do not know live or private facts (weather, prices, accounts, files, the time): "
        "get them by calling a tool. Never invent a tool's result.",
        "Reply with exactly one JSON object:",
        '- {"tool": "<name>", "arguments": {...}} to call a tool' + (", or" if can_answer else "."),
    ]
    if can_answer:
        lines.append('- {"answer": "<text>"} to answer the user, once you have what you need.')
    return "\n".join(lines)


def _to_chat(request: ModelRequest, protocol: dict[str, Any] | None) -> list[dict[str, str]]:
    """The conversation as plain chat turns; tool results become user turns."""
    system = [m.content for m in request.messages if isinstance(m, SystemMessage)]
    if protocol is not None:
        system.append(_describe(request.tools, request.tool_choice != "required"))
    chat: list[dict[str, str]] = [
        {"role": "system", "content": "\n\n".join(system) or "You are a helpful assistant."}
    ]
    pending: list[str] = []
    last_was_result = False
    for message in request.messages:
        if isinstance(message, UserMessage):
            pending.append(message.content)
            last_was_result = False
        elif isinstance(message, ToolResult):
            verb = "Result of" if message.status == "ok" else "Error from"
            pending.append(f"{verb} {message.name}: {message.content}")
            last_was_result = True
        elif isinstance(message, AssistantMessage):
            if pending:
                chat.append({"role": "user", "content": "\n\n".join(pending)})
                pending = []
            chat.append({"role": "assistant", "content": _render_assistant(message, protocol)})
    if protocol is not None and last_was_result:
        pending.append(
            "Use these results to answer the user's question now, unless you still need "
            "another tool. If a call failed, correct the call, or tell the user it failed: "
            "never make up what the tool would have returned."
        )
    if pending:
        chat.append({"role": "user", "content": "\n\n".join(pending)})
    return chat


def _render_assistant(message: AssistantMessage, protocol: dict[str, Any] | None) -> str:
    calls = message.tool_calls
    if protocol is None or not calls:
        return message.text if protocol is None else json.dumps({"answer": message.text})
    call = calls[0]
    try:
        arguments: Any = call.arguments_dict()
    except ValueError:
        arguments = call.arguments_json()
    return json.dumps({"tool": call.name, "arguments": arguments}, ensure_ascii=False)


def _from_protocol(text: str, request: ModelRequest) -> AssistantMessage:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        # Grammar sampling guarantees JSON unless generation hit max_tokens mid-object.
        raise ModelResponseError(
            f"the local model's answer was cut off before it was complete JSON ({exc}); "
            "raise ModelSettings(max_tokens=...)",
            model="local",
        ) from exc
    if isinstance(data, dict) and "tool" in data:
        arguments = data.get("arguments")
        return AssistantMessage(
            parts=[
                ToolCall(
                    id=f"local_{next(_ids)}",
                    name=str(data["tool"]),
                    arguments=arguments if isinstance(arguments, dict) else {},
                )
            ]
        )
    if isinstance(data, dict) and "answer" in data:
        return _text(str(data["answer"]))
    raise ModelResponseError(f"the local model answered outside its protocol: {text[:200]}")
