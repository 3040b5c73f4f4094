"""`LogEffects`: one structured event pair per effect, bound to the run."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from typing import Any, ClassVar

from tether.messages import CallNext, ModelResponse, ToolResult
from tether.observe.logs import enabled, get_logger

__all__ = ["LogEffects", "log_retry"]


def log_retry(attempt: Any) -> None:
    """Log one retry (a `tether.policy.retry.RetryAttempt`) as an `effect.retry` event."""
    if not enabled(logging.WARNING):
        return
    get_logger().warning(
        "effect.retry",
        run_id=attempt.run.run_id,
        step=attempt.run.step,
        target=attempt.target,
        attempt=attempt.attempt,
        wait_s=round(attempt.wait, 3),
        error=type(attempt.error).__name__,
        message=str(attempt.error)[:500],
    )


class LogEffects:
    """Logs `effect.start` and `effect.end` (or `effect.error`) for every effect.

    Model events carry the model, tokens and finish reason; tool events carry the tool,
    its status and the call id. Arguments and outputs are not logged (they may hold
    personal data); the run trace keeps them.
    """

    kinds: ClassVar[frozenset[str]] = frozenset({"model", "tool"})
    __slots__ = ()

    def __call__(self, effect: Any, call_next: CallNext) -> Awaitable[Any]:
        if not enabled(logging.INFO):
            return call_next(effect)  # no frame of our own when there is nothing to log
        return self._logged(effect, call_next)

    async def _logged(self, effect: Any, call_next: CallNext) -> Any:
        log = get_logger()
        run = effect.run
        what = (
            {"model_messages": len(effect.request.messages)}
            if effect.kind == "model"
            else {"tool": effect.call.name, "call_id": effect.call.id}
        )
        log.info("effect.start", run_id=run.run_id, step=run.step, kind=effect.kind, **what)
        start = time.perf_counter()
        try:
            result = await call_next(effect)
        except BaseException as exc:
            log.warning(
                "effect.error",
                run_id=run.run_id,
                step=run.step,
                kind=effect.kind,
                error=type(exc).__name__,
                message=str(exc)[:500],
                duration_ms=round((time.perf_counter() - start) * 1000, 3),
                **what,
            )
            raise
        done: dict[str, Any] = {}
        if isinstance(result, ModelResponse):
            done = {
                "model": result.model,
                "input_tokens": result.usage.input_tokens,
                "output_tokens": result.usage.output_tokens,
                "finish_reason": result.finish_reason,
                "tool_calls": len(result.message.tool_calls),
            }
        elif isinstance(result, ToolResult):
            done = {"status": result.status}
        log.info(
            "effect.end",
            run_id=run.run_id,
            step=run.step,
            kind=effect.kind,
            duration_ms=round((time.perf_counter() - start) * 1000, 3),
            **what,
            **done,
        )
        return result
