"""Prices of common models, USD per million tokens, and the cost of a response.

Dated variants (`gpt-4.1-mini-2025-04-14`, `claude-sonnet-4-5-20250929`) and `-latest`
aliases match their base name; nothing else does, so `o3-pro` is never billed as `o3`.
Register prices for other models with `register_price`. Prices as published by OpenAI
and Anthropic in 2025; check them against your invoice.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from tether.messages import Usage

__all__ = ["ModelPrice", "cost_of", "price_of", "register_price"]


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """USD per million tokens. `cached_input` applies to prompt-cache hits."""

    input: float
    output: float
    cached_input: float | None = None

    def cost(self, usage: Usage) -> float:
        cached = min(usage.cached_tokens, usage.input_tokens)
        cached_rate = self.input if self.cached_input is None else self.cached_input
        return (
            (usage.input_tokens - cached) * self.input
            + cached * cached_rate
            + usage.output_tokens * self.output
        ) / 1_000_000


_PRICES: dict[str, ModelPrice] = {
    # OpenAI
    "openai:gpt-5": ModelPrice(1.25, 10.00, 0.125),
    "openai:gpt-5-mini": ModelPrice(0.25, 2.00, 0.025),
    "openai:gpt-5-nano": ModelPrice(0.05, 0.40, 0.005),
    "openai:gpt-4.1": ModelPrice(2.00, 8.00, 0.50),
    "openai:gpt-4.1-mini": ModelPrice(0.40, 1.60, 0.10),
    "openai:gpt-4.1-nano": ModelPrice(0.10, 0.40, 0.025),
    "openai:gpt-4o": ModelPrice(2.50, 10.00, 1.25),
    "openai:gpt-4o-mini": ModelPrice(0.15, 0.60, 0.075),
    "openai:o3": ModelPrice(2.00, 8.00, 0.50),
    "openai:o3-mini": ModelPrice(1.10, 4.40, 0.55),
    "openai:o4-mini": ModelPrice(1.10, 4.40, 0.275),
    # Anthropic (cache writes are billed at the input rate here: a slight undercount)
    "anthropic:claude-opus-4-5": ModelPrice(5.00, 25.00, 0.50),
    "anthropic:claude-opus-4-1": ModelPrice(15.00, 75.00, 1.50),
    "anthropic:claude-opus-4": ModelPrice(15.00, 75.00, 1.50),
    "anthropic:claude-sonnet-4-5": ModelPrice(3.00, 15.00, 0.30),
    "anthropic:claude-sonnet-4": ModelPrice(3.00, 15.00, 0.30),
    "anthropic:claude-3-7-sonnet": ModelPrice(3.00, 15.00, 0.30),
    "anthropic:claude-haiku-4-5": ModelPrice(1.00, 5.00, 0.10),
    "anthropic:claude-3-5-haiku": ModelPrice(0.80, 4.00, 0.08),
    # Runs on your own CPU.
    "local": ModelPrice(0.0, 0.0, 0.0),
}
_FOUND: dict[str, ModelPrice | None] = {}
# What may follow a known name and still be the same model at the same price.
_VARIANT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest)?")


def register_price(model: str, price: ModelPrice) -> None:
    """Set the price of `model` (`provider:model`), e.g. a fine-tune or a private deployment."""
    _PRICES[model] = price
    _FOUND.clear()


def price_of(model: str) -> ModelPrice | None:
    """The price of `model` or of the model it is a dated variant of; `None` if unknown."""
    try:
        return _FOUND[model]
    except KeyError:
        pass
    best: str | None = None
    for known in _PRICES:
        if (
            model.startswith(known)
            and _VARIANT.fullmatch(model, len(known))
            and (best is None or len(known) > len(best))
        ):
            best = known
    if best is None and model.startswith("local"):
        best = "local"
    found = _PRICES[best] if best is not None else None
    _FOUND[model] = found
    return found


def cost_of(model: str, usage: Usage) -> float:
    """USD for `usage` on `model`; 0.0 when its price is unknown."""
    price = price_of(model)
    return price.cost(usage) if price is not None else 0.0
