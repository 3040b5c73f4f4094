"""The one seam: every model call and tool call passes through `Effects`.

`Effects` composes the policy onion once, per kind, when a run spec is built (as
Starlette builds its middleware stack once), with the provider or the tool itself as
the innermost call. The loop only ever awaits `effects.model(...)` and
`effects.tool(...)`; it never knows whether the answer came from a provider, a cache or
a replayed journal.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Sequence
from typing import Any

from tether.messages import (
    CallNext,
    EffectPolicy,
    ModelEffect,
    ModelResponse,
    ToolEffect,
    ToolResult,
)
from tether.models.base import Model
from tether.tools import RunContext, ToolSet, render_output

__all__ = ["Effects", "compose"]


def compose(policies: Sequence[EffectPolicy], kind: str, innermost: CallNext) -> CallNext:
    """Wrap `innermost` in the policies that apply to `kind`, first policy outermost."""
    handler = innermost
    for policy in reversed(policies):
        if kind in policy.kinds:
            handler = functools.partial(policy, call_next=handler)
    return handler


class Effects:
    """Runs model and tool effects through the policy onion.

    Args:
        model: The innermost model (a provider adapter, or a fallback chain of them).
        tools: The tools that tool effects may execute.
        policies: Outermost first.
    """

    __slots__ = ("_model", "_tools", "model", "policies", "tool")

    def __init__(self, model: Model, tools: ToolSet, policies: Sequence[EffectPolicy] = ()):
        self._model = model
        self._tools = tools
        self.policies = tuple(policies)
        self.model: CallNext = compose(self.policies, "model", self._call_model)
        self.tool: CallNext = compose(self.policies, "tool", self._call_tool)

    async def close(self) -> None:
        """Release the innermost model's connections."""
        await self._model.aclose()

    def _call_model(self, effect: ModelEffect) -> Awaitable[ModelResponse]:
        # A plain function handing back the adapter's coroutine: no frame of its own.
        if effect.on_text is None:
            return self._model.request(effect.request)
        return self._model.request_stream(effect.request, effect.on_text)

    async def _call_tool(self, effect: ToolEffect) -> ToolResult:
        call = effect.call
        tool = self._tools.get(call)
        ctx: RunContext[Any] | None = None
        if tool.signature.context_param is not None:
            run = effect.run
            ctx = RunContext(
                run_id=run.run_id,
                step=run.step,
                call_id=call.id,
                call_index=effect.index,
                user=run.user,
                deps=run.deps,
            )
        value = await tool.execute(effect.arguments, ctx)
        return ToolResult.of(call, render_output(value))
