"""`Policy`: what a user declares about how runs of an agent are governed.

A `Policy` turns into three kinds of effect policies, composed by `tether.effects`:

    run layers (outermost first): budget, usage limits, per-user rate limit, loop guard,
        your `extra` policies
    per model tier, inside the fallback chain: its rate limit, its circuit breaker, retry
    per tool (and each of its fallbacks): its circuit breaker, retry

so a tier whose breaker is open is skipped without a call, and retries never re-run the
chain. The breaker sits inside the rate limiter on purpose: a call that waited for rate
capacity asks the breaker afterwards, so nothing reaches a target whose circuit opened
meanwhile (an open tier may thus cost a bounded rate-limit wait before it is skipped;
the tokens are refunded).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tether.errors import ConfigError
from tether.messages import EffectPolicy
from tether.policy.breaker import Breaker
from tether.policy.buckets import InMemoryRateLimitStore, RateLimitStore
from tether.policy.budget import Budget
from tether.policy.circuits import BreakerStore, InMemoryBreakerStore
from tether.policy.limits import UsageLimitPolicy, UsageLimits
from tether.policy.loop_guard import LoopGuard
from tether.policy.ratelimit import RateLimits
from tether.policy.retry import Retry

__all__ = ["Policy"]

PriceLookup = Callable[[str], Any]


@dataclass(frozen=True, slots=True)
class Policy:
    """How runs of an agent are governed. The defaults are the production ones.

    Args:
        max_steps: Model calls a run may make before `MaxStepsExceeded`.
        limits: Requests, tool calls and tokens a run may spend (checked as it goes).
        output_retries: Re-asks after a final answer fails validation.
        retry: Classified retries with backoff, honouring Retry-After (None: off).
        breaker: A circuit breaker per model deployment and per tool (None: off).
        rate_limits: Requests/tokens per minute per deployment, requests per user.
        budget: Cost, tokens, requests and tool calls per run, checked before each call
            with its worst case so the run never crosses it.
        loop_guard: Catches the same tool call repeated and A-B-A-B oscillation (None: off).
        timeout: Wall-clock seconds for a whole run (`RunTimeout`).
        fallback_on: More error classes on which a model chain moves to its next tier.
        extra: Your own effect policies, inside tether's run layers.
    """

    max_steps: int = 20
    limits: UsageLimits = field(default_factory=UsageLimits)
    output_retries: int = 2
    retry: Retry | None = field(default_factory=Retry)
    breaker: Breaker | None = field(default_factory=Breaker)
    rate_limits: RateLimits | None = None
    budget: Budget | None = None
    loop_guard: LoopGuard | None = field(default_factory=LoopGuard)
    timeout: float | None = None
    fallback_on: tuple[type[BaseException], ...] = ()
    extra: Sequence[EffectPolicy] = ()

    def __post_init__(self) -> None:
        if self.max_steps < 1:
            raise ConfigError(f"Policy.max_steps must be >= 1, got {self.max_steps}")
        if self.output_retries < 0:
            raise ConfigError(f"Policy.output_retries must be >= 0, got {self.output_retries}")
        if self.timeout is not None and not self.timeout > 0:
            raise ConfigError(f"Policy.timeout must be > 0 seconds (or None), got {self.timeout}")

    def with_shared_state(self, breakers: BreakerStore, rate_limits: RateLimitStore) -> Policy:
        """This policy with its circuits and rate-limit buckets kept in `breakers` and
        `rate_limits` (stores shared between processes) instead of in this process.

        Only state that is in memory moves: a store you chose stays yours.
        """
        changes: dict[str, Any] = {}
        if self.breaker is not None and isinstance(self.breaker.store, InMemoryBreakerStore):
            changes["breaker"] = dataclasses.replace(self.breaker, store=breakers)
        limits = self.rate_limits
        if limits is not None and isinstance(limits.store, InMemoryRateLimitStore):
            changes["rate_limits"] = dataclasses.replace(limits, store=rate_limits)
        return dataclasses.replace(self, **changes) if changes else self

    def run_layers(self, models: Sequence[str], price: PriceLookup) -> list[EffectPolicy]:
        """The run-level policies, outermost first; `models` are the chain's names."""
        layers: list[EffectPolicy] = []
        if self.budget is not None:
            budget = self.budget.policy(price, models=models)
            if budget is not None:
                layers.append(budget)
        if self.limits.any:
            layers.append(UsageLimitPolicy(self.limits))
        if self.rate_limits is not None:
            per_user = self.rate_limits.per_user()
            if per_user is not None:
                layers.append(per_user)
        if self.loop_guard is not None:
            layers.append(self.loop_guard.policy())
        layers.extend(self.extra)
        return layers

    def model_layers(self, model: Any) -> list[EffectPolicy]:
        """The policies of one model tier (`model.name`), outermost first."""
        found = (
            self.rate_limits.for_model(model.name) if self.rate_limits is not None else None,
            self.breaker.for_model(model.name) if self.breaker is not None else None,
            self.retry.for_model(model.name) if self.retry is not None else None,
        )
        return [layer for layer in found if layer is not None]

    def tool_layers(self, tool: Any) -> list[EffectPolicy]:
        """The policies of one tool, outermost first (its own `@tool(retry=...)` wins)."""
        retry: Retry | None = getattr(tool, "retry", None) or self.retry
        found = (
            self.breaker.for_tool(tool) if self.breaker is not None else None,
            retry.for_tool(tool) if retry is not None else None,
        )
        return [layer for layer in found if layer is not None]
