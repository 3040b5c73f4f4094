"""`ScriptedModel` and `FunctionModel`: deterministic models for tests and demos."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tether.messages import (
    AssistantMessage,
    ModelRequest,
    ModelResponse,
    TextPart,
    ToolCall,
    Usage,
    construct,
)
from tether.models.base import Model

__all__ = [
    "FunctionModel",
    "ScriptExhausted",
    "ScriptedModel",
    "Step",
    "call",
    "calls",
    "raise_error",
    "reply",
]


class ScriptExhausted(AssertionError):
    """The run asked a `ScriptedModel` for more steps than its script has."""


@dataclass(frozen=True, slots=True)
class Step:
    """One scripted model response: text and/or tool calls, or an error to raise."""

    text: str = ""
    calls: tuple[tuple[str, str | dict[str, Any]], ...] = ()
    error: BaseException | None = None
    usage: Usage | None = None


def call(name: str, /, raw: str | None = None, **arguments: Any) -> Step:
    """A step where the model calls `name` with `arguments` (or exactly `raw` JSON text)."""
    return Step(calls=((name, raw if raw is not None else arguments),))


def calls(*steps: Step) -> Step:
    """One step with several tool calls, which the loop runs concurrently."""
    return Step(calls=tuple(c for s in steps for c in s.calls))


def reply(text: str, *with_calls: Step) -> Step:
    """A step where the model answers `text` (optionally alongside tool calls)."""
    return Step(text=text, calls=tuple(c for s in with_calls for c in s.calls))


def raise_error(error: BaseException) -> Step:
    """A step where the model call raises `error` (e.g. `ModelRateLimited(...)`)."""
    return Step(error=error)


_DEFAULT_USAGE = Usage(input_tokens=10, output_tokens=5)


class ScriptedModel(Model):
    """Answers each request with the next step of its script; records the requests.

    Args:
        steps: The responses, in order.
        name: Reported as the serving model (prices are looked up by it).
        usage: Usage reported for every step that does not set its own.
    """

    def __init__(
        self, steps: Sequence[Step], *, name: str = "scripted", usage: Usage = _DEFAULT_USAGE
    ) -> None:
        self.name = name
        self.steps = list(steps)
        self.position = 0
        self.requests: list[ModelRequest] = []
        self._usage = usage

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        if self.position >= len(self.steps):
            raise ScriptExhausted(
                f"{self.name}: the script has {len(self.steps)} steps and the run asked for "
                f"step {self.position + 1}"
            )
        step = self.steps[self.position]
        self.position += 1
        if step.error is not None:
            raise step.error
        parts: list[TextPart | ToolCall] = []
        if step.text:
            parts.append(construct(TextPart, type="text", text=step.text))
        for i, (tool_name, arguments) in enumerate(step.calls):
            call_id = f"call_{self.position}_{i}"
            parts.append(
                construct(
                    ToolCall, type="tool_call", id=call_id, name=tool_name, arguments=arguments
                )
            )
        return construct(
            ModelResponse,
            message=construct(AssistantMessage, role="assistant", parts=parts),
            usage=step.usage or self._usage,
            model=self.name,
            finish_reason="tool_calls" if step.calls else "stop",
        )

    @property
    def remaining(self) -> int:
        return len(self.steps) - self.position

    def assert_complete(self) -> None:
        """Fail if the run did not consume every step of the script."""
        if self.remaining:
            raise AssertionError(
                f"{self.name}: {self.remaining} of {len(self.steps)} scripted steps were not used"
            )


FunctionResult = ModelResponse | AssistantMessage | Step | str


class FunctionModel(Model):
    """A model whose every response is computed by `function(request)` (sync or async).

    The function may return a `ModelResponse`, an `AssistantMessage`, a `Step`
    (`reply(...)`, `call(...)`) or a plain string.
    """

    def __init__(
        self,
        function: Callable[[ModelRequest], FunctionResult | Awaitable[FunctionResult]],
        *,
        name: str = "function",
    ) -> None:
        self.name = name
        self.function = function
        self.requests: list[ModelRequest] = []

    async def request(self, request: ModelRequest) -> ModelResponse:
        self.requests.append(request)
        out = self.function(request)
        if inspect.isawaitable(out):
            out = await out
        if isinstance(out, ModelResponse):
            return out
        if isinstance(out, str):
            out = reply(out)
        if isinstance(out, Step):
            if out.error is not None:
                raise out.error
            return await ScriptedModel([out], name=self.name).request(request)
        return ModelResponse(message=out, usage=_DEFAULT_USAGE, model=self.name)
