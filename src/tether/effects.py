"""The one seam: every model call and tool call passes through `Effects`.

`Effects` composes the policy onion once, per kind, when a run spec is built (as
Starlette builds its middleware stack once), with the provider or the tool itself as
the innermost call. The loop only ever awaits `effects.model(...)` and
`effects.tool(...)`; it never knows whether the answer came from a provider, a cache,
a fallback tier or a replayed journal.

    run policies (outermost first) ─► fallback chain ─► per tier: its own policies ─► call

A model fallback chain moves down its tiers on a retryable failure, an open breaker, a
rate limit or a configured error class; a tool moves on to its fallbacks, and when
none can serve, the model gets a `degraded` result instead of an error it would retry.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from tether.errors import (
    CircuitOpen,
    ModelError,
    RateLimited,
    ToolArgumentsInvalid,
    ToolExecutionError,
    ToolTimeout,
)
from tether.messages import (
    CallNext,
    EffectPolicy,
    ModelEffect,
    ModelResponse,
    ToolEffect,
    ToolResult,
)
from tether.models.base import Model
from tether.tools import RunContext, Tool, ToolSet, render_output

__all__ = ["Effects", "compose"]

ModelLayers = Callable[[Model], Sequence[EffectPolicy]]
ToolLayers = Callable[[Tool], Sequence[EffectPolicy]]


def compose(policies: Sequence[EffectPolicy], kind: str, innermost: CallNext) -> CallNext:
    """Wrap `innermost` in the policies that apply to `kind`, first policy outermost."""
    handler = innermost
    for policy in reversed(policies):
        if kind in policy.kinds:
            handler = functools.partial(policy, call_next=handler)
    return handler


def _no_layers(_: Any) -> Sequence[EffectPolicy]:
    return ()


class Effects:
    """Runs model and tool effects through the policy onion.

    Args:
        model: The model, or a fallback chain of models (first is the primary).
        tools: The tools that tool effects may execute.
        policies: Run-level policies, outermost first, around the fallback chains.
        model_layers: The policies of one model tier (its rate limit, breaker, retry).
        tool_layers: The policies of one tool (its breaker, retry).
        fallback_on: More error classes on which a model chain moves to its next tier.
    """

    __slots__ = ("_models", "_tool_chains", "model", "policies", "tool")

    def __init__(
        self,
        model: Model | Sequence[Model],
        tools: ToolSet,
        policies: Sequence[EffectPolicy] = (),
        *,
        model_layers: ModelLayers = _no_layers,
        tool_layers: ToolLayers = _no_layers,
        fallback_on: tuple[type[BaseException], ...] = (),
    ) -> None:
        self._models: tuple[Model, ...] = (model,) if isinstance(model, Model) else tuple(model)
        self.policies = tuple(policies)
        tiers = [
            (m.name, compose(model_layers(m), "model", functools.partial(_request, m)))
            for m in self._models
        ]
        inner: CallNext = (
            tiers[0][1] if len(tiers) == 1 else _ModelChain(tiers, fallback_on).__call__
        )
        self.model: CallNext = compose(self.policies, "model", inner)
        self._tool_chains = {tool.name: _tool_chain(tool, tool_layers) for tool in tools}
        self.tool: CallNext = compose(self.policies, "tool", self._dispatch_tool)

    @property
    def model_names(self) -> list[str]:
        """The names of the models that may serve a call (the chain, primary first)."""
        return [model.name for model in self._models]

    def _dispatch_tool(self, effect: ToolEffect) -> Awaitable[ToolResult]:
        return self._tool_chains[effect.call.name](effect)

    async def close(self) -> None:
        """Release the models' connections."""
        for model in self._models:
            await model.aclose()


def _request(model: Model, effect: ModelEffect) -> Awaitable[ModelResponse]:
    # A plain function handing back the adapter's coroutine: no frame of its own.
    if effect.on_text is None:
        return model.request(effect.request)
    return model.request_stream(effect.request, effect.on_text)


async def _execute(tool: Tool, effect: ToolEffect) -> ToolResult:
    call = effect.call
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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class _ModelChain:
    """Tries each model tier in turn; records on the run which tier served, and why."""

    __slots__ = ("fallback_on", "tiers")

    def __init__(
        self, tiers: list[tuple[str, CallNext]], fallback_on: tuple[type[BaseException], ...]
    ) -> None:
        self.tiers = tiers
        self.fallback_on = fallback_on

    def moves_on(self, exc: BaseException) -> bool:
        if isinstance(exc, (CircuitOpen, RateLimited, *self.fallback_on)):
            return True
        return isinstance(exc, ModelError) and exc.retryable

    async def __call__(self, effect: ModelEffect) -> ModelResponse:
        failures: list[str] = []
        last: BaseException | None = None
        for name, handler in self.tiers:
            try:
                response: ModelResponse = await handler(effect)
            except Exception as exc:
                if not self.moves_on(exc):
                    raise
                failures.append(f"{name}: {_describe(exc)}")
                last = exc
                continue
            if failures:
                effect.run.degrade(f"model call served by {name}; " + "; ".join(failures))
            return response
        assert last is not None
        raise last


def _tool_chain(tool: Tool, layers: ToolLayers) -> CallNext:
    """How calls to `tool` run: through its own policies, then its fallbacks if any."""
    if tool.fallbacks:
        return _ToolChain(
            [
                (t, compose(layers(t), "tool", functools.partial(_execute, t)))
                for t in (tool, *tool.fallbacks)
            ]
        )
    direct = functools.partial(_execute, tool)
    handler = compose(layers(tool), "tool", direct)
    if handler is direct:
        return handler  # no policy of its own, so no open circuit to catch: no frame
    return functools.partial(_only, tool, handler)


async def _only(tool: Tool, handler: CallNext, effect: ToolEffect) -> ToolResult:
    """A tool without fallbacks: an open circuit gives the model a `degraded` result."""
    try:
        result: ToolResult = await handler(effect)
    except CircuitOpen as exc:
        return _degraded(effect, [f"{tool.name}: {_describe(exc)}"])
    return result


class _ToolChain:
    """A tool and its fallbacks: the first that can serve does; else a `degraded` result."""

    __slots__ = ("tiers",)

    def __init__(self, tiers: list[tuple[Tool, CallNext]]) -> None:
        self.tiers = tiers

    async def __call__(self, effect: ToolEffect) -> ToolResult:
        failures: list[str] = []
        for position, (tool, handler) in enumerate(self.tiers):
            attempt = effect
            if position:
                try:  # a fallback validates the same call against its own schema
                    arguments = tool.validate(effect.call)
                except ToolArgumentsInvalid as exc:
                    failures.append(f"{tool.name}: {_describe(exc)}")
                    continue
                attempt = ToolEffect(effect.run, effect.call, effect.index, arguments)
            try:
                result: ToolResult = await handler(attempt)
            except (CircuitOpen, ToolTimeout, ToolExecutionError) as exc:
                if position == 0 and isinstance(exc, ToolExecutionError) and not tool.retryable:
                    raise  # must not run twice, even as another tool: the model decides
                failures.append(f"{tool.name}: {_describe(exc)}")
                continue
            if failures:
                effect.run.degrade(
                    f"tool {effect.call.name} served by {tool.name}; " + "; ".join(failures)
                )
            return result
        return _degraded(effect, failures)


def _degraded(effect: ToolEffect, failures: list[str]) -> ToolResult:
    name = effect.call.name
    effect.run.degrade(f"tool {name} unavailable; " + "; ".join(failures))
    return ToolResult.of(
        effect.call,
        f"The tool {name} is unavailable right now ({'; '.join(failures)}). Do not call it "
        "again in this conversation; tell the user it could not be done and why.",
        "degraded",
    )
