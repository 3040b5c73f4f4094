"""`tether submit`, `tether worker`, `tether resume`, `tether resolve`, `tether replay`."""

from __future__ import annotations

import asyncio
import signal
from typing import Annotated, Any

import typer
from rich.panel import Panel

from tether.agent import Agent
from tether.cli.app import (
    TargetError,
    absolute_target,
    app,
    err,
    explain,
    load_agent,
    out,
    recorded_run,
    render_output,
    summary,
)
from tether.durable import Runtime
from tether.durable.replay import Replay, recorded_steps
from tether.durable.worker import serve
from tether.errors import ConfigError
from tether.loop import run_loop
from tether.messages import RunResult
from tether.store import RunRecord


def _fail(exc: BaseException, code: int | None = None) -> typer.Exit:
    """Print why, and the exit: 2 for a refusal or a bad input, 1 for a run that failed."""
    if code is None:
        code = 2 if isinstance(exc, ConfigError) else 1
    heading, detail = explain(exc)
    err.print(Panel(detail, title=heading, border_style="red", title_align="left"))
    partial: RunResult | None = getattr(exc, "result", None)
    if partial is not None:
        err.print(summary(partial))
    return typer.Exit(code)


def _show(result: RunResult) -> None:
    out.print(Panel(render_output(result.output), title="answer", title_align="left"))
    out.print(summary(result))


def _load(target: str) -> Agent:
    try:
        return load_agent(target)
    except TargetError as exc:
        raise _fail(exc, 2) from None


def _agent_of(record: RunRecord, target: str | None) -> tuple[Agent, str]:
    where = target or record.target
    if where is None:
        err.print(
            f"[red]run {record.run_id} does not say where agent {record.agent!r} is;[/] "
            "pass --target FILE.py:NAME",
            highlight=False,
        )
        raise typer.Exit(2)
    return _load(where), where


async def _finish(runtime: Runtime, run_id: str, force: bool) -> RunResult:
    try:
        return await runtime.resume(run_id, force=force)
    finally:
        await runtime.aclose_agents()


def _resume_here(runtime: Runtime, record: RunRecord, target: str | None, force: bool) -> None:
    agent, where = _agent_of(record, target)
    try:
        runtime.register(agent, target=where)
        runtime.launch()
        result = asyncio.run(_finish(runtime, record.run_id, force))
    except Exception as exc:
        raise _fail(exc) from None
    finally:
        runtime.shutdown()
    _show(result)


@app.command()
def submit(
    target: Annotated[str, typer.Argument(help="The agent: FILE.py:NAME or package.module:NAME.")],
    prompt: Annotated[str, typer.Argument(help="The user's message.")],
    user: Annotated[str | None, typer.Option(help="Who the run is for.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant the run belongs to.")] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", help="Your id for the run.")] = None,
) -> None:
    """Put a run on the queue for `tether worker`; prints its run id."""
    agent = _load(target)
    runtime = Runtime()
    try:
        found = runtime.submit(
            agent.name,
            prompt,
            user=user,
            tenant=tenant,
            run_id=run_id,
            target=absolute_target(target),
        )
    except Exception as exc:
        raise _fail(exc, 2) from None
    finally:
        runtime.shutdown()
    out.print(found, highlight=False)


@app.command()
def worker(
    targets: Annotated[list[str], typer.Argument(help="The agents this worker runs.")],
    concurrency: Annotated[int, typer.Option(help="Runs at once in this worker.", min=1)] = 8,
    global_concurrency: Annotated[
        int | None, typer.Option(help="Runs at once across all workers.", min=1)
    ] = None,
    poll: Annotated[float, typer.Option(help="Seconds between queue polls.", min=0.01)] = 0.2,
) -> None:
    """Pull runs from the queue until SIGTERM or Ctrl-C; heartbeat, and resume the runs
    of workers that died."""
    runtime = Runtime()
    for target in targets:
        runtime.register(_load(target), target=absolute_target(target))

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(
            runtime,
            concurrency=concurrency,
            global_concurrency=global_concurrency,
            polling_interval_s=poll,
            stop=stop,
        )

    err.print(f"worker {runtime.executor_id}: {', '.join(targets)}", highlight=False)
    try:
        asyncio.run(main())
    finally:
        runtime.shutdown()


@app.command()
def resume(
    run_id: Annotated[str, typer.Argument(help="The run to resume.")],
    queue: Annotated[bool, typer.Option("--queue", help="Hand it to a worker instead.")] = False,
    target: Annotated[
        str | None, typer.Option(help="Where the agent is, if the run does not say.")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Even if a live worker seems to hold it.")
    ] = False,
) -> None:
    """Finish a run that was interrupted (a crash) or failed on a model error: completed
    steps are replayed from the journal, not run again."""
    runtime = Runtime()
    record = recorded_run(runtime, run_id)
    if queue:
        try:
            done = runtime.reopen(run_id, queue=True, force=force)
        except Exception as exc:
            raise _fail(exc, 2) from None
        finally:
            runtime.shutdown()
        out.print(f"run {run_id}: {done}")
        return
    _resume_here(runtime, record, target, force)


@app.command()
def resolve(
    run_id: Annotated[str, typer.Argument(help="The run that stopped with OutcomeUnknown.")],
    step: Annotated[int, typer.Option(help="The side effect's step (from the error).")],
    result: Annotated[
        str | None, typer.Option(help="What the side effect returned (it happened).")
    ] = None,
    retry: Annotated[
        bool, typer.Option("--retry", help="It did not happen: run it again.")
    ] = False,
    queue: Annotated[bool, typer.Option("--queue", help="Hand the run to a worker.")] = False,
    target: Annotated[
        str | None, typer.Option(help="Where the agent is, if the run does not say.")
    ] = None,
) -> None:
    """Reconcile a side effect whose outcome is unknown, then resume the run."""
    if (result is None) == (not retry):
        err.print("[red]give exactly one of --result '...' and --retry[/]")
        raise typer.Exit(2)
    runtime = Runtime()
    record = recorded_run(runtime, run_id)
    try:
        runtime.resolve(run_id, step, result=result)
        if queue:
            done = runtime.reopen(run_id, queue=True)
            out.print(f"run {run_id}: step {step} resolved; {done}")
            runtime.shutdown()
            return
    except Exception as exc:
        runtime.shutdown()
        raise _fail(exc, 2) from None
    _resume_here(runtime, record, target, force=False)


@app.command()
def replay(
    run_id: Annotated[str, typer.Argument(help="The recorded run to replay.")],
    from_step: Annotated[
        int | None, typer.Option("--from-step", help="Go live from this step on (a fork).")
    ] = None,
    model: Annotated[str | None, typer.Option(help="The model for the live steps.")] = None,
    target: Annotated[
        str | None, typer.Option(help="Where the agent is, if the run does not say.")
    ] = None,
) -> None:
    """Re-run a recorded run's loop here, answered from its journal (no model or tool
    is called); with --from-step N (and --model X) it goes live from step N. Side
    effects are never performed in a replay."""
    runtime = Runtime()
    record = recorded_run(runtime, run_id)
    try:
        steps = recorded_steps(runtime.client, run_id)
    finally:
        runtime.shutdown()
    agent, _ = _agent_of(record, target)
    journal = Replay(steps, agent.tools, from_step=from_step)
    kwargs: dict[str, Any] = {"run_id": f"{run_id}-replay", "user": record.user_id}

    async def main() -> RunResult:
        try:
            spec = agent.spec(model, outer=(journal,))
            return await run_loop(spec, record.prompt, tenant=record.tenant, **kwargs)
        finally:
            await agent.aclose()

    try:
        result = asyncio.run(main())
    except Exception as exc:
        raise _fail(exc) from None
    _show(result)
    out.print(
        f"replayed {len(steps) if from_step is None else from_step - 1} recorded steps; "
        f"{journal.live} live",
        style="dim",
    )
