"""Durable runs on DBOS: crash recovery, exactly-once side effects, shared budgets,
workers. See `Runtime`."""

from __future__ import annotations

from tether.durable.budget import SharedBudget
from tether.durable.runtime import QUEUE_NAME, DurableAgent, Runtime
from tether.durable.side_effects import SideEffects, dedupe_key
from tether.durable.steps import Journal

__all__ = [
    "QUEUE_NAME",
    "DurableAgent",
    "Journal",
    "Runtime",
    "SharedBudget",
    "SideEffects",
    "dedupe_key",
]
