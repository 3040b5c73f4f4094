"""`SharedBudget`: per-run, per-user-per-day and per-tenant-per-day spending limits held
in the store, so they hold across every process and machine.

Before a model call its worst case (the estimated prompt plus `max_tokens`, at the
highest prices of the models that may serve it) is reserved atomically in the store;
after, the hold is settled at the call's real cost. When the worst case does not fit,
`max_tokens` is lowered to what does fit (if that leaves at least `min_output_tokens`),
so a run is not refused while the budget still covers a reasonable next call;
otherwise the run stops with `BudgetExceeded`. Limits come from the run's tier
(`TETHER_BUDGET_TIERS`, `TETHER_TENANT_TIERS`, `TETHER_DEFAULT_TIER`).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Sequence
from typing import ClassVar

from tether.errors import BudgetExceeded, ConfigError
from tether.messages import CallNext, ModelEffect, ModelResponse, RunState
from tether.models import cost_of
from tether.policy.budget import TokenPrice
from tether.policy.tokens import estimate_prompt_tokens
from tether.settings import Settings, TierBudget
from tether.store import Budgets

__all__ = ["SharedBudget", "Tiers", "scopes_for"]

_ATTEMPTS = 5
"""Reservations retried when another process took what was left in between."""


class Tiers:
    """Which spending tier a run is on, and that tier's limits, from the settings
    (`TETHER_TENANT_TIERS`, `TETHER_DEFAULT_TIER`, `TETHER_BUDGET_TIERS`)."""

    __slots__ = ("_settings",)

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    def name_of(self, tenant: str | None) -> str | None:
        """The tier of `tenant`'s runs (the default tier for no tenant or no mapping)."""
        settings = self._settings
        if tenant is not None and tenant in settings.tenant_tiers:
            return settings.tenant_tiers[tenant]
        return settings.default_tier

    def budget_of(self, run: RunState) -> TierBudget | None:
        """The limits `run` spends against (None: its tier, if any, sets none).

        Raises:
            ConfigError: the run's tier is not in `TETHER_BUDGET_TIERS`.
        """
        name = self.name_of(run.tenant)
        if name is None:
            return None
        tier = self._settings.budget_tiers.get(name)
        if tier is None:
            raise ConfigError(
                f"tier {name!r} has no budget in TETHER_BUDGET_TIERS (tiers: "
                f"{', '.join(sorted(self._settings.budget_tiers)) or 'none'})"
            )
        return tier


def scopes_for(
    tier: TierBudget, *, run_id: str, user: str | None, tenant: str | None, day: str
) -> dict[str, float]:
    """The store scopes a run's calls count against, with their limits."""
    limits: dict[str, float] = {}
    if tier.run_usd is not None:
        limits[f"run:{run_id}"] = tier.run_usd
    if tier.user_day_usd is not None and user is not None:
        limits[f"user:{user}:{day}"] = tier.user_day_usd
    if tier.tenant_day_usd is not None and tenant is not None:
        limits[f"tenant:{tenant}:{day}"] = tier.tenant_day_usd
    return limits


class SharedBudget:
    """Reserves each model call's worst case in the store, then settles its real cost."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model"})
    __slots__ = (
        "_budgets",
        "_default_max_tokens",
        "_input",
        "_model",
        "_output",
        "_tier_of",
        "min_output_tokens",
    )

    def __init__(
        self,
        budgets: Budgets,
        tier_of: Callable[[RunState], TierBudget | None],
        models: Sequence[str],
        price: Callable[[str], TokenPrice | None],
        *,
        min_output_tokens: int = 256,
        default_max_tokens: int = 4096,
    ) -> None:
        self._budgets = budgets
        self._tier_of = tier_of
        self._model = models[0]
        prices = [p for p in map(price, models) if p is not None]
        self._input = max((p.input for p in prices), default=0.0)
        self._output = max((p.output for p in prices), default=0.0)
        self.min_output_tokens = min_output_tokens
        self._default_max_tokens = default_max_tokens

    async def __call__(self, effect: ModelEffect, call_next: CallNext) -> ModelResponse:
        run = effect.run
        tier = self._tier_of(run)
        limits = {} if tier is None else self._limits(tier, run)
        if not limits:
            response: ModelResponse = await call_next(effect)
            return response
        request = effect.request
        asked = request.settings.max_tokens or self._default_max_tokens
        prompt = estimate_prompt_tokens(request, run)
        # The common case is one transaction: the whole worst case fits. Only when it
        # does not is what is left read, to shrink max_tokens to what fits.
        fits = asked
        worst = (prompt * self._input + asked * self._output) / 1e6
        hold = await asyncio.to_thread(self._budgets.reserve, run.run_id, limits, worst)
        for _ in range(_ATTEMPTS if hold is None else 0):
            left = await asyncio.to_thread(self._budgets.left, limits)
            fits = self._fitting(left, prompt, asked)
            if fits < min(asked, self.min_output_tokens):
                raise BudgetExceeded(self._refusal(limits, left, prompt))
            worst = (prompt * self._input + fits * self._output) / 1e6
            hold = await asyncio.to_thread(self._budgets.reserve, run.run_id, limits, worst)
            if hold is not None:
                break
        if hold is None:
            raise BudgetExceeded(
                f"the shared budget ({', '.join(limits)}) is being spent by other runs as "
                "fast as it frees up; try again later"
            )
        if fits < asked:
            settings = request.settings.model_copy(update={"max_tokens": fits})
            effect = ModelEffect(
                run, request.model_copy(update={"settings": settings}), effect.on_text
            )
        spent = 0.0
        try:
            response = await call_next(effect)
            spent = cost_of(response.model or self._model, response.usage)
        finally:
            await asyncio.to_thread(self._budgets.settle, hold, spent, list(limits))
        return response

    def _limits(self, tier: TierBudget, run: RunState) -> dict[str, float]:
        day = time.strftime("%Y-%m-%d", time.gmtime())
        return scopes_for(tier, run_id=run.run_id, user=run.user, tenant=run.tenant, day=day)

    def _fitting(self, left: float, prompt: int, asked: int) -> int:
        room = left * 1e6 - prompt * self._input  # micro-dollars
        if self._output <= 0:
            return asked if room >= 0 else -1
        fits = min(asked, math.floor(room / self._output))
        while fits > 0 and fits * self._output > room:
            fits -= 1  # float rounding in the division
        return fits

    def _refusal(self, limits: dict[str, float], left: float, prompt: int) -> str:
        least = self.min_output_tokens
        worst = (prompt * self._input + least * self._output) / 1e6
        return (
            f"the next model call ({prompt} prompt tokens estimated, at least {least} output "
            f"tokens) could cost ${worst:.6f}, with ${max(left, 0.0):.6f} left of the shared "
            f"budget ({', '.join(f'{s} ≤ ${v}' for s, v in limits.items())}); wait for the "
            "next day, raise the tier's limits, or use a cheaper model"
        )

    def __repr__(self) -> str:
        return f"SharedBudget(input=${self._input}/M, output=${self._output}/M)"
