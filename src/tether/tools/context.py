"""`RunContext`: what a tool may know about the run that called it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

DepsT = TypeVar("DepsT")

__all__ = ["RunContext"]


@dataclass(slots=True, frozen=True)
class RunContext(Generic[DepsT]):
    """Handed to a tool that declares a parameter annotated `RunContext`.

    The parameter is injected by tether and left out of the tool's JSON schema.

    Example:
        ```python
        @tool
        async def refund(ctx: RunContext[Payments], order_id: int) -> str:
            return await ctx.deps.refund(order_id, idempotency_key=ctx.idempotency_key)
        ```
    """

    run_id: str
    step: int
    """The step (1-based) whose model response asked for this call."""
    call_id: str
    """The provider's id for this tool call."""
    call_index: int
    """Position of this call among the calls of its step (0-based)."""
    user: str | None
    deps: DepsT

    @property
    def idempotency_key(self) -> str:
        """Stable for this call across retries, crashes and replays: run, step, call index."""
        return f"{self.run_id}:{self.step}:{self.call_index}"
