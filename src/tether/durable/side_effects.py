"""Exactly-once side effects: the ledger around a side-effecting tool call.

    started ──► dispatch ──► finished(result)

Before the tool is dispatched its ledger row is written `started`; after, `finished`
with the result. When the call's step runs again (a crash after the tool began and
before its step was recorded), the row says what happened:

- `finished`: the tool ran; its recorded result is returned, nothing runs.
- `started`: it was interrupted and may or may not have taken effect. A tool that
  declares `idempotent=True` dedupes downstream on `ctx.idempotency_key`, so it runs
  again; any other stops the run with `OutcomeUnknown`, for a human to reconcile.
- `retry`: a human said it did not take effect (`tether resolve --retry`): it runs.

With `dedupe=True`, a call whose canonical arguments (minus `volatile` ones) match a
finished call of any run gets that call's result instead of running.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any

from tether.errors import OutcomeUnknown
from tether.messages import CallNext, ToolEffect, ToolResult
from tether.store import Ledger, LedgerEntry
from tether.tools import Tool

__all__ = ["SideEffects", "dedupe_key"]


def _jsonable(arguments: Any) -> Any:
    dump = getattr(arguments, "model_dump", None)
    return dump(mode="json") if dump is not None else arguments


def dedupe_key(tool: Tool, arguments: dict[str, Any]) -> str:
    """The cross-run key of a call: the tool and its canonical arguments, without the
    tool's `volatile` ones (timestamps, nonces)."""
    kept = {k: v for k, v in arguments.items() if k not in tool.volatile}
    canonical = json.dumps([tool.name, kept], sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


class SideEffects:
    """Runs side-effecting tool calls through the ledger."""

    __slots__ = ("_ledger",)

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger

    async def run(
        self, tool: Tool, effect: ToolEffect, call_next: CallNext, step_id: int
    ) -> ToolResult:
        """The call's result, dispatching the tool at most once per ledger verdict."""
        ledger = self._ledger
        run_id = effect.run.run_id
        arguments = _jsonable(effect.arguments)
        key = dedupe_key(tool, arguments) if tool.dedupe else None
        if key is not None:
            done = await asyncio.to_thread(ledger.find_finished, key)
            if done is not None and done.result is not None:
                return _result_of(done, effect)
        entry, fresh = await asyncio.to_thread(
            ledger.begin,
            run_id=run_id,
            step_id=step_id,
            tool=tool.name,
            call_id=effect.call.id,
            idempotency_key=f"{run_id}:{effect.run.step}:{effect.index}",
            arguments=json.dumps(arguments, sort_keys=True, default=str),
            dedupe_key=key,
        )
        if not fresh:
            if entry.status == "finished" and entry.result is not None:
                return _result_of(entry, effect)
            if entry.status == "started" and not tool.idempotent:
                raise OutcomeUnknown(
                    f"the side effect {tool.name!r} (step {step_id} of run {run_id}) was "
                    "interrupted after it started, and it does not declare idempotent=True, "
                    "so it may or may not have happened. Find out, then run `tether resolve "
                    f"{run_id} --step {step_id} --result '...'` with what it returned, or "
                    "`--retry` if it did not happen",
                    run_id=run_id,
                    step_id=step_id,
                    tool=tool.name,
                    arguments=arguments,
                )
        result: ToolResult = await call_next(effect)
        await asyncio.to_thread(ledger.finish, run_id, step_id, result.model_dump_json())
        return result


def _result_of(entry: LedgerEntry, effect: ToolEffect) -> ToolResult:
    """A recorded result, answering this call (its id may differ in another run)."""
    assert entry.result is not None
    recorded = ToolResult.model_validate_json(entry.result)
    if recorded.call_id == effect.call.id:
        return recorded
    return recorded.model_copy(update={"call_id": effect.call.id})
