"""`tether run` and `tether version`.

tether run examples/weather.py:agent "What's the weather in Paris?"
tether run my_package.agents:support "Refund order 42" --json

Every run is recorded (and durable) in the store, `TETHER_DATABASE_URL`: `tether runs`
lists them, `tether trace RUN_ID` shows one, `tether resume RUN_ID` finishes one that
was interrupted.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from tether import __version__
from tether.cli.app import (
    TargetError,
    absolute_target,
    app,
    err,
    explain,
    load_agent,
    out,
    render_output,
    summary,
)
from tether.durable import Runtime
from tether.loop import (
    ModelResponded,
    StepStarted,
    TextDelta,
    ToolCalled,
    ToolReturned,
)
from tether.messages import RunResult
from tether.observe import configure_logging


def _short(value: str, limit: int = 160) -> str:
    value = " ".join(value.split())
    return value if len(value) <= limit else value[: limit - 1] + "…"


class _LiveView:
    """Prints each step as it happens."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.streaming = False

    def show(self, event: Any) -> None:
        c = self.console
        if isinstance(event, StepStarted):
            c.print(Text(f"step {event.step}", style="bold cyan"))
        elif isinstance(event, TextDelta):
            if not self.streaming:
                c.print(Text("  text  ", style="dim"), end="")
                self.streaming = True
            c.print(event.text, end="", markup=False, highlight=False)
        elif isinstance(event, ModelResponded):
            if self.streaming:
                c.print()
                self.streaming = False
            r = event.response
            calls = ", ".join(call.name for call in r.message.tool_calls) or "answer"
            c.print(
                Text.assemble(
                    ("  model ", "dim"),
                    (r.model, "magenta"),
                    f"  {event.duration_s:.2f}s  ",
                    (f"{r.usage.input_tokens} in / {r.usage.output_tokens} out", "dim"),
                    "  → ",
                    (calls, "bold"),
                )
            )
        elif isinstance(event, ToolCalled):
            c.print(
                Text.assemble(
                    ("  tool  ", "dim"),
                    (event.call.name, "bold yellow"),
                    " ",
                    _short(
                        event.call.arguments_json(), max(40, c.width - 16 - len(event.call.name))
                    ),
                ),
                highlight=False,
            )
        elif isinstance(event, ToolReturned):
            style = {"ok": "green", "error": "red"}.get(event.result.status, "yellow")
            c.print(
                Text.assemble(
                    ("        ", ""),
                    (event.result.status, style),
                    f"  {event.duration_s * 1000:.1f}ms  ",
                    (_short(event.result.content, max(40, c.width - 24)), "dim"),
                ),
                highlight=False,
            )


async def _run_durable(
    runtime: Runtime, name: str, prompt: str, kwargs: dict[str, Any], live: bool
) -> RunResult:
    view = _LiveView(out) if live else None
    try:
        return await runtime.run(name, prompt, sink=None if view is None else view.show, **kwargs)
    finally:
        await runtime.aclose_agents()


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="The agent: FILE.py:NAME or package.module:NAME.")],
    prompt: Annotated[str, typer.Argument(help="The user's message.")],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the run result as JSON, nothing else.")
    ] = False,
    model: Annotated[
        str | None, typer.Option(help="Use this model instead, e.g. openai:gpt-4.1-mini.")
    ] = None,
    user: Annotated[str | None, typer.Option(help="Who the run is for.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant the run belongs to.")] = None,
    run_id: Annotated[
        str | None, typer.Option("--run-id", help="Your id for the run (default: a new one).")
    ] = None,
    log_level: Annotated[
        str | None, typer.Option(help="tether's log level (JSON lines on stderr).")
    ] = None,
) -> None:
    """Run an agent on a prompt, showing each step live."""
    if log_level:
        configure_logging(log_level)
    try:
        agent = load_agent(target)
    except TargetError as exc:
        err.print(f"[bold red]cannot load the agent:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    kwargs: dict[str, Any] = {"user": user, "tenant": tenant, "model": model, "run_id": run_id}
    try:
        runtime = Runtime()
        runtime.register(agent, target=absolute_target(target))
        runtime.launch()
    except Exception as exc:
        heading, detail = explain(exc)
        err.print(Panel(detail, title=heading, border_style="red", title_align="left"))
        raise typer.Exit(2) from None
    try:
        result = asyncio.run(
            _run_durable(runtime, agent.name, prompt, kwargs, live=not json_output)
        )
    except Exception as exc:
        heading, detail = explain(exc)
        partial: RunResult | None = getattr(exc, "result", None)
        if json_output:
            payload = {
                "error": {"type": type(exc).__name__, "message": str(exc)},
                "result": json.loads(partial.model_dump_json()) if partial else None,
            }
            out.print_json(json.dumps(payload))
        else:
            err.print(Panel(detail, title=heading, border_style="red", title_align="left"))
            if partial is not None:
                err.print(summary(partial))
        raise typer.Exit(1) from None
    finally:
        runtime.shutdown()
    if json_output:
        out.print_json(result.model_dump_json())
        return
    out.print(Panel(render_output(result.output), title="answer", title_align="left"))
    out.print(summary(result))


@app.command()
def version() -> None:
    """Print tether's version."""
    out.print(__version__)
