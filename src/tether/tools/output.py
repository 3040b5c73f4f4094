"""Structured output: the final answer as a typed value, offered to the model as a tool.

`Agent(output=Order)` offers the model a `final_result` tool whose arguments are the
output schema; a call of it that validates ends the run. Output types that are not
JSON objects (`int`, `list[str]`) are wrapped in `{"response": ...}` and unwrapped.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ConfigDict, TypeAdapter, ValidationError, create_model

from tether.errors import ConfigError, ToolArgumentsInvalid
from tether.messages import ToolCall, ToolDefinition
from tether.tools.tool import render_validation_errors

__all__ = ["OUTPUT_TOOL_NAME", "OutputTool"]

OUTPUT_TOOL_NAME = "final_result"


class OutputTool:
    """Validates a final answer of `output_type`, from a tool call or from plain text."""

    __slots__ = ("_adapter", "_wrapped", "definition", "output_type")

    def __init__(self, output_type: Any, *, description: str | None = None) -> None:
        self.output_type = output_type
        try:
            self._adapter: TypeAdapter[Any] = TypeAdapter(output_type)
            schema = self._adapter.json_schema()
        except Exception as exc:
            raise ConfigError(
                f"output type {output_type!r} cannot be described as JSON schema: {exc}"
            ) from exc
        self._wrapped = schema.get("type") != "object"
        if self._wrapped:
            defs = schema.pop("$defs", None)
            schema = {
                "type": "object",
                "properties": {"response": schema},
                "required": ["response"],
                "additionalProperties": False,
            }
            if defs:
                schema["$defs"] = defs
            # Validate the wrapper, so errors point at `response` as the model sees it.
            self._adapter = TypeAdapter(
                create_model(
                    "FinalResult",
                    __config__=ConfigDict(extra="forbid"),
                    response=(output_type, ...),
                )
            )
        schema.pop("title", None)
        self.definition = ToolDefinition(
            name=OUTPUT_TOOL_NAME,
            description=description
            or "Give the final answer. Call this exactly once, when you are done.",
            parameters=schema,
        )

    def validate_call(self, call: ToolCall) -> Any:
        """The output value from a `final_result` call; `ToolArgumentsInvalid` if it is bad."""
        try:
            raw = call.arguments_dict()
        except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
            raise ToolArgumentsInvalid(
                f"the final result is not a JSON object ({exc}). Call {OUTPUT_TOOL_NAME} "
                "again with arguments matching its schema.",
                tool=OUTPUT_TOOL_NAME,
            ) from None
        return self._validate(raw)

    def validate_text(self, text: str) -> Any:
        """The output value from a plain-text answer holding JSON (lenient path)."""
        start = min((i for i in (text.find("{"), text.find("[")) if i >= 0), default=-1)
        candidate = text[start:] if start >= 0 and not self._wrapped else text
        try:
            raw = json.loads(candidate.strip().removeprefix("```json").removesuffix("```"))
        except (json.JSONDecodeError, RecursionError):  # RecursionError: "[[[[..."
            if self._wrapped:
                return self._validate({"response": text.strip()})
            raise ToolArgumentsInvalid(
                f"the answer is not JSON. Call {OUTPUT_TOOL_NAME} with your final answer.",
                tool=OUTPUT_TOOL_NAME,
            ) from None
        if self._wrapped and not (isinstance(raw, dict) and "response" in raw):
            raw = {"response": raw}
        return self._validate(raw)

    def _validate(self, raw: Any) -> Any:
        try:
            value = self._adapter.validate_python(raw)
        except ValidationError as exc:
            problems = render_validation_errors(exc)
            raise ToolArgumentsInvalid(
                f"the final result does not match the output schema: {problems}. "
                f"Fix it and call {OUTPUT_TOOL_NAME} again.",
                tool=OUTPUT_TOOL_NAME,
            ) from None
        return value.response if self._wrapped else value
