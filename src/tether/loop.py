"""The control loop: the only place that decides what happens next.

    while not done:
        response = await effects.model(request)
        if no tool calls: finish (validate the output, re-ask if it is bad)
        results = await effects.tool(call) for each call, concurrently

It takes a resolved `RunSpec`, never an `Agent`, and never knows whether effects run in
memory or durably: that is decided by the policies inside `spec.effects`.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tether.effects import Effects
from tether.errors import (
    BudgetExceeded,
    LoopDetected,
    MaxStepsExceeded,
    OutcomeUnknown,
    OutputValidationError,
    RateLimited,
    RunStopped,
    RunTimeout,
    ToolError,
    UsageLimitExceeded,
)
from tether.messages import (
    AssistantMessage,
    Message,
    ModelEffect,
    ModelRequest,
    ModelResponse,
    ModelSettings,
    RunResult,
    RunState,
    RunStatus,
    SystemMessage,
    ToolCall,
    ToolDefinition,
    ToolEffect,
    ToolResult,
    UserMessage,
    construct,
    share_fields_sets,
)
from tether.models.pricing import cost_of
from tether.observe import enabled, get_logger
from tether.tools import OUTPUT_TOOL_NAME, OutputTool, ToolSet, render_output

__all__ = [
    "Event",
    "ModelResponded",
    "RunCompleted",
    "RunSpec",
    "RunStarted",
    "StepStarted",
    "TextDelta",
    "ToolCalled",
    "ToolReturned",
    "run_loop",
]


# --- events, yielded by Agent.stream in the order they happen ---------------------------


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    agent: str


@dataclass(frozen=True, slots=True)
class StepStarted:
    step: int


@dataclass(frozen=True, slots=True)
class TextDelta:
    """A piece of the model's text, as the provider streams it."""

    step: int
    text: str


@dataclass(frozen=True, slots=True)
class ModelResponded:
    step: int
    response: ModelResponse
    duration_s: float


@dataclass(frozen=True, slots=True)
class ToolCalled:
    step: int
    call: ToolCall


@dataclass(frozen=True, slots=True)
class ToolReturned:
    step: int
    result: ToolResult
    duration_s: float


@dataclass(frozen=True, slots=True)
class RunCompleted:
    result: RunResult


Event = (
    RunStarted | StepStarted | TextDelta | ModelResponded | ToolCalled | ToolReturned | RunCompleted
)
Sink = Callable[[Event], None]


class Reviewer(Protocol):
    """What the loop needs of an output critic (`tether.guards.Critic` is one)."""

    max_revisions: int

    async def assess(self, text: str) -> Sequence[str]: ...

    def revise_instruction(self, issues: Sequence[str]) -> str: ...


@dataclass(frozen=True, slots=True)
class RunSpec:
    """Everything a run needs, resolved once per agent (and model)."""

    name: str
    model_name: str
    effects: Effects
    tools: ToolSet
    instructions: str | None
    output: OutputTool | None
    settings: ModelSettings
    max_steps: int
    output_retries: int
    critic: Reviewer | None = None
    timeout: float | None = None
    """Wall-clock seconds for the whole run."""

    @property
    def tool_definitions(self) -> list[ToolDefinition]:
        if self.output is None:
            return self.tools.definitions
        return [*self.tools.definitions, self.output.definition]


_STATUS: dict[type[RunStopped], RunStatus] = {
    MaxStepsExceeded: "max_steps",
    UsageLimitExceeded: "usage_limit",
    OutputValidationError: "output_invalid",
    BudgetExceeded: "budget",
    LoopDetected: "loop",
    RunTimeout: "timeout",
    RateLimited: "rate_limited",
    OutcomeUnknown: "outcome_unknown",
}


class _Run(RunState):
    """One run: the `RunState` that policies see, and what only the loop needs.

    One object rather than two, and short-lived: with thousands of runs in flight,
    every object a run holds is one more for the cyclic garbage collector to walk.
    """

    __slots__ = ("definitions", "messages", "output_attempts", "revisions", "sink", "spec")

    def __init__(
        self,
        spec: RunSpec,
        messages: list[Message],
        sink: Sink | None,
        *,
        run_id: str,
        user: str | None,
        deps: Any,
        tenant: str | None,
    ) -> None:
        super().__init__(
            run_id=run_id,
            agent=spec.name,
            user=user,
            deps=deps,
            tenant=tenant,
            started=time.perf_counter(),
        )
        self.spec = spec
        self.messages = messages
        """The conversation. Once handed to a model request it is never changed: the
        next message goes to a copy (so a policy may keep the request as it was sent)."""
        self.sink = sink
        self.definitions = spec.tool_definitions
        self.output_attempts = 0
        self.revisions = 0

    async def run(self) -> RunResult:
        """The whole run: its steps until a final answer, its logs and its events.

        However the run ends, it is logged; an error carries the partial run on
        `.result`. Steps and bookkeeping share this one coroutine: with thousands of
        runs in flight, each frame a run keeps is one more object for the collector.
        """
        spec, sink = self.spec, self.sink
        output = spec.output
        tool_choice: Any = "required" if output is not None else "auto"
        logged = enabled(logging.INFO)
        if logged:
            get_logger().info(
                "run.start",
                run_id=self.run_id,
                agent=spec.name,
                model=spec.model_name,
                user=self.user,
            )
        if sink is not None:
            sink(RunStarted(self.run_id, spec.name))
        result: RunResult | None = None
        try:
            while result is None:
                if self.step >= spec.max_steps:
                    raise MaxStepsExceeded(
                        f"the run took {spec.max_steps} steps without a final answer; raise "
                        "Policy(max_steps=...) or check the messages for a tool loop"
                    )
                self.step += 1
                step = self.step
                if sink is not None:
                    sink(StepStarted(step))
                started = time.perf_counter() if sink is not None else 0.0
                try:
                    # The response goes straight to `_took`: a local here would keep it
                    # (and its dict and fields-set) alive through the next model call.
                    message = self._took(
                        step,
                        started,
                        await spec.effects.model(self._model_effect(step, tool_choice)),
                    )
                except UsageLimitExceeded as exc:
                    if exc.response is not None:  # a token limit: the tokens were spent
                        self._spend(exc.response)
                    raise
                calls = message.tool_calls
                if output is not None:
                    final = self._final_output(output, message, calls)
                    if final is not _NO_OUTPUT:
                        result = await self._finish(final, calls)  # None: revise
                        continue
                elif not calls:
                    result = await self._finish(message.text, calls)
                    continue
                if calls:
                    self.tool_calls += len(calls)  # before dispatch: limits see this step's
                    if len(calls) == 1:
                        self.messages.append(await self._call_tool(step, 0, calls[0]))
                    else:
                        self.messages.extend(await self._call_tools(step, calls))
                del calls  # not held through the next model call
        except RunStopped as exc:
            self._attach(exc, _STATUS.get(type(exc), "failed"), str(exc), logged)
            raise
        except Exception as exc:
            self._attach(exc, "failed", f"{type(exc).__name__}: {exc}", logged)
            raise
        _log_end(result, logged)
        if sink is not None:
            sink(RunCompleted(result))
        return result

    async def within(self, seconds: float) -> RunResult:
        """`run`, stopped with `RunTimeout` once it has taken `seconds`."""
        try:
            async with asyncio.timeout(seconds) as deadline:
                return await self.run()
        except TimeoutError:
            if not deadline.expired():
                raise  # a timeout from inside the run, not ours (`run` attached the run)
        exc = RunTimeout(
            f"the run took longer than its limit of {seconds}s; raise Policy(timeout=...)"
        )
        self._attach(exc, "timeout", str(exc), enabled(logging.INFO))
        raise exc

    def _attach(self, exc: BaseException, status: RunStatus, error: str, logged: bool) -> None:
        """Give `exc` the partial run (`exc.result`), and log how the run ended."""
        partial = self.result(status, error=error)
        exc.result = partial  # type: ignore[attr-defined]
        _log_end(partial, logged)

    def _model_effect(self, step: int, tool_choice: Any) -> ModelEffect:
        request = construct(
            ModelRequest,
            messages=self.messages,  # never changed from now on: see `messages`
            tools=self.definitions,
            settings=self.spec.settings,
            tool_choice=tool_choice if self.definitions else "none",
        )
        sink = self.sink
        return ModelEffect(self, request, None if sink is None else _text_sink(sink, step))

    def _took(self, step: int, started: float, response: ModelResponse) -> AssistantMessage:
        """Count what `response` spent, report it, and add its message (to a new list)."""
        self._spend(response)
        if self.sink is not None:
            self.sink(ModelResponded(step, response, time.perf_counter() - started))
        message = response.message
        share_fields_sets(message)  # the run keeps it: one set less per part to walk
        self.messages = [*self.messages, message]
        return message

    def _spend(self, response: ModelResponse) -> None:
        used = response.usage
        self.spend(used, cost_of(response.model or self.spec.model_name, used))

    def _final_output(
        self, output: OutputTool, message: AssistantMessage, calls: list[ToolCall]
    ) -> Any:
        """The validated output if this response ends the run, else `_NO_OUTPUT`.

        A bad final answer is answered with its validation error (as a tool result, or a
        user message after plain text) and counted against `output_retries`.
        """
        final = next((c for c in calls if c.name == OUTPUT_TOOL_NAME), None)
        if final is None and calls:
            return _NO_OUTPUT  # ordinary tool calls: the loop runs them
        try:
            if final is not None:
                return output.validate_call(final)
            return output.validate_text(message.text)
        except ToolError as exc:
            self.output_attempts += 1
            if self.output_attempts > self.spec.output_retries:
                raise OutputValidationError(
                    f"the final answer failed validation {self.output_attempts} times: {exc}"
                ) from None
            if final is None:
                self.messages.append(UserMessage(content=str(exc)))
            else:
                # The other calls of this step still run; this one gets the error.
                calls.remove(final)
                self.messages.append(ToolResult.of(final, str(exc), "error"))
            return _NO_OUTPUT

    async def _call_tools(self, step: int, calls: list[ToolCall]) -> list[ToolResult]:
        """Independent calls of one step, concurrently; each failure stays its own."""
        outcomes = await asyncio.gather(
            *(self._call_tool(step, i, call) for i, call in enumerate(calls)),
            return_exceptions=True,
        )
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
        return outcomes  # type: ignore[return-value]

    async def _call_tool(self, step: int, index: int, call: ToolCall) -> ToolResult:
        sink = self.sink
        started = 0.0
        if sink is not None:
            sink(ToolCalled(step, call))
            started = time.perf_counter()
        try:
            arguments = self.spec.tools.get(call).validate(call)
            result: ToolResult = await self.spec.effects.tool(
                ToolEffect(self, call, index, arguments)
            )
        except ToolError as exc:
            result = ToolResult.of(call, str(exc), "error")
        if sink is not None:
            sink(ToolReturned(step, result, time.perf_counter() - started))
        return result

    async def _finish(self, output: Any, calls: list[ToolCall]) -> RunResult | None:
        """The result, or None when the critic asks for a revision (the loop goes on)."""
        critic = self.spec.critic
        if critic is None:
            return self.result("completed", output=output)
        issues = list(await critic.assess(render_output(output)))
        if not issues:
            return self.result("completed", output=output)
        if self.revisions >= critic.max_revisions:
            return self.result("completed", output=output, critic_issues=issues)
        self.revisions += 1
        instruction = critic.revise_instruction(issues)
        if not calls:
            self.messages.append(UserMessage(content=instruction))
        for call in calls:  # a structured answer: every call of the step gets its result
            note = (
                instruction if call.name == OUTPUT_TOOL_NAME else "Not run: the answer came first."
            )
            self.messages.append(ToolResult.of(call, note, "error"))
        return None

    def result(
        self,
        status: RunStatus,
        *,
        output: Any = None,
        error: str | None = None,
        critic_issues: list[str] | None = None,
    ) -> RunResult:
        reasons = self.degraded_reasons
        return construct(
            RunResult,
            run_id=self.run_id,
            status=status,
            output=output,
            messages=self.messages,
            usage=self.usage,
            cost_usd=self.cost_usd,
            steps=self.step,
            duration_s=time.perf_counter() - self.started,
            error=error,
            degraded=reasons is not None,
            degraded_reasons=list(reasons) if reasons is not None else [],
            critic_rejected=critic_issues is not None,
            critic_issues=critic_issues or [],
        )


_NO_OUTPUT: Any = object()


def _text_sink(sink: Sink, step: int) -> Callable[[str], None]:
    return lambda text: sink(TextDelta(step, text))


def _new_run_id() -> str:
    """What `uuid.uuid4().hex` gives (a version-4 UUID as 32 hex digits), without
    building a `UUID` object, which is two thirds of its cost."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # RFC 4122 variant
    return raw.hex()


def _initial_messages(spec: RunSpec, prompt: str, history: list[Message] | None) -> list[Message]:
    messages: list[Message] = list(history or ())
    if spec.instructions and not any(isinstance(m, SystemMessage) for m in messages):
        messages.insert(0, construct(SystemMessage, role="system", content=spec.instructions))
    messages.append(construct(UserMessage, role="user", content=prompt))
    return messages


def run_loop(
    spec: RunSpec,
    prompt: str,
    *,
    run_id: str | None = None,
    user: str | None = None,
    tenant: str | None = None,
    deps: Any = None,
    history: list[Message] | None = None,
    sink: Sink | None = None,
) -> Coroutine[Any, Any, RunResult]:
    """Run `spec` on `prompt` to a final answer: await what this returns.

    Raises a `RunStopped` subclass (`MaxStepsExceeded`, `UsageLimitExceeded`,
    `OutputValidationError`) with the partial run on `.result` when it cannot finish;
    a model error that no policy absorbed propagates with the partial run on `.result`.

    A plain function: it builds the run and hands back the run's own coroutine, so a
    run in flight keeps one frame here, not two.
    """
    run = _Run(
        spec,
        _initial_messages(spec, prompt, history),
        sink,
        run_id=run_id or _new_run_id(),
        user=user,
        deps=deps,
        tenant=tenant,
    )
    return run.run() if spec.timeout is None else run.within(spec.timeout)


def _log_end(result: RunResult, logged: bool) -> None:
    if not logged:
        return
    get_logger().log(
        logging.INFO if result.status == "completed" else logging.WARNING,
        "run.end",
        run_id=result.run_id,
        status=result.status,
        steps=result.steps,
        input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens,
        cost_usd=round(result.cost_usd, 6),
        duration_ms=round(result.duration_s * 1000, 3),
        error=result.error,
    )
