"""`UsageLimitPolicy` driven with a fake `call_next`, and `Policy` validation."""

from __future__ import annotations

from typing import Any

import pytest

from tether import ConfigError, Policy, UsageLimitExceeded, UsageLimits
from tether.messages import (
    AssistantMessage,
    ModelEffect,
    ModelRequest,
    ModelResponse,
    RunState,
    ToolCall,
    ToolEffect,
    ToolResult,
    Usage,
    UserMessage,
)
from tether.models import price_of
from tether.policy import UsageLimitPolicy

REQUEST = ModelRequest(messages=[UserMessage(content="hi")])


class Next:
    """A fake rest-of-the-onion that counts calls and answers with fixed usage."""

    def __init__(self, usage: Usage | None = None) -> None:
        self.calls = 0
        self.usage = usage or Usage(input_tokens=10, output_tokens=5)

    async def __call__(self, effect: Any) -> Any:
        self.calls += 1
        if isinstance(effect, ToolEffect):
            return ToolResult(call_id=effect.call.id, name=effect.name, content="ok")
        return ModelResponse(message=AssistantMessage(), usage=self.usage)


def state_with(usage: Usage) -> RunState:
    return RunState(
        run_id="r",
        agent="a",
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cached_tokens=usage.cached_tokens,
        requests=usage.requests,
        tool_calls=usage.tool_calls,
    )


def model_effect(usage: Usage) -> ModelEffect:
    return ModelEffect(state_with(usage), REQUEST)


def tool_effect(usage: Usage) -> ToolEffect:
    return ToolEffect(state_with(usage), ToolCall(id="c", name="t"), 0, {})


class TestRequests:
    async def test_allows_up_to_the_limit(self) -> None:
        policy, nxt = UsageLimitPolicy(UsageLimits(max_requests=2)), Next()
        await policy(model_effect(Usage(requests=1)), nxt)
        assert nxt.calls == 1

    async def test_refuses_before_calling(self) -> None:
        policy, nxt = UsageLimitPolicy(UsageLimits(max_requests=2)), Next()
        with pytest.raises(UsageLimitExceeded, match="limit of 2 requests"):
            await policy(model_effect(Usage(requests=2)), nxt)
        assert nxt.calls == 0

    async def test_zero_requests_refuses_the_first(self) -> None:
        policy, nxt = UsageLimitPolicy(UsageLimits(max_requests=0)), Next()
        with pytest.raises(UsageLimitExceeded):
            await policy(model_effect(Usage()), nxt)
        assert nxt.calls == 0


class TestToolCalls:
    async def test_counted_calls_within_the_limit_run(self) -> None:
        # The loop counts a step's calls before dispatching them.
        policy, nxt = UsageLimitPolicy(UsageLimits(max_tool_calls=3)), Next()
        await policy(tool_effect(Usage(tool_calls=3)), nxt)
        assert nxt.calls == 1

    async def test_calls_past_the_limit_are_not_made(self) -> None:
        policy, nxt = UsageLimitPolicy(UsageLimits(max_tool_calls=3)), Next()
        with pytest.raises(UsageLimitExceeded, match="3 tool calls"):
            await policy(tool_effect(Usage(tool_calls=4)), nxt)
        assert nxt.calls == 0

    async def test_request_limit_does_not_apply_to_tools(self) -> None:
        policy, nxt = UsageLimitPolicy(UsageLimits(max_requests=1)), Next()
        await policy(tool_effect(Usage(requests=5, tool_calls=5)), nxt)
        assert nxt.calls == 1


class TestTokens:
    @pytest.mark.parametrize(
        ("limits", "ok"),
        [
            (UsageLimits(max_input_tokens=20), True),
            (UsageLimits(max_input_tokens=19), False),
            (UsageLimits(max_output_tokens=10), True),
            (UsageLimits(max_output_tokens=9), False),
            (UsageLimits(max_total_tokens=30), True),
            (UsageLimits(max_total_tokens=29), False),
        ],
    )
    async def test_checked_on_the_response(self, limits: UsageLimits, ok: bool) -> None:
        # Spent before: 10 in, 5 out; the response adds the same.
        policy, nxt = UsageLimitPolicy(limits), Next()
        effect = model_effect(Usage(input_tokens=10, output_tokens=5, requests=1))
        if ok:
            await policy(effect, nxt)
        else:
            with pytest.raises(UsageLimitExceeded) as info:
                await policy(effect, nxt)
            # The response that crossed the limit is kept so its tokens are counted.
            assert info.value.response is not None
            assert info.value.response.usage == nxt.usage
        assert nxt.calls == 1

    async def test_no_limits_passes_through(self) -> None:
        policy, nxt = UsageLimitPolicy(UsageLimits()), Next(Usage(input_tokens=10**9))
        await policy(model_effect(Usage(input_tokens=10**9)), nxt)
        assert nxt.calls == 1


class TestDeclaration:
    def test_limits_any(self) -> None:
        assert not UsageLimits().any
        assert UsageLimits(max_total_tokens=1).any

    @pytest.mark.parametrize(
        "field",
        [
            "max_requests",
            "max_tool_calls",
            "max_input_tokens",
            "max_output_tokens",
            "max_total_tokens",
        ],
    )
    def test_negative_limits_are_rejected(self, field: str) -> None:
        with pytest.raises(ConfigError, match=field):
            UsageLimits(**{field: -1})

    def test_policy_layers(self) -> None:
        assert Policy(loop_guard=None).run_layers(["m"], price_of) == []
        [layer] = Policy(limits=UsageLimits(max_requests=1), loop_guard=None).run_layers(
            ["m"], price_of
        )
        assert isinstance(layer, UsageLimitPolicy)

        class Mine:
            kinds = frozenset({"model"})

            async def __call__(self, effect: Any, call_next: Any) -> Any:
                return await call_next(effect)

        mine = Mine()
        layers = Policy(
            limits=UsageLimits(max_requests=1), loop_guard=None, extra=[mine]
        ).run_layers(["m"], price_of)
        assert isinstance(layers[0], UsageLimitPolicy)
        assert layers[1] is mine

    @pytest.mark.parametrize(
        ("kwargs", "match"),
        [({"max_steps": 0}, "max_steps"), ({"output_retries": -1}, "output_retries")],
    )
    def test_bad_policy_values(self, kwargs: dict[str, int], match: str) -> None:
        with pytest.raises(ConfigError, match=match):
            Policy(**kwargs)  # type: ignore[arg-type]
