"""Bringing runs back: reopening interrupted or failed runs, a human's verdict on an
interrupted side effect, and retention.

A run's journal status says what can be done with it:

- `SUCCESS`: nothing; it completed.
- `ERROR` with the run `failed` on an effect (a model error no policy absorbed), or
  `outcome_unknown` once a human has resolved the side effect: rewound to that step
  and run again from there (the steps before it answer from the journal).
- `ERROR` with any other status (budget, max steps, ...): it would stop the same way.
- `PENDING` (its process died) or `ENQUEUED` (for a process that died before taking
  it): re-enqueued, unless a live process holds it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from tether.durable.workflow import QUEUE_NAME
from tether.errors import ConfigError
from tether.messages import ToolResult
from tether.store import LedgerEntry, Store

if TYPE_CHECKING:
    from tether.durable.runtime import Runtime

__all__ = ["forget", "live_executors", "reopen", "resolve"]


def live_executors(runtime: Runtime) -> set[str]:
    """The processes (workers, and CLIs running their own runs) with a fresh heartbeat."""
    fresh = time.time() - runtime.settings.worker_stale_s
    return {
        w.executor_id
        for w in runtime.store.workers.list()
        if w.status == "alive" and w.heartbeat_at > fresh
    }


def _rewind_target(runtime: Runtime, run_id: str) -> int:
    """The step a failed run resumes from: the step that failed (else the first)."""
    steps = runtime.client.list_workflow_steps(run_id)
    failed = [s["function_id"] for s in steps if s["error"] is not None]
    return failed[-1] if failed else 1


def reopen(runtime: Runtime, run_id: str, *, queue: bool = False, force: bool = False) -> str:
    """Make an interrupted or failed run runnable again; returns what was done.

    With `queue`, a worker picks it up; else the process that called `Runtime.resume`,
    from its own queue.

    Raises:
        ConfigError: no such run, it completed or stopped for good, a live process
            holds it (unless `force`), or its side effect is still unreconciled.
    """
    store = runtime.store
    record = store.runs.get(run_id)
    status = runtime.status(run_id)
    if status is None or record is None:
        if record is not None and record.status == "queued":
            raise ConfigError(
                f"run {run_id} was recorded, but the process that was to run it stopped "
                "before it started; start it again: `tether run TARGET PROMPT --run-id "
                f"{run_id}` (or `tether submit ... --run-id {run_id}`)"
            )
        raise ConfigError(f"no run {run_id!r} in {runtime.where}")
    queue_name = QUEUE_NAME if queue else runtime.queue_here
    if status == "SUCCESS":
        return "completed already"
    if status == "ERROR":
        if record.status == "outcome_unknown":
            pending = [e for e in store.ledger.of_run(run_id) if e.status == "started"]
            if pending:
                steps = ", ".join(str(e.step_id) for e in pending)
                raise ConfigError(
                    f"run {run_id} waits for a human: the side effect at step {steps} may "
                    f"or may not have happened; run `tether resolve {run_id} --step N "
                    "--result '...'` (or `--retry`) first"
                )
        elif record.status != "failed":
            raise ConfigError(
                f"run {run_id} stopped with status {record.status!r}; resuming would stop "
                "it the same way (use `tether replay --from-step N` to try another path)"
            )
        step = _rewind_target(runtime, run_id)
        runtime.client.rewind_workflow(run_id, start_step=step, queue_name=queue_name)
        store.runs.set_status(run_id, "queued")
        return f"rewound to step {step}"
    if status in ("PENDING", "ENQUEUED") and not force:
        executor = record.executor_id
        # Enqueued for a worker, it will run there; enqueued to be resumed by a process
        # (its own queue) that died before it started, it is taken over here.
        for_workers = (
            status == "ENQUEUED"
            and runtime.client.retrieve_workflow(run_id).get_status().queue_name == QUEUE_NAME
        )
        held = status == "PENDING" and executor != runtime.executor_id
        if for_workers or (held and executor in live_executors(runtime)):
            raise ConfigError(
                f"run {run_id} is {status.lower()} on a live process ({executor or 'a worker'}); "
                "it will finish there (pass force=True / --force if that process is gone)"
            )
    runtime.client.resume_workflow(run_id, queue_name=queue_name)
    store.runs.set_status(run_id, "queued")
    return "resumed"


def resolve(store: Store, run_id: str, step_id: int, *, result: str | None, by: str) -> LedgerEntry:
    """Record a human's verdict on an interrupted side effect (see `OutcomeUnknown`):
    `result`, what it returned (its content as the model will see it), or `None` if it
    did not happen and must run again. Then `reopen` (or `Runtime.resume`) the run.

    Raises:
        ConfigError: no side effect at that step of that run, or it finished already.
    """
    entry = store.ledger.get(run_id, step_id)
    if entry is None:
        raise ConfigError(
            f"run {run_id!r} has no side effect at step {step_id} (see `tether trace {run_id}`)"
        )
    if entry.status == "finished":
        raise ConfigError(
            f"the side effect at step {step_id} of run {run_id} finished already; "
            "nothing to resolve"
        )
    recorded = None
    if result is not None:
        recorded = ToolResult(call_id=entry.call_id, name=entry.tool, content=result)
    resolved = store.ledger.resolve(
        run_id,
        step_id,
        result=None if recorded is None else recorded.model_dump_json(),
        by=by,
    )
    assert resolved is not None
    return resolved


_DAY = 86_400.0


def forget(runtime: Runtime, older_than_s: float, *, dry_run: bool = False) -> list[str]:
    """Retention: delete every trace of runs that ended more than `older_than_s` seconds
    ago (journal, record, ledger entries); returns their ids. Breaker and rate-limit
    state untouched that long goes too (at least a day: a bucket idle that long is
    full again, and a circuit's failures are long out of its window)."""
    store = runtime.store
    if not dry_run:
        store.policy_states.prune(max(older_than_s, _DAY))
    doomed: list[str] = []
    cutoff = time.time() - older_than_s
    while batch := store.runs.ended_before(cutoff, limit=500):
        doomed.extend(batch)
        if dry_run:
            break
        runtime.client.delete_workflows(batch)
        store.ledger.delete_runs(batch)
        store.runs.delete(batch)
    return doomed
