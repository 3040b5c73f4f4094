"""The `tether` command line (typer + rich).

tether run examples/weather.py:agent "What's the weather in Paris?"
tether run my_package.agents:support "Refund order 42" --json
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.panel import Panel
from rich.text import Text

from tether import __version__
from tether.agent import Agent
from tether.errors import (
    ConfigError,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    RunStopped,
    TetherError,
)
from tether.loop import (
    ModelResponded,
    RunCompleted,
    StepStarted,
    TextDelta,
    ToolCalled,
    ToolReturned,
)
from tether.messages import RunResult
from tether.observe import configure_logging

app = typer.Typer(
    name="tether",
    help="Run AI agents in production: validated tools, policies, traces.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="rich",
)
out = Console()
err = Console(stderr=True)


class TargetError(Exception):
    """The MODULE_OR_FILE:AGENT target cannot be loaded."""


def load_agent(target: str) -> Agent:
    """Import `path/to/file.py:name` or `package.module:name` and return the Agent there."""
    location, _, attribute = target.partition(":")
    attribute = attribute or "agent"
    if not location:
        raise TargetError(f"{target!r} names no module or file; use FILE.py:AGENT or MODULE:AGENT")
    if location.endswith(".py") or "/" in location or Path(location).is_file():
        path = Path(location)
        if not path.is_file():
            raise TargetError(f"file {location} does not exist")
        name = f"_tether_target_{path.stem}"
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise TargetError(f"cannot import {location}: not a Python file")
        module = importlib.util.module_from_spec(spec)
        # Registered first: pydantic resolves postponed annotations through sys.modules.
        sys.modules[name] = module
        sys.path.insert(0, str(path.resolve().parent))
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise TargetError(f"importing {location} failed: {type(exc).__name__}: {exc}") from exc
        finally:
            sys.path.pop(0)
    else:
        try:
            module = importlib.import_module(location)
        except Exception as exc:
            raise TargetError(f"importing {location} failed: {type(exc).__name__}: {exc}") from exc
    found = getattr(module, attribute, None)
    if found is None:
        raise TargetError(f"{location} has no attribute {attribute!r}")
    if not isinstance(found, Agent):
        raise TargetError(f"{location}:{attribute} is a {type(found).__name__}, not a tether Agent")
    return found


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


def _summary(result: RunResult) -> Text:
    u = result.usage
    return Text(
        f"{u.input_tokens} in / {u.output_tokens} out tokens · {u.requests} requests · "
        f"{u.tool_calls} tool calls · ${result.cost_usd:.6f} · {result.duration_s:.2f}s · "
        f"{result.steps} steps · run {result.run_id}",
        style="dim",
    )


def _render_output(output: Any) -> str:
    if isinstance(output, str):
        return output
    from pydantic_core import to_json

    return to_json(output, indent=2, fallback=str).decode()


async def _run_live(agent: Agent, prompt: str, kwargs: dict[str, Any]) -> RunResult:
    view = _LiveView(out)
    result: RunResult | None = None
    async for event in agent.stream(prompt, **kwargs):
        view.show(event)
        if isinstance(event, RunCompleted):
            result = event.result
    assert result is not None  # stream ends with RunCompleted or raises
    return result


def _explain(exc: BaseException) -> tuple[str, str]:
    """A heading and a one-paragraph explanation for an error a user can meet."""
    if isinstance(exc, ConfigError):
        return "configuration error", str(exc)
    if isinstance(exc, ModelAuthError):
        return "the model provider rejected the API key", str(exc)
    if isinstance(exc, ModelConnectionError):
        return "cannot reach the model server", str(exc)
    if isinstance(exc, ModelError):
        return "the model call failed", str(exc)
    if isinstance(exc, RunStopped):
        return f"the run stopped: {type(exc).__name__}", str(exc)
    return f"unexpected error: {type(exc).__name__}", str(exc)


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
    kwargs: dict[str, Any] = {"user": user, "model": model}
    try:
        if json_output:
            result = asyncio.run(agent.run(prompt, **kwargs))
        else:
            result = asyncio.run(_run_live(agent, prompt, kwargs))
    except (TetherError, Exception) as exc:
        heading, detail = _explain(exc)
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
                err.print(_summary(partial))
        raise typer.Exit(1) from None
    if json_output:
        out.print_json(result.model_dump_json())
        return
    out.print(Panel(_render_output(result.output), title="answer", title_align="left"))
    out.print(_summary(result))


@app.command()
def version() -> None:
    """Print tether's version."""
    out.print(__version__)


def main() -> None:
    """Entry point of the `tether` script."""
    app()
