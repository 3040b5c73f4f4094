"""Model prices: prefix matching of dated ids, cached tokens, unknown models."""

from __future__ import annotations

import pytest

from tether import Agent
from tether.messages import Usage
from tether.models import ModelPrice, cost_of, price_of, register_price
from tether.testing import ScriptedModel, reply

MILLION = 1_000_000


class TestPriceOf:
    def test_exact_name(self) -> None:
        assert price_of("openai:gpt-4.1-mini") == ModelPrice(0.40, 1.60, 0.10)

    @pytest.mark.parametrize(
        ("dated", "base"),
        [
            ("openai:gpt-4.1-mini-2025-04-14", "openai:gpt-4.1-mini"),
            ("openai:gpt-4.1-2025-04-14", "openai:gpt-4.1"),
            ("openai:gpt-4o-mini-2024-07-18", "openai:gpt-4o-mini"),
            ("openai:gpt-5-mini-2025-08-07", "openai:gpt-5-mini"),
            ("anthropic:claude-sonnet-4-5-20250929", "anthropic:claude-sonnet-4-5"),
            ("anthropic:claude-opus-4-1-20250805", "anthropic:claude-opus-4-1"),
            ("anthropic:claude-opus-4-20250514", "anthropic:claude-opus-4"),
        ],
    )
    def test_dated_ids_match_the_longest_prefix(self, dated: str, base: str) -> None:
        assert price_of(dated) is not None
        assert price_of(dated) == price_of(base)

    def test_longest_prefix_beats_a_shorter_one(self) -> None:
        assert price_of("openai:gpt-4.1-nano-2025-04-14") == ModelPrice(0.10, 0.40, 0.025)
        assert price_of("openai:gpt-4.1-nano") != price_of("openai:gpt-4.1")

    @pytest.mark.parametrize("name", ["local", "local:/models/qwen.gguf"])
    def test_local_is_free(self, name: str) -> None:
        assert cost_of(name, Usage(input_tokens=MILLION, output_tokens=MILLION)) == 0.0
        assert price_of(name) is not None

    @pytest.mark.parametrize("name", ["openai:unknown-model", "scripted", "mistral:large", ""])
    def test_unknown_model(self, name: str) -> None:
        assert price_of(name) is None
        assert cost_of(name, Usage(input_tokens=MILLION, output_tokens=MILLION)) == 0.0

    @pytest.mark.parametrize(
        "name", ["openai:o3-pro", "openai:gpt-5-pro", "openai:gpt-4o-audio-preview", "openai:o3x"]
    )
    def test_a_longer_name_is_another_model(self, name: str) -> None:
        # A different (often pricier) model must not be billed at its prefix's price.
        assert price_of(name) is None

    def test_latest_alias_matches(self) -> None:
        assert price_of("anthropic:claude-3-5-haiku-latest") == price_of(
            "anthropic:claude-3-5-haiku"
        )

    def test_provider_prefix_is_required(self) -> None:
        # A bare model id is not an OpenAI price.
        assert price_of("gpt-4.1-mini") is None


class TestCost:
    def test_input_and_output(self) -> None:
        usage = Usage(input_tokens=MILLION, output_tokens=MILLION)
        assert cost_of("openai:gpt-4.1-mini", usage) == pytest.approx(0.40 + 1.60)

    def test_cached_tokens_at_the_cached_rate(self) -> None:
        usage = Usage(input_tokens=1_000, output_tokens=100, cached_tokens=600)
        expected = (400 * 2.00 + 600 * 0.50 + 100 * 8.00) / MILLION
        assert cost_of("openai:gpt-4.1", usage) == pytest.approx(expected)
        # Cheaper than the same tokens uncached.
        uncached = Usage(input_tokens=1_000, output_tokens=100)
        assert cost_of("openai:gpt-4.1", usage) < cost_of("openai:gpt-4.1", uncached)

    def test_cached_tokens_never_exceed_input_tokens(self) -> None:
        usage = Usage(input_tokens=100, cached_tokens=500)
        assert cost_of("openai:gpt-4.1", usage) == pytest.approx(100 * 0.50 / MILLION)

    def test_no_cached_rate_uses_the_input_rate(self) -> None:
        price = ModelPrice(input=1.0, output=2.0)
        assert price.cost(Usage(input_tokens=MILLION, cached_tokens=MILLION)) == pytest.approx(1.0)

    def test_zero_usage_is_free(self) -> None:
        assert cost_of("openai:gpt-5", Usage()) == 0.0


class TestRegister:
    def test_register_a_new_model(self) -> None:
        name = "openai:ft-gpt-4.1-mini-acme-test"
        assert cost_of(name, Usage(input_tokens=MILLION)) == 0.0  # unknown, and remembered
        register_price(name, ModelPrice(3.0, 12.0, 1.5))
        assert price_of(name) == ModelPrice(3.0, 12.0, 1.5)
        assert price_of(name + "-2025-01-01") == ModelPrice(3.0, 12.0, 1.5)
        assert cost_of(name, Usage(input_tokens=MILLION)) == pytest.approx(3.0)

    def test_register_overrides_a_prefix_match(self) -> None:
        dated = "anthropic:claude-haiku-4-5-20991231"
        assert price_of(dated) == price_of("anthropic:claude-haiku-4-5")
        register_price(dated, ModelPrice(9.0, 9.0))
        assert price_of(dated) == ModelPrice(9.0, 9.0)
        assert price_of("anthropic:claude-haiku-4-5") == ModelPrice(1.00, 5.00, 0.10)

    async def test_a_run_uses_the_registered_price(self) -> None:
        name = "test:priced-model"
        register_price(name, ModelPrice(input=1.0, output=1.0))
        model = ScriptedModel([reply("x")], name=name, usage=Usage(input_tokens=500_000))
        result = await Agent(model=model).run("go")
        assert result.cost_usd == pytest.approx(0.5)
