"""The typed error hierarchy.

Two families, as in Pydantic AI: developer mistakes (`ConfigError` and its kin), raised
at construction or resolution time, and run outcomes (`ModelError`, `ToolError`,
`RunStopped`), raised while a run executes. Every message says what to do next.

Provider SDK errors are translated into `ModelError` subclasses at the adapter
boundary, so policies classify tether types only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tether.messages import RunResult

__all__ = [
    "BudgetExceeded",
    "CircuitOpen",
    "ConfigError",
    "LoopDetected",
    "MaxStepsExceeded",
    "ModelAuthError",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelRateLimited",
    "ModelResponseError",
    "ModelTimeout",
    "OutcomeUnknown",
    "OutputValidationError",
    "RateLimited",
    "RunStopped",
    "RunTimeout",
    "TetherError",
    "ToolArgumentsInvalid",
    "ToolError",
    "ToolExecutionError",
    "ToolNotFound",
    "ToolTimeout",
    "UsageLimitExceeded",
]


class TetherError(Exception):
    """Base of every error tether raises."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Durable runs journal a step's error (pickled) and raise it again on replay;
        # the default reduce calls `cls(*args)`, which keyword-only arguments break.
        return (_rebuild, (type(self), self.args, self.__dict__))


def _rebuild(cls: type[TetherError], args: tuple[Any, ...], state: dict[str, Any]) -> TetherError:
    error = cls.__new__(cls)
    error.args = args
    error.__dict__.update(state)
    return error


# --- developer mistakes -----------------------------------------------------------------


class ConfigError(TetherError):
    """The agent, a tool, a model name or a setting is declared wrong.

    Raised before any effect runs; the message names the bad value and the accepted form.
    """


# --- model calls --------------------------------------------------------------------------


class ModelError(TetherError):
    """A model call failed.

    `retryable` tells the retry policy whether another attempt may succeed (rate limits,
    5xx, timeouts, dropped connections) or is pointless (bad request, bad key).
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        model: str | None = None,
        retryable: bool | None = None,
        status_code: int | None = None,
        retry_after: float | None = None,
        body: Any = None,
    ) -> None:
        super().__init__(message)
        self.model = model
        if retryable is not None:
            self.retryable = retryable
        self.status_code = status_code
        self.retry_after = retry_after
        self.body = body


class ModelHTTPError(ModelError):
    """The provider answered with an HTTP error status.

    Retryable for 408, 409, 429 and 5xx; `retry_after` holds the provider's
    `Retry-After` in seconds when it sent one.
    """


class ModelRateLimited(ModelHTTPError):
    """The provider answered 429: too many requests or tokens. Retryable after `retry_after`."""

    retryable = True


class ModelAuthError(ModelHTTPError):
    """The provider rejected the API key (401/403). Check the key in your settings."""

    retryable = False


class ModelConnectionError(ModelError):
    """The provider could not be reached. Check the base URL and that the server is up."""

    retryable = True


class ModelTimeout(ModelError):
    """The model call took longer than its timeout."""

    retryable = True


class ModelResponseError(ModelError):
    """The provider answered with something tether cannot read (not a transport error)."""

    retryable = False


# --- tool calls ---------------------------------------------------------------------------


class ToolError(TetherError):
    """A tool call failed; the run goes on and the model sees `message` as an error result.

    Raise it from inside a tool to send the model a correction it can act on, e.g.
    ``raise ToolError("order 42 does not exist; list orders first")``.
    """

    retryable: bool = False

    def __init__(self, message: str, *, tool: str | None = None) -> None:
        super().__init__(message)
        self.tool = tool


class ToolNotFound(ToolError):
    """The model called a tool that the agent does not have."""


class ToolArgumentsInvalid(ToolError):
    """The model's arguments are not valid JSON or do not match the tool's schema."""


class ToolTimeout(ToolError):
    """The tool ran past its timeout and was cancelled."""

    retryable = True


class ToolExecutionError(ToolError):
    """The tool raised an exception; `__cause__` holds it."""


# --- run outcomes ---------------------------------------------------------------------------


class RunStopped(TetherError):
    """The run stopped before a final answer. `result` holds the partial run."""

    def __init__(self, message: str, *, result: RunResult | None = None) -> None:
        super().__init__(message)
        self.result = result


class MaxStepsExceeded(RunStopped):
    """The run took `max_steps` steps without a final answer.

    Raise `max_steps`, or look at `result.messages` for a tool loop.
    """


class UsageLimitExceeded(RunStopped):
    """The run would cross one of its usage limits (requests, tool calls or tokens)."""

    response: Any = None
    """For a token limit: the `ModelResponse` that crossed it (its tokens were spent)."""


class OutputValidationError(RunStopped):
    """The final answer did not validate against the output type after every re-ask."""


class BudgetExceeded(RunStopped):
    """The next model call could cost more than what is left of the run's budget.

    Checked before the call with its worst case (prompt plus max output tokens at the
    model's price), so the budget is never crossed. Raise the budget, lower
    `max_tokens`, or put a cheaper model in the chain.
    """


class LoopDetected(RunStopped):
    """The model kept repeating the same tool calls after being told it was looping."""


class OutcomeUnknown(RunStopped):
    """A side-effecting tool was interrupted (a crash) after it started and before its
    result was recorded, and it does not dedupe on its idempotency key: it may or may not
    have taken effect. The run stops for a human to find out and reconcile it:
    `tether resolve RUN_ID --step N --result '...'` (what happened) or `--retry`.
    """

    def __init__(
        self,
        message: str,
        *,
        run_id: str,
        step_id: int,
        tool: str,
        arguments: Any = None,
        result: RunResult | None = None,
    ) -> None:
        super().__init__(message, result=result)
        self.run_id = run_id
        self.step_id = step_id
        self.tool = tool
        self.arguments = arguments


class RunTimeout(RunStopped):
    """The run took longer than its wall-clock limit (`Policy(timeout=...)`)."""


class RateLimited(RunStopped):
    """A rate limit would have been crossed and waiting for it was not allowed (or too long).

    `retry_after` says how long until the limit would allow the call.
    """

    def __init__(
        self, message: str, *, retry_after: float | None = None, result: RunResult | None = None
    ) -> None:
        super().__init__(message, result=result)
        self.retry_after = retry_after


# --- availability -----------------------------------------------------------------------------


class CircuitOpen(TetherError):
    """A model deployment or tool failed too often recently; calls fail fast until it cools down.

    A fallback chain moves on to its next tier at once; a tool without a fallback answers
    the model with a `degraded` result. `retry_after` is the time left in the cool-down.
    """

    def __init__(self, message: str, *, target: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.target = target
        self.retry_after = retry_after
