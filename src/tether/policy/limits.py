"""Usage limits per run: requests, tool calls and tokens."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from tether.errors import ConfigError, UsageLimitExceeded
from tether.messages import CallNext, ModelResponse, RunState

__all__ = ["UsageLimitPolicy", "UsageLimits"]


@dataclass(frozen=True, slots=True)
class UsageLimits:
    """Hard limits for one run; `None` means no limit.

    A request or tool call that would cross its limit is not made. Token limits are
    checked as each response arrives (the tokens are spent by then); to stop before
    spending, use a cost budget, which reserves the worst case first.
    """

    max_requests: int | None = None
    max_tool_calls: int | None = None
    max_input_tokens: int | None = None
    max_output_tokens: int | None = None
    max_total_tokens: int | None = None

    def __post_init__(self) -> None:
        for name in self.__slots__:
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ConfigError(f"UsageLimits.{name} must be >= 0, got {value}")

    @property
    def any(self) -> bool:
        return any(getattr(self, name) is not None for name in self.__slots__)


class UsageLimitPolicy:
    """Stops a run with `UsageLimitExceeded` before it crosses one of its `UsageLimits`."""

    kinds: ClassVar[frozenset[str]] = frozenset({"model", "tool"})
    __slots__ = ("limits",)

    def __init__(self, limits: UsageLimits) -> None:
        self.limits = limits

    async def __call__(self, effect: Any, call_next: CallNext) -> Any:
        limits = self.limits
        run: RunState = effect.run
        if effect.kind == "tool":
            # The loop counts a step's calls before dispatching them.
            if limits.max_tool_calls is not None and run.tool_calls > limits.max_tool_calls:
                raise UsageLimitExceeded(
                    f"the run reached its limit of {limits.max_tool_calls} tool calls"
                )
            return await call_next(effect)
        if limits.max_requests is not None and run.requests + 1 > limits.max_requests:
            raise UsageLimitExceeded(f"the run reached its limit of {limits.max_requests} requests")
        response: ModelResponse = await call_next(effect)
        _check_tokens(limits, effect.run, response)
        return response


def _check_tokens(limits: UsageLimits, run: RunState, response: ModelResponse) -> None:
    spent = run.usage + response.usage
    for limit, value, what in (
        (limits.max_input_tokens, spent.input_tokens, "input tokens"),
        (limits.max_output_tokens, spent.output_tokens, "output tokens"),
        (limits.max_total_tokens, spent.total_tokens, "tokens"),
    ):
        if limit is not None and value > limit:
            exc = UsageLimitExceeded(
                f"the run used {value} {what}, over its limit of {limit}; raise the limit "
                "or shorten the conversation"
            )
            exc.response = response  # the loop still counts what it cost
            raise exc
