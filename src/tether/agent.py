"""`Agent`: the facade users hold. It declares; the loop runs.

An agent resolves its declaration (model names, tools, output type, policy) into a
`RunSpec` once, on first use, and reuses it for every run: schemas, validators and the
policy onion are built once, not per run.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Callable, Hashable, Sequence
from typing import Any

from tether.effects import Effects
from tether.errors import ConfigError
from tether.loop import Event, Reviewer, RunSpec, run_loop
from tether.messages import EffectPolicy, Message, ModelSettings, RunResult
from tether.models import Model, infer_model, price_of
from tether.observe import LogEffects, log_retry
from tether.policy import Policy
from tether.settings import get_settings
from tether.tools import OUTPUT_TOOL_NAME, OutputTool, Tool, ToolSet

__all__ = ["Agent"]


class Agent:
    """An agent: a model, instructions, tools, an output type and a policy.

    Args:
        model: A name (`"openai:gpt-4.1-mini"`, `"anthropic:claude-haiku-4-5"`,
            `"local"`), a `Model`, a list of them (a fallback chain, primary first), or
            `None` for the configured default (`local` when no API key is set).
        instructions: The system prompt.
        tools: `@tool` functions, or plain callables (wrapped with defaults).
        output: The type of the final answer; `str` (default) for free text, or a
            pydantic model (or any type pydantic can validate), re-asked when invalid.
        policy: Retries, circuit breakers, rate limits, budget, loop guard, limits,
            timeout (see `Policy`; the defaults are the production ones).
        critic: Checks the final answer (e.g. `tether.guards.Critic`) and asks for
            revisions; after its last revision the result is flagged `critic_rejected`.
        model_settings: Sampling settings (max_tokens, temperature, ...).
        name: Shown in logs and run records; defaults to `"agent"`.

    Example:
        ```python
        agent = Agent(model="local", instructions="Be brief.", tools=[get_weather])
        result = await agent.run("What's the weather in Paris?")
        print(result.output, result.usage, result.cost_usd)
        ```
    """

    def __init__(
        self,
        model: ModelChoice = None,
        *,
        instructions: str | None = None,
        tools: Sequence[Tool | Callable[..., Any]] = (),
        output: Any = str,
        policy: Policy | None = None,
        critic: Reviewer | None = None,
        model_settings: ModelSettings | None = None,
        name: str = "agent",
    ) -> None:
        _check_model_choice(model)
        self.model = model
        self.critic = critic
        self.instructions = instructions
        self.tools = ToolSet(tools)
        if OUTPUT_TOOL_NAME in self.tools:
            raise ConfigError(f"the tool name {OUTPUT_TOOL_NAME!r} is reserved for the output")
        self.output_type = output
        self._output = None if output is str else OutputTool(output)
        self.policy = policy or Policy()
        self.model_settings = model_settings or ModelSettings()
        self.name = name
        # The policy passed to `spec` rides along: its id is in the key, so it must live.
        self._specs: dict[Hashable, tuple[RunSpec, Policy | None]] = {}

    def spec(
        self,
        model: ModelChoice = None,
        *,
        outer: Sequence[EffectPolicy] = (),
        policy: Policy | None = None,
    ) -> RunSpec:
        """The resolved run spec for this agent (and an optional model override), cached.

        `outer` are policies around all the others (the durable runtime's journal and
        shared budget); `policy` replaces the agent's own (the durable runtime's keeps
        breaker and rate-limit state in the database). Specs are cached per model, per
        `outer` tuple and per policy.
        """
        _check_model_choice(model)
        key = (_key(model), tuple(map(id, outer)), id(policy))
        cached = self._specs.get(key)
        if cached is not None:
            return cached[0]
        chain = _resolve(model if model is not None else self.model)
        settings = self.model_settings
        if settings.timeout is None:
            settings = settings.model_copy(update={"timeout": get_settings().model_timeout})
        governing = _with_retry_log(policy or self.policy)
        effects = Effects(
            chain,
            self.tools,
            [*outer, LogEffects(), *governing.run_layers([m.name for m in chain], price_of)],
            model_layers=governing.model_layers,
            tool_layers=governing.tool_layers,
            fallback_on=governing.fallback_on,
        )
        found = RunSpec(
            name=self.name,
            model_name=chain[0].name,
            effects=effects,
            tools=self.tools,
            instructions=self.instructions,
            output=self._output,
            settings=settings,
            max_steps=governing.max_steps,
            output_retries=governing.output_retries,
            critic=self.critic,
            timeout=governing.timeout,
        )
        self._specs[key] = (found, policy)
        return found

    async def run(
        self,
        prompt: str,
        *,
        user: str | None = None,
        deps: Any = None,
        history: list[Message] | None = None,
        run_id: str | None = None,
        model: ModelChoice = None,
    ) -> RunResult:
        """Run to a final answer.

        Args:
            prompt: The user's message.
            user: Who the run is for (logs, limits and budgets are kept per user).
            deps: Anything your tools need; they get it as `ctx.deps`.
            history: Earlier messages (e.g. `previous.messages`) to continue from.
            run_id: Your own id for the run; a random one by default.
            model: Use this model instead of the agent's for this run.

        Raises:
            MaxStepsExceeded, UsageLimitExceeded, OutputValidationError: with the partial
                run on `.result`.
            ModelError: a model call failed and no policy absorbed it.
        """
        return await run_loop(
            self.spec(model), prompt, run_id=run_id, user=user, deps=deps, history=history
        )

    def run_sync(self, prompt: str, **kwargs: Any) -> RunResult:
        """`run` for code without an event loop (scripts, notebooks without one).

        Each call runs its own event loop; the model's connections belong to that loop,
        so they are closed before it ends and opened afresh by the next call.
        """

        async def once() -> RunResult:
            try:
                return await self.run(prompt, **kwargs)
            finally:
                await self.aclose()

        return asyncio.run(once())

    async def stream(
        self,
        prompt: str,
        *,
        user: str | None = None,
        deps: Any = None,
        history: list[Message] | None = None,
        run_id: str | None = None,
        model: ModelChoice = None,
    ) -> AsyncIterator[Event]:
        """Run, yielding events as they happen: `RunStarted`, `StepStarted`, `TextDelta`,
        `ModelResponded`, `ToolCalled`, `ToolReturned`, and last `RunCompleted`.

        A run that stops raises its error from the iterator, after the events so far.
        """
        spec = self.spec(model)
        queue: asyncio.Queue[Event | None] = asyncio.Queue()
        task = asyncio.create_task(
            run_loop(
                spec,
                prompt,
                run_id=run_id,
                user=user,
                deps=deps,
                history=history,
                sink=queue.put_nowait,
            )
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while (event := await queue.get()) is not None:
                yield event
            task.result()
        finally:
            if not task.done():
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)

    async def aclose(self) -> None:
        """Close the models this agent opened (their HTTP connections)."""
        for spec, _policy in self._specs.values():
            await spec.effects.close()
        self._specs.clear()

    def __repr__(self) -> str:
        return f"Agent(name={self.name!r}, model={self.model!r}, tools={len(self.tools)})"


ModelChoice = Model | str | Sequence[Model | str] | None
"""A model name or `Model`, a fallback chain of them (primary first), or None (default)."""


def _check_model_choice(model: object) -> None:
    items = model if isinstance(model, list | tuple) else [model]
    if not items or not all(m is None or isinstance(m, Model | str) for m in items):
        raise ConfigError(
            "model must be a name like 'openai:gpt-4.1-mini', a Model, or a non-empty list of "
            f"them (a fallback chain, primary first); got {model!r}"
        )
    if len(items) > 1 and any(m is None for m in items):
        raise ConfigError("a fallback chain names every tier; None is not a model")


def _key(model: ModelChoice) -> Hashable:
    # A Model is keyed by identity (two may share a name, as scripted ones do); its
    # cached spec keeps it alive, so the id is not reused.
    if isinstance(model, list | tuple):
        return tuple(_key(m) for m in model)
    return id(model) if isinstance(model, Model) else model


def _with_retry_log(policy: Policy) -> Policy:
    """Retries are logged unless the policy brings its own hook."""
    retry = policy.retry
    if retry is None or retry.on_retry is not None:
        return policy
    return dataclasses.replace(policy, retry=dataclasses.replace(retry, on_retry=log_retry))


def _resolve(model: ModelChoice) -> list[Model]:
    if isinstance(model, Model | str) or model is None:
        return [infer_model(model)]
    return [infer_model(m) for m in model]
