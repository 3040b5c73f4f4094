"""The run workflow: one DBOS workflow per run, its id the run id.

The workflow resolves the agent by name in this process's runtime, releases budget
holds left by an interrupted attempt, records the run as running, runs the loop (each
effect a step, see `steps`), and records how it ended. When it is resumed after a
crash it does all this again from the top; the completed steps answer from the
journal, so the loop arrives where it was without repeating any effect.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import pydantic_core
from dbos import DBOS

from tether.durable.steps import first_attempt
from tether.errors import RunStopped
from tether.loop import run_loop
from tether.messages import RunResult

if TYPE_CHECKING:
    from tether.durable.runtime import Runtime

__all__ = ["QUEUE_NAME", "WORKFLOW_NAME", "run_workflow"]

WORKFLOW_NAME = "tether.run"
QUEUE_NAME = "tether-runs"
"""The DBOS queue that `tether worker` processes pull runs from."""

_runtime: Runtime | None = None


def bind(runtime: Runtime | None) -> None:
    """Make `runtime` the one this process's workflows run in."""
    global _runtime
    _runtime = runtime


@DBOS.workflow(name=WORKFLOW_NAME)
async def run_workflow(agent: str, prompt: str, options: dict[str, Any]) -> RunResult:
    """Run `agent` on `prompt` durably (the workflow body; start it through `Runtime`)."""
    runtime = _runtime
    if runtime is None:
        raise RuntimeError("a tether run workflow started in a process with no launched Runtime")
    run_id = DBOS.workflow_id
    assert run_id is not None
    spec = runtime.durable_spec(agent, options.get("model"))
    first = await asyncio.to_thread(
        _start, runtime, run_id, agent, prompt, options, spec.model_name
    )
    first_attempt.set(first)  # this workflow's task (and the tasks it starts) only
    try:
        result = await run_loop(
            spec,
            prompt,
            run_id=run_id,
            user=options.get("user"),
            tenant=options.get("tenant"),
            deps=runtime.deps_of(agent),
            sink=runtime.sink_of(run_id),
        )
    except RunStopped as exc:
        await asyncio.to_thread(_record, runtime, exc.result, str(exc))
        raise
    except Exception as exc:
        partial: RunResult | None = getattr(exc, "result", None)
        await asyncio.to_thread(_record, runtime, partial, f"{type(exc).__name__}: {exc}", run_id)
        raise
    await asyncio.to_thread(_record, runtime, result, None)
    return result


def _start(
    runtime: Runtime,
    run_id: str,
    agent: str,
    prompt: str,
    options: dict[str, Any],
    model: str,
) -> bool:
    """Release what an interrupted attempt held, and record the run as running here;
    whether this is its first attempt."""
    store = runtime.store
    store.budgets.release_run(run_id)
    first = store.runs.started(run_id, runtime.executor_id)
    if first is not None:
        return first  # recorded when it was started or submitted: the common case
    store.runs.create(  # no record (deleted?): nothing says what ran before
        run_id=run_id,
        agent=agent,
        prompt=prompt,
        status="running",
        user_id=options.get("user"),
        tenant=options.get("tenant"),
        tier=runtime.tiers.name_of(options.get("tenant")),
        model=model,
        target=options.get("target"),
    )
    store.runs.started(run_id, runtime.executor_id)
    return False


def _record(
    runtime: Runtime, result: RunResult | None, error: str | None, run_id: str | None = None
) -> None:
    if result is None:
        assert run_id is not None
        runtime.store.runs.finished(run_id, "failed", error=error)
        return
    usage = result.usage
    runtime.store.runs.finished(
        result.run_id,
        result.status,
        output=None if result.output is None else pydantic_core.to_json(result.output).decode(),
        error=error,
        steps=result.steps,
        requests=usage.requests,
        tool_calls=usage.tool_calls,
        input_tokens=usage.input_tokens,
        output_tokens=usage.output_tokens,
        cost_usd=result.cost_usd,
    )
