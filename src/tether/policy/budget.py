"""`Budget`: cost, tokens, requests and tool calls per run, never crossed.

Before each model call the budget works out the call's worst case: its estimated
prompt tokens (`tether.policy.tokens`, or, when higher, the tokens the provider
reported for the previous call plus an estimate of what was added since) plus its
`max_tokens`, priced at the highest input and output prices of the models that may
serve it (every tier of the fallback chain). The worst case is reserved in the run's
state while the call is in flight, so concurrent calls of one run count each other,
and released when it returns; the loop then adds the real usage and cost to the run.

When the worst case does not fit what is left, the call's `max_tokens` is first
lowered to what does fit, if that leaves at least `min_output_tokens`; otherwise the
run stops with `BudgetExceeded` before the call, and the loop attaches the partial
result. So a run is not refused while the budget still covers a reasonable call, and
never spends past it as long as providers bill no more input tokens than estimated
and no more output tokens than `max_tokens`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from tether.errors import BudgetExceeded, ConfigError
from tether.messages import (
    AssistantMessage,
    CallNext,
    EffectPolicy,
    ModelEffect,
    ModelRequest,
    ModelResponse,
    RunState,
)
from tether.policy.tokens import (
    PER_MESSAGE,
    PER_TOOL_CALL,
    estimate_message_tokens,
    estimate_prompt_tokens,
)

__all__ = ["Budget", "BudgetPolicy", "TokenPrice"]


class TokenPrice(Protocol):
    """USD per million input and output tokens (`tether.models.ModelPrice` is one)."""

    @property
    def input(self) -> float: ...

    @property
    def output(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Budget:
    """What one run may spend; `None` means no limit.

    Args:
        run_usd: Dollars, at the prices of `tether.models.price_of`.
        run_tokens: Input plus output tokens.
        run_requests: Model requests.
        run_tool_calls: Tool calls.
        default_max_tokens: The output a request that sets no `max_tokens` is assumed
            to produce at worst.
        min_output_tokens: The least `max_tokens` a call is shrunk to before the run
            stops instead.

    Example:
        ```python
        agent = Agent(model=["openai:gpt-4.1-mini", "anthropic:claude-haiku-4-5"],
                      policy=Policy(budget=Budget(run_usd=0.50, run_tool_calls=40)))
        ```
    """

    run_usd: float | None = None
    run_tokens: int | None = None
    run_requests: int | None = None
    run_tool_calls: int | None = None
    default_max_tokens: int = 4096
    min_output_tokens: int = 256

    def __post_init__(self) -> None:
        usd = self.run_usd
        if usd is not None and not (
            isinstance(usd, int | float) and math.isfinite(usd) and usd >= 0
        ):
            raise ConfigError(f"Budget.run_usd must be a finite number >= 0 (or None), got {usd!r}")
        for name in ("run_tokens", "run_requests", "run_tool_calls"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, int) and value >= 0):
                raise ConfigError(f"Budget.{name} must be an int >= 0 (or None), got {value!r}")
        for name in ("default_max_tokens", "min_output_tokens"):
            value = getattr(self, name)
            if not (isinstance(value, int) and value >= 1):
                raise ConfigError(f"Budget.{name} must be an int >= 1, got {value!r}")

    def policy(
        self, price: Callable[[str], TokenPrice | None], models: Sequence[str] = ()
    ) -> EffectPolicy | None:
        """The run layer enforcing this budget (None when it sets no limit).

        Args:
            price: Looks up a model's price (`tether.models.price_of`).
            models: Every model that may serve a call (the whole chain); the worst
                case is priced at their highest input and output prices.

        Raises:
            ConfigError: `run_usd` is set and a model's price is unknown (or no model given).
        """
        if all(
            limit is None
            for limit in (self.run_usd, self.run_tokens, self.run_requests, self.run_tool_calls)
        ):
            return None
        input_price = output_price = 0.0
        if self.run_usd is not None:
            if not models:
                raise ConfigError("Budget(run_usd=...) needs the models that may serve the run")
            for model in models:
                found = price(model)
                if found is None:
                    raise ConfigError(
                        f"Budget(run_usd=...) cannot price model {model!r}: register its "
                        "price with tether.models.register_price(name, ModelPrice(input=..., "
                        "output=...)) in USD per million tokens"
                    )
                input_price = max(input_price, found.input)
                output_price = max(output_price, found.output)
        cls = BudgetPolicy if self.run_tool_calls is None else _ToolBudgetPolicy
        return cls(self, input_price, output_price)


class _Held:
    """One run's in-flight reservations, and what its last call really took."""

    __slots__ = ("anchor", "anchor_len", "anchor_tokens", "requests", "tokens", "usd")

    def __init__(self) -> None:
        self.usd = 0.0
        self.tokens = 0
        self.requests = 0
        self.anchor: AssistantMessage | None = None
        """The answer of the last call that reported its usage."""
        self.anchor_len = 0
        """The length of that call's conversation with its answer appended."""
        self.anchor_tokens = 0
        """That call's reported input tokens plus output tokens."""


class BudgetPolicy:
    """Stops a run with `BudgetExceeded` before a call that could cross its `Budget`."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model"})
    __slots__ = ("_input", "_key", "_output", "budget")

    def __init__(self, budget: Budget, input_price: float, output_price: float) -> None:
        self.budget = budget
        self._input = input_price
        self._output = output_price
        self._key = f"budget:{id(self)}"

    def __repr__(self) -> str:
        return f"BudgetPolicy({self.budget!r})"

    async def __call__(self, effect: Any, call_next: CallNext) -> Any:
        if effect.kind == "tool":
            _check_tool_calls(self.budget, effect.run)
            return await call_next(effect)
        budget = self.budget
        run: RunState = effect.run
        held: _Held = run.extra(self._key, _Held)
        if budget.run_requests is not None and run.requests + held.requests >= budget.run_requests:
            raise BudgetExceeded(
                f"the run reached its budget of {budget.run_requests} requests; raise "
                "Budget(run_requests=...)"
            )
        if budget.run_usd is None and budget.run_tokens is None:
            held.requests += 1
            try:
                return await call_next(effect)
            finally:
                held.requests -= 1
        request: ModelRequest = effect.request
        asked = request.settings.max_tokens or budget.default_max_tokens
        prompt = _prompt_tokens(request, run, held)
        fits = self._fitting_output(run, held, prompt, asked)
        if fits < asked:
            if fits < budget.min_output_tokens:
                raise BudgetExceeded(self._refusal(run, held, prompt))
            settings = request.settings.model_copy(update={"max_tokens": fits})
            request = request.model_copy(update={"settings": settings})
            effect = ModelEffect(run, request, effect.on_text)
            asked = fits
        usd = (prompt * self._input + asked * self._output) / 1e6
        tokens = prompt + asked
        held.usd += usd
        held.tokens += tokens
        held.requests += 1
        try:
            response: ModelResponse = await call_next(effect)
        finally:
            held.usd -= usd
            held.tokens -= tokens
            held.requests -= 1
        used = response.usage
        if used.input_tokens:  # the next request starts with this one and its answer
            held.anchor, held.anchor_len = response.message, len(request.messages) + 1
            held.anchor_tokens = used.input_tokens + used.output_tokens
        return response

    def _fitting_output(self, run: RunState, held: _Held, prompt: int, asked: int) -> int:
        """The most output tokens, up to `asked`, that the budget still covers."""
        budget = self.budget
        fits = asked
        if budget.run_tokens is not None:
            spent = run.input_tokens + run.output_tokens + held.tokens
            fits = min(fits, budget.run_tokens - spent - prompt)
        if budget.run_usd is not None:
            # In micro-dollars: prices are USD per million tokens.
            left = (budget.run_usd - run.cost_usd - held.usd) * 1e6 - prompt * self._input
            if self._output > 0:
                fits = min(fits, math.floor(left / self._output))
                while fits > 0 and fits * self._output > left:
                    fits -= 1  # float rounding in the division
            elif left < 0:
                fits = -1
        return fits

    def _refusal(self, run: RunState, held: _Held, prompt: int) -> str:
        budget = self.budget
        least = budget.min_output_tokens
        parts = []
        if budget.run_usd is not None:
            worst = (prompt * self._input + least * self._output) / 1e6
            left = budget.run_usd - run.cost_usd - held.usd
            parts.append(
                f"${worst:.6f} at worst, with ${max(left, 0.0):.6f} left of its "
                f"Budget(run_usd={budget.run_usd})"
            )
        if budget.run_tokens is not None:
            left_tokens = budget.run_tokens - run.input_tokens - run.output_tokens - held.tokens
            parts.append(
                f"{prompt + least} tokens at worst, with {max(left_tokens, 0)} left of its "
                f"Budget(run_tokens={budget.run_tokens})"
            )
        return (
            f"the next model call ({prompt} prompt tokens estimated, at least {least} output "
            f"tokens) could cost {' and '.join(parts)}; raise the budget, shorten the "
            "conversation, or use a cheaper model"
        )


class _ToolBudgetPolicy(BudgetPolicy):
    """A `BudgetPolicy` that also counts tool calls."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model", "tool"})
    __slots__ = ()


def _check_tool_calls(budget: Budget, run: RunState) -> None:
    # The loop counts a step's calls before dispatching them (as `UsageLimitPolicy` reads).
    limit = budget.run_tool_calls
    if limit is not None and run.tool_calls > limit:
        raise BudgetExceeded(
            f"the run reached its budget of {limit} tool calls; raise Budget(run_tool_calls=...)"
        )


def _prompt_tokens(request: ModelRequest, run: RunState, held: _Held) -> int:
    """The estimate of `request`'s prompt or, when higher, the last call's reported
    tokens (its prompt and answer) plus an estimate of what came after, if the
    conversation only grew since: a provider whose tokenizer counts more than the
    estimate is then caught up by its own counts."""
    estimate = estimate_prompt_tokens(request, run)
    messages = request.messages
    n = held.anchor_len
    anchor = held.anchor
    if anchor is not None and len(messages) >= n and messages[n - 1] is anchor:
        tail = sum(map(estimate_message_tokens, messages[n:]))
        framing = PER_MESSAGE + PER_TOOL_CALL * len(anchor.tool_calls)
        estimate = max(estimate, held.anchor_tokens + framing + tail)
    return estimate
