"""The `tether` command line's shared parts: the typer app, consoles, loading agents."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.text import Text

from tether.agent import Agent
from tether.durable import Runtime
from tether.errors import (
    ConfigError,
    ModelAuthError,
    ModelConnectionError,
    ModelError,
    RunStopped,
)
from tether.messages import RunResult
from tether.store import RunRecord

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


def absolute_target(target: str) -> str:
    """`target` as a run records it: a file made absolute, so a later `tether resume`
    or a worker started elsewhere loads the same file (a module name is kept as is)."""
    location, colon, attribute = target.partition(":")
    if location.endswith(".py") or "/" in location or Path(location).is_file():
        return f"{Path(location).resolve()}{colon}{attribute}"
    return target


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


def summary(result: RunResult) -> Text:
    u = result.usage
    return Text(
        f"{u.input_tokens} in / {u.output_tokens} out tokens · {u.requests} requests · "
        f"{u.tool_calls} tool calls · ${result.cost_usd:.6f} · {result.duration_s:.2f}s · "
        f"{result.steps} steps · run {result.run_id}",
        style="dim",
    )


def render_output(output: Any) -> str:
    if isinstance(output, str):
        return output
    from pydantic_core import to_json

    return to_json(output, indent=2, fallback=str).decode()


def explain(exc: BaseException) -> tuple[str, str]:
    """A heading and a one-paragraph explanation for an error a user can meet."""
    if isinstance(exc, TargetError):
        return "cannot load the agent", str(exc)
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


def main() -> None:
    """Entry point of the `tether` script."""
    app()


def recorded_run(runtime: Runtime, run_id: str) -> RunRecord:
    """The record of `run_id`; if there is none, says so, shuts `runtime` down and exits 2."""
    record = runtime.store.runs.get(run_id)
    if record is None:
        runtime.shutdown()
        err.print(f"[red]no run {run_id!r} recorded[/] (see `tether runs`)", highlight=False)
        raise typer.Exit(2)
    return record
