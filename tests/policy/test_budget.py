"""`Budget` driven with a fake `call_next` and the loop's own spending: worst-case checks,
shrinking `max_tokens`, reservations, and never crossing the budget."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tether.errors import BudgetExceeded, ConfigError, ModelConnectionError
from tether.messages import (
    AssistantMessage,
    Message,
    ModelEffect,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    RunState,
    TextPart,
    ToolCall,
    ToolEffect,
    ToolResult,
    Usage,
    UserMessage,
)
from tether.models.pricing import ModelPrice
from tether.policy.budget import Budget
from tether.policy.tokens import estimate_prompt_tokens

PRICES = {"test:cheap": ModelPrice(1.0, 2.0, 0.5), "test:dear": ModelPrice(3.0, 15.0, 0.3)}
CHAIN = ["test:cheap", "test:dear"]
REQUEST = ModelRequest(messages=[UserMessage(content="hello")])
PROMPT = estimate_prompt_tokens(REQUEST)


def price(model: str) -> ModelPrice | None:
    return PRICES.get(model)


def worst_usd(prompt: int, output: int) -> float:
    """At the chain's highest prices: 3 $/M in, 15 $/M out."""
    return (prompt * 3.0 + output * 15.0) / 1e6


class Next:
    """A fake rest-of-the-onion that records the effects it got and answers with `usage`."""

    def __init__(self, usage: Usage | None = None, model: str = "test:dear") -> None:
        self.usage = usage or Usage()
        self.model = model
        self.effects: list[Any] = []
        self.error: BaseException | None = None
        self.gate: asyncio.Event | None = None

    async def __call__(self, effect: Any) -> Any:
        self.effects.append(effect)
        if self.gate is not None:
            await self.gate.wait()
        if self.error is not None:
            raise self.error
        if isinstance(effect, ToolEffect):
            return ToolResult.of(effect.call, "ok")
        return ModelResponse(message=AssistantMessage(), usage=self.usage, model=self.model)

    @property
    def max_tokens(self) -> int | None:
        return self.effects[-1].request.settings.max_tokens  # type: ignore[no-any-return]


def policy_of(budget: Budget) -> Any:
    policy = budget.policy(price, models=CHAIN)
    assert policy is not None
    return policy


def spend(run: RunState, response: ModelResponse) -> None:
    """What the loop does after a model call."""
    found = PRICES[response.model]
    run.spend(response.usage, found.cost(response.usage))


def run_state(**spent: Any) -> RunState:
    return RunState(run_id="r", agent="a", **spent)


class TestConfig:
    def test_no_limit_builds_no_policy(self) -> None:
        assert Budget().policy(price, models=CHAIN) is None

    def test_an_unknown_price_names_register_price(self) -> None:
        with pytest.raises(ConfigError, match=r"'test:mystery'.*tether\.models\.register_price"):
            Budget(run_usd=1.0).policy(price, models=["test:cheap", "test:mystery"])

    def test_a_cost_budget_needs_the_models(self) -> None:
        with pytest.raises(ConfigError, match="models"):
            Budget(run_usd=1.0).policy(price)

    def test_other_budgets_need_no_price(self) -> None:
        assert Budget(run_tokens=10).policy(lambda _: None, models=["x:y"]) is not None

    @pytest.mark.parametrize(
        "options",
        [
            {"run_usd": -1},
            {"run_usd": float("nan")},
            {"run_tokens": -5},
            {"run_requests": 1.5},
            {"default_max_tokens": 0},
            {"min_output_tokens": 0},
        ],
    )
    def test_bad_values_are_config_errors(self, options: dict[str, Any]) -> None:
        with pytest.raises(ConfigError, match="Budget"):
            Budget(**options)

    def test_tool_calls_join_the_tool_chain_only_when_budgeted(self) -> None:
        assert "tool" not in policy_of(Budget(run_usd=1.0)).kinds
        assert "tool" in policy_of(Budget(run_tool_calls=3)).kinds


class TestCost:
    async def test_a_call_that_fits_passes_unchanged(self) -> None:
        nxt = Next()
        effect = ModelEffect(run_state(), REQUEST)
        await policy_of(Budget(run_usd=1.0))(effect, nxt)
        assert nxt.effects == [effect]

    async def test_max_tokens_shrinks_to_what_is_left(self) -> None:
        # Room for the prompt and exactly 1000 output tokens at the dear prices.
        budget = Budget(run_usd=worst_usd(PROMPT, 1000) + 0.4e-6)
        nxt, on_text = Next(), print
        request = REQUEST.model_copy(
            update={"settings": ModelSettings(max_tokens=2000, temperature=0.3)}
        )
        effect = ModelEffect(run_state(), request, on_text)
        await policy_of(budget)(effect, nxt)
        sent = nxt.effects[0]
        assert sent.request.settings == ModelSettings(max_tokens=1000, temperature=0.3)
        assert sent.request.messages == request.messages
        assert sent.run is effect.run
        assert sent.on_text is on_text

    async def test_no_max_tokens_counts_the_default(self) -> None:
        budget = Budget(run_usd=worst_usd(PROMPT, 1000), default_max_tokens=800)
        nxt = Next()
        await policy_of(budget)(ModelEffect(run_state(), REQUEST), nxt)
        assert nxt.max_tokens is None  # 800 fit: the request is left alone

    async def test_refused_before_the_call_when_the_minimum_does_not_fit(self) -> None:
        budget = Budget(run_usd=0.10, min_output_tokens=256)
        left = worst_usd(PROMPT, 255)
        run = run_state(cost_usd=0.10 - left)
        nxt = Next()
        with pytest.raises(BudgetExceeded, match=r"Budget\(run_usd=0\.1\)") as caught:
            await policy_of(budget)(ModelEffect(run, REQUEST), nxt)
        assert nxt.effects == []
        assert "256 output tokens" in str(caught.value)

    async def test_the_minimum_itself_is_allowed(self) -> None:
        budget = Budget(run_usd=0.10, min_output_tokens=256)
        run = run_state(cost_usd=0.10 - worst_usd(PROMPT, 256) - 1e-12)
        nxt = Next()
        await policy_of(budget)(ModelEffect(run, REQUEST), nxt)
        assert nxt.max_tokens == 256

    async def test_priced_at_the_dearest_tier_of_the_chain(self) -> None:
        cheap_only = Budget(run_usd=worst_usd(PROMPT, 600)).policy(price, models=["test:cheap"])
        whole_chain = policy_of(Budget(run_usd=worst_usd(PROMPT, 600)))
        cheap, whole = Next(), Next()
        assert cheap_only is not None
        await cheap_only(ModelEffect(run_state(), REQUEST), cheap)
        await whole_chain(ModelEffect(run_state(), REQUEST), whole)
        assert cheap.max_tokens is None  # 4096 at 2 $/M fit what 600 cost at 15 $/M
        assert whole.max_tokens == 600

    async def test_concurrent_calls_count_each_others_reservations(self) -> None:
        budget = Budget(run_usd=worst_usd(PROMPT, 4096) + worst_usd(PROMPT, 1000))
        policy, nxt, run = policy_of(budget), Next(), run_state()
        nxt.gate = asyncio.Event()
        first = asyncio.ensure_future(policy(ModelEffect(run, REQUEST), nxt))
        second = asyncio.ensure_future(policy(ModelEffect(run, REQUEST), nxt))
        await asyncio.sleep(0)
        nxt.gate.set()
        await asyncio.gather(first, second)
        assert [e.request.settings.max_tokens for e in nxt.effects] == [None, 1000]

    async def test_a_reservation_is_released_when_the_call_fails(self) -> None:
        budget = Budget(run_usd=worst_usd(PROMPT, 4096))
        policy, nxt, run = policy_of(budget), Next(), run_state()
        nxt.error = ModelConnectionError("down")
        with pytest.raises(ModelConnectionError):
            await policy(ModelEffect(run, REQUEST), nxt)
        nxt.error = None
        await policy(ModelEffect(run, REQUEST), nxt)
        assert nxt.max_tokens is None  # the whole budget was there again

    async def test_the_next_call_counts_the_reported_tokens_of_the_last(self) -> None:
        # A provider that bills far more than the estimate: its count sets the next prompt.
        budget = Budget(run_usd=1.0)
        policy, run = policy_of(budget), run_state()
        nxt = Next(Usage(input_tokens=20_000, output_tokens=10))
        response = await policy(ModelEffect(run, REQUEST), nxt)
        spend(run, response)
        grown = ModelRequest(messages=[*REQUEST.messages, response.message])
        left = 1.0 - run.cost_usd
        room = int((left * 1e6 - 20_010 * 3.0) / 15.0)  # at least the anchored prompt
        await policy(ModelEffect(run, grown), nxt)
        assert nxt.max_tokens is None or nxt.max_tokens <= room


class TestTokens:
    async def test_max_tokens_shrinks_to_the_tokens_left(self) -> None:
        budget = Budget(run_tokens=PROMPT + 600 + 1000)
        nxt = Next()
        await policy_of(budget)(
            ModelEffect(run_state(input_tokens=500, output_tokens=100), REQUEST), nxt
        )
        assert nxt.max_tokens == 1000

    async def test_refused_when_the_minimum_does_not_fit(self) -> None:
        budget = Budget(run_tokens=PROMPT + 255)
        nxt = Next()
        with pytest.raises(BudgetExceeded, match="run_tokens"):
            await policy_of(budget)(ModelEffect(run_state(), REQUEST), nxt)
        assert nxt.effects == []


class TestCounts:
    async def test_requests_up_to_the_budget(self) -> None:
        policy, nxt = policy_of(Budget(run_requests=2)), Next()
        await policy(ModelEffect(run_state(requests=1), REQUEST), nxt)
        with pytest.raises(BudgetExceeded, match="2 requests"):
            await policy(ModelEffect(run_state(requests=2), REQUEST), nxt)
        assert len(nxt.effects) == 1

    async def test_requests_in_flight_count(self) -> None:
        policy, nxt, run = policy_of(Budget(run_requests=1)), Next(), run_state()
        nxt.gate = asyncio.Event()
        first = asyncio.ensure_future(policy(ModelEffect(run, REQUEST), nxt))
        await asyncio.sleep(0)
        with pytest.raises(BudgetExceeded):
            await policy(ModelEffect(run, REQUEST), nxt)
        nxt.gate.set()
        await first

    async def test_tool_calls_up_to_the_budget(self) -> None:
        # The loop counts a step's calls before dispatching them.
        policy, nxt = policy_of(Budget(run_tool_calls=2)), Next()
        call = ToolCall(id="c", name="t")
        await policy(ToolEffect(run_state(tool_calls=2), call, 0, {}), nxt)
        with pytest.raises(BudgetExceeded, match="2 tool calls"):
            await policy(ToolEffect(run_state(tool_calls=3), call, 0, {}), nxt)
        assert len(nxt.effects) == 1


# --- never crossed: random conversations, responses and usage --------------------------


class Provider:
    """Bills a share of the estimated prompt and writes a share of `max_tokens`: what a
    real provider may do (its tokenizer counts no more than the estimate)."""

    def __init__(
        self, budget: Budget, billed: float, written: float, cached: float, model: str
    ) -> None:
        self.budget, self.model = budget, model
        self.billed, self.written, self.cached = billed, written, cached

    async def __call__(self, effect: ModelEffect) -> ModelResponse:
        asked = effect.request.settings.max_tokens or self.budget.default_max_tokens
        prompt = int(estimate_prompt_tokens(effect.request) * self.billed)
        usage = Usage(
            input_tokens=prompt,
            output_tokens=int(asked * self.written),
            cached_tokens=int(prompt * self.cached),
        )
        message = AssistantMessage(parts=[TextPart(text="ok")])
        return ModelResponse(message=message, usage=usage, model=self.model)


_STEP = st.tuples(
    st.integers(0, 3000),  # characters the step adds to the conversation
    st.one_of(st.none(), st.integers(1, 8000)),  # the request's max_tokens
    st.floats(0, 1),  # share of the estimated prompt the provider bills
    st.floats(0, 1),  # share of max_tokens the model writes
    st.floats(0, 1),  # share of the prompt served from the cache
    st.sampled_from(CHAIN),  # the tier that answers
)


@settings(max_examples=300, deadline=None)
@given(
    run_usd=st.floats(0, 0.5),
    run_tokens=st.one_of(st.none(), st.integers(0, 200_000)),
    min_output=st.integers(1, 1024),
    steps=st.lists(_STEP, min_size=1, max_size=30),
)
def test_a_run_never_crosses_its_budget(
    run_usd: float, run_tokens: int | None, min_output: int, steps: list[Any]
) -> None:
    budget = Budget(run_usd=run_usd, run_tokens=run_tokens, min_output_tokens=min_output)
    policy, run = policy_of(budget), run_state()
    messages: list[Message] = [UserMessage(content="start")]

    async def scenario() -> None:
        for added, max_tokens, billed, written, cached, model in steps:
            messages.append(UserMessage(content="x1 " * (added // 3)))
            request = ModelRequest(
                messages=list(messages), settings=ModelSettings(max_tokens=max_tokens)
            )

            provider = Provider(budget, billed, written, cached, model)
            try:
                response = await policy(ModelEffect(run, request), provider)
            except BudgetExceeded:
                return
            spend(run, response)
            messages.append(response.message)
            assert run.cost_usd <= run_usd * (1 + 1e-9) + 1e-15
            if run_tokens is not None:
                assert run.input_tokens + run.output_tokens <= run_tokens

    asyncio.run(scenario())
