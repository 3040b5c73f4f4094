"""`ToolSet`: an agent's tools by name, their definitions, and how results become text."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import pydantic_core
from pydantic import BaseModel

from tether.errors import ConfigError, ToolNotFound
from tether.messages import ToolCall, ToolDefinition
from tether.tools.tool import Tool

__all__ = ["ToolSet", "render_output"]


class ToolSet:
    """The tools one agent offers, resolved once when the agent is built."""

    __slots__ = ("_by_name", "definitions")

    def __init__(self, tools: Iterable[Tool | Callable[..., Any]] = ()) -> None:
        self._by_name: dict[str, Tool] = {}
        for item in tools:
            resolved = item if isinstance(item, Tool) else Tool(item)
            if resolved.name in self._by_name:
                raise ConfigError(
                    f"two tools are named {resolved.name!r}; pass name=... to @tool to tell "
                    "them apart"
                )
            self._by_name[resolved.name] = resolved
        self.definitions: list[ToolDefinition] = [t.definition for t in self._by_name.values()]

    def __len__(self) -> int:
        return len(self._by_name)

    def __iter__(self) -> Any:
        return iter(self._by_name.values())

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def get(self, call: ToolCall) -> Tool:
        """The tool a call names; `ToolNotFound` (shown to the model) if there is none."""
        found = self._by_name.get(call.name)
        if found is None:
            names = ", ".join(self._by_name) or "none"
            raise ToolNotFound(
                f"there is no tool named {call.name!r}; the available tools are: {names}",
                tool=call.name,
            )
        return found


def render_output(value: Any) -> str:
    """A tool's return value as the text the model reads: strings as-is, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, BaseModel):
        return value.model_dump_json()
    if value is None:
        return "null"
    return pydantic_core.to_json(value, fallback=str).decode()
