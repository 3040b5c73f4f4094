"""`tether runs`, `tether trace RUN_ID`, `tether gc`: the run history in the store."""

from __future__ import annotations

import json
import re
import time
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from tether.cli.app import app, out, recorded_run
from tether.durable import Runtime
from tether.durable.replay import RecordedStep, recorded_steps
from tether.messages import ModelResponse, ToolResult
from tether.store import LedgerEntry, RunRecord

_STATUS_STYLE = {"completed": "green", "running": "cyan", "queued": "cyan", "failed": "red"}


def _when(epoch: float | None) -> str:
    return "-" if epoch is None else time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _record_json(record: RunRecord) -> dict[str, Any]:
    return {
        "run_id": record.run_id,
        "agent": record.agent,
        "user": record.user_id,
        "tenant": record.tenant,
        "status": record.status,
        "model": record.model,
        "steps": record.steps,
        "input_tokens": record.input_tokens,
        "output_tokens": record.output_tokens,
        "cost_usd": record.cost_usd,
        "duration_s": record.duration_s,
        "created_at": record.created_at,
        "error": record.error,
    }


@app.command()
def runs(
    limit: Annotated[int, typer.Option(help="How many, newest first.")] = 20,
    status: Annotated[str | None, typer.Option(help="Only runs with this status.")] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent's runs.")] = None,
    user: Annotated[str | None, typer.Option(help="Only this user's runs.")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's runs.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON lines.")] = False,
) -> None:
    """List recorded runs: status, agent, user, steps, tokens, cost, duration."""
    runtime = Runtime()
    try:
        found = runtime.store.runs.list(
            limit=limit, status=status, agent=agent, user_id=user, tenant=tenant
        )
    finally:
        runtime.shutdown()
    if json_output:
        for record in found:
            out.print(json.dumps(_record_json(record)), highlight=False, soft_wrap=True)
        return
    table = Table(box=None, header_style="bold")
    for column in ("run", "started", "status", "agent", "user", "steps", "tokens", "cost", "time"):
        table.add_column(
            column, justify="right" if column in {"steps", "tokens", "cost"} else "left"
        )
    for r in found:
        duration = r.duration_s
        table.add_row(
            r.run_id,
            _when(r.created_at),
            Text(r.status, style=_STATUS_STYLE.get(r.status, "yellow")),
            r.agent,
            r.user_id or "-",
            str(r.steps),
            f"{r.input_tokens}/{r.output_tokens}",
            f"${r.cost_usd:.6f}",
            "-" if duration is None else f"{duration:.2f}s",
        )
    out.print(table if found else Text("no runs recorded yet", style="dim"))


def _step_label(step: RecordedStep, calls: dict[str, Any], ledger: dict[int, LedgerEntry]) -> Text:
    took = step.duration_s
    label = Text.assemble(
        (f"#{step.step_id} ", "dim"),
        (step.name, "bold magenta" if step.name == "model" else "bold yellow"),
        f"  {took * 1000:.1f}ms" if took is not None else "",
    )
    if step.error is not None:
        label.append(f"  error {type(step.error).__name__}: {step.error}", style="red")
        return label
    output = step.output
    if isinstance(output, ModelResponse):
        usage = output.usage
        label.append(f"  {output.model}  {usage.input_tokens} in / {usage.output_tokens} out")
        for call in output.message.tool_calls:
            calls[call.id] = call
    elif isinstance(output, ToolResult):
        entry = ledger.get(step.step_id)
        if entry is not None:
            label.append(f"  ledger {entry.status}", style="cyan")
    return label


@app.command()
def trace(
    run_id: Annotated[str, typer.Argument(help="The run's id (see `tether runs`).")],
    json_output: Annotated[bool, typer.Option("--json", help="The steps as JSON.")] = False,
) -> None:
    """Print a run's steps as a tree: timings, tokens, tool arguments and results."""
    runtime = Runtime()
    record = recorded_run(runtime, run_id)
    try:
        steps = recorded_steps(runtime.client, run_id)
        ledger = {e.step_id: e for e in runtime.store.ledger.of_run(run_id)}
    finally:
        runtime.shutdown()
    if json_output:
        payload = _record_json(record) | {
            "steps": [
                {
                    "step": s.step_id,
                    "name": s.name,
                    "duration_s": s.duration_s,
                    "output": None if s.output is None else s.output.model_dump(mode="json"),
                    "error": None if s.error is None else f"{type(s.error).__name__}: {s.error}",
                    "ledger": None if s.step_id not in ledger else ledger[s.step_id].status,
                }
                for s in steps
            ]
        }
        out.print_json(json.dumps(payload, default=str))
        return
    duration = record.duration_s
    root = Tree(
        Text.assemble(
            (f"run {record.run_id}", "bold"),
            f"  {record.agent}  ",
            (record.status, _STATUS_STYLE.get(record.status, "yellow")),
            f"  {record.steps} steps  {record.input_tokens}/{record.output_tokens} tokens"
            f"  ${record.cost_usd:.6f}",
            f"  {duration:.2f}s" if duration is not None else "",
        )
    )
    calls: dict[str, Any] = {}
    for step in steps:
        node = root.add(_step_label(step, calls, ledger))
        output = step.output
        if isinstance(output, ModelResponse) and output.message.text:
            node.add(Text(output.message.text, style="dim"))
        if isinstance(output, ModelResponse):
            for call in output.message.tool_calls:
                node.add(Text(f"→ {call.name}({call.arguments_json()})"))
        if isinstance(output, ToolResult):
            asked = calls.get(output.call_id)
            if asked is not None:
                node.add(Text(f"args {asked.arguments_json()}"))
            node.add(Text(f"{output.status}: {output.content}", style="dim"))
    if record.error:
        root.add(Text(f"error: {record.error}", style="red"))
    out.print(root)


_AGE = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_age(value: str) -> float:
    """`30d`, `12h`, `90m`, `45s`, `2w` in seconds."""
    found = _AGE.match(value.strip())
    if found is None:
        raise typer.BadParameter(f"{value!r} is not an age like 30d, 12h, 90m or 2w")
    return float(found.group(1)) * _UNIT[found.group(2)]


@app.command()
def gc(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of ended runs to delete: 30d, 12h, 2w.")
    ],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only say what would go.")] = False,
) -> None:
    """Retention: delete runs that ended longer ago than --older-than (records, journal,
    ledger), and breaker and rate-limit state idle as long (a day at least). Runs still
    going, or waiting for a human, are kept."""
    age = parse_age(older_than)
    runtime = Runtime()
    try:
        gone = runtime.forget(age, dry_run=dry_run)
    finally:
        runtime.shutdown()
    verb = "would delete" if dry_run else "deleted"
    out.print(f"{verb} {len(gone)} run{'s' if len(gone) != 1 else ''} older than {older_than}")
