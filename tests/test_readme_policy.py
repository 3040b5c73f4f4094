"""The README's reliability example builds, and its onion is in the documented order."""

from __future__ import annotations

import pytest

from tether import Agent, Policy, tool
from tether.guards import Critic
from tether.policy import Breaker, Budget, LoopGuard, RateLimits, Retry


@tool
async def get_order(order_id: int) -> str:
    """An order."""
    return f"order {order_id}"


@tool(retryable=False)
async def refund(order_id: int) -> str:
    """Refund an order."""
    return "refunded"


def test_the_readme_agent_builds_with_every_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    agent = Agent(
        model=["openai:gpt-4.1-mini", "anthropic:claude-haiku-4-5", "local"],
        tools=[get_order, refund],
        policy=Policy(
            retry=Retry(attempts=3, base=0.5, cap=30),
            breaker=Breaker(failures=5, window=60, cooldown=30),
            rate_limits=RateLimits(
                requests_per_minute=500, tokens_per_minute=200_000, user_requests_per_minute=20
            ),
            budget=Budget(run_usd=0.50, run_tokens=100_000),
            loop_guard=LoopGuard(repeats=3),
            timeout=120,
        ),
        critic=Critic(max_chars=1200, must_mention=["order"], banned_phrases=["as an AI"]),
    )
    spec = agent.spec()
    assert spec.model_name == "openai:gpt-4.1-mini"
    assert spec.timeout == 120
    assert spec.critic is agent.critic
    names = [type(p).__name__ for p in spec.effects.policies]
    assert names[0] == "LogEffects"
    assert names.index("BudgetPolicy") < names.index("LoopGuardPolicy")
    policy = agent.policy

    class Tier:
        name = "openai:gpt-4.1-mini"

    tier = [type(p).__name__ for p in policy.model_layers(Tier())]
    assert len(tier) == 3
    assert "Rate" in tier[0]
    assert "Breaker" in tier[1]
    assert "Retry" in tier[2]
    # refund is not retryable: only its breaker wraps it.
    [only] = [type(p).__name__ for p in policy.tool_layers(refund)]
    assert "Breaker" in only
