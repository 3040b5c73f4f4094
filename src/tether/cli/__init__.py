"""The `tether` command line (typer + rich): run agents, and inspect, resume, replay and
reconcile the runs recorded in the store."""

from __future__ import annotations

from tether.cli import durable, history, run
from tether.cli.app import TargetError, app, load_agent, main

__all__ = ["TargetError", "app", "durable", "history", "load_agent", "main", "run"]
