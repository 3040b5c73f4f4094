"""A hand-written minimal agent loop: the honest baseline for `core.py`.

It does the same logical work as one tether run, with no framework: keep the
conversation as plain dicts, ask the model, append its message, parse each tool call's
JSON arguments, await the tool (concurrently when a step has several calls), render the
result as text, append it, and go round again until the model answers without calls.
It adds up usage and stops after `max_steps`. It has no validation, no policies, no
logging hooks, no events: whatever tether costs above this is the runtime's overhead.

The fake model (`make_model`) answers by looking at the conversation length, so one
model serves any number of concurrent runs, like tether's benchmark model does.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["MinimalModel", "make_model", "minimal_run", "tool_definitions"]

Tool = Callable[..., Awaitable[Any]]
MinimalModel = Callable[[list[dict[str, Any]], list[dict[str, Any]]], Awaitable[dict[str, Any]]]


def tool_definitions(tools: dict[str, Tool]) -> list[dict[str, Any]]:
    """What the model is told about the tools (built once, as any loop would)."""
    return [
        {"type": "function", "function": {"name": name, "parameters": {"type": "object"}}}
        for name in tools
    ]


async def _call_tool(tools: dict[str, Tool], call: dict[str, Any]) -> dict[str, Any]:
    function = call["function"]
    try:
        arguments = json.loads(function["arguments"] or "{}")
        value = await tools[function["name"]](**arguments)
        content = value if isinstance(value, str) else json.dumps(value)
    except Exception as exc:  # the model sees the error and may correct its call
        content = f"error: {type(exc).__name__}: {exc}"
    return {"role": "tool", "tool_call_id": call["id"], "content": content}


async def minimal_run(
    model: MinimalModel,
    tools: dict[str, Tool],
    definitions: list[dict[str, Any]],
    prompt: str,
    *,
    max_steps: int = 20,
) -> dict[str, Any]:
    """Run to a final answer; returns the answer, the messages, usage and steps."""
    messages: list[dict[str, Any]] = [{"role": "user", "content": prompt}]
    usage = {"input_tokens": 0, "output_tokens": 0, "requests": 0, "tool_calls": 0}
    for step in range(1, max_steps + 1):
        response = await model(messages, definitions)
        used = response["usage"]
        usage["input_tokens"] += used["input_tokens"]
        usage["output_tokens"] += used["output_tokens"]
        usage["requests"] += 1
        message = response["message"]
        messages.append(message)
        calls = message.get("tool_calls")
        if not calls:
            return {
                "output": message["content"],
                "messages": messages,
                "usage": usage,
                "steps": step,
            }
        usage["tool_calls"] += len(calls)
        if len(calls) == 1:
            messages.append(await _call_tool(tools, calls[0]))
        else:
            messages.extend(await asyncio.gather(*(_call_tool(tools, c) for c in calls)))
    raise RuntimeError(f"no final answer after {max_steps} steps")


def make_model(
    steps: int,
    *,
    latency: float = 0.0,
    tool: str = "add",
    parallel: int = 1,
    wait: Callable[[int], Awaitable[None]] | None = None,
    reuse: bool = False,
) -> MinimalModel:
    """A fake model: `steps - 1` tool-call steps (`parallel` calls each), then an answer.

    The step is read off the conversation length (user message, then one assistant
    message and `parallel` tool results per step). `latency` seconds are slept per call;
    `wait(step)`, if given, is awaited before answering (the memory probe parks runs).
    With `reuse`, each step's response is built once and returned to every run (no
    model work at all); otherwise every call builds a fresh response, as a provider
    adapter would.
    """
    per_step = 1 + parallel

    async def model(
        messages: list[dict[str, Any]], definitions: list[dict[str, Any]]
    ) -> dict[str, Any]:
        step = (len(messages) - 1) // per_step + 1
        if latency:
            await asyncio.sleep(latency)
        if wait is not None:
            await wait(step)
        if prebuilt:
            return prebuilt[min(step, steps) - 1]
        return respond(step)

    def respond(step: int) -> dict[str, Any]:
        if step < steps:
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": f"call_{step}_{i}",
                        "type": "function",
                        "function": {"name": tool, "arguments": f'{{"a": {step}, "b": 2}}'},
                    }
                    for i in range(parallel)
                ],
            }
        else:
            message = {"role": "assistant", "content": "3"}
        return {"message": message, "usage": {"input_tokens": 10, "output_tokens": 5}}

    prebuilt = [respond(step) for step in range(1, steps + 1)] if reuse else None
    return model


async def add(a: int, b: int) -> int:
    """The trivial tool."""
    return a + b


if __name__ == "__main__":
    tools: dict[str, Tool] = {"add": add}
    result = asyncio.run(minimal_run(make_model(5), tools, tool_definitions(tools), "1 + 2?"))
    print(result["output"], result["steps"], result["usage"])
