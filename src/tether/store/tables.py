"""tether's tables (SQLAlchemy Core). Alembic migrations in `migrations/` create them.

Every name starts with `tether_`, so the tables share a database with the durable
engine's own (DBOS keeps its journal in the same file or server) and with the user's.
Times are UNIX epoch seconds (floats); JSON is kept as text, the same on both backends.
"""

from __future__ import annotations

import sqlalchemy as sa

__all__ = [
    "budget_holds",
    "budgets",
    "ledger",
    "metadata",
    "policy_states",
    "runs",
    "workers",
]

metadata = sa.MetaData()

runs = sa.Table(
    "tether_runs",
    metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column("agent", sa.String(200), nullable=False),
    sa.Column(
        "target",
        sa.String(500),
        comment="Where the agent's code is (module:attr or file.py:attr), to resume it",
    ),
    sa.Column("user_id", sa.String(200)),
    sa.Column("tenant", sa.String(200)),
    sa.Column("tier", sa.String(100)),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("model", sa.String(200)),
    sa.Column("prompt_version", sa.String(100)),
    sa.Column("prompt", sa.Text, nullable=False),
    sa.Column("output", sa.Text),
    sa.Column("error", sa.Text),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("started_at", sa.Float),
    sa.Column("finished_at", sa.Float),
    sa.Column("steps", sa.Integer, nullable=False, server_default="0"),
    sa.Column("requests", sa.Integer, nullable=False, server_default="0"),
    sa.Column("tool_calls", sa.Integer, nullable=False, server_default="0"),
    sa.Column("input_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("output_tokens", sa.Integer, nullable=False, server_default="0"),
    sa.Column("cost_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("executor_id", sa.String(200)),
    sa.Index("ix_tether_runs_created_at", "created_at"),
    sa.Index("ix_tether_runs_tenant_created_at", "tenant", "created_at"),
    sa.Index("ix_tether_runs_status", "status"),
)

ledger = sa.Table(
    "tether_ledger",
    metadata,
    sa.Column("run_id", sa.String(128), primary_key=True),
    sa.Column(
        "step_id",
        sa.Integer,
        primary_key=True,
        comment="The durable step that ran the call (as tether trace shows it)",
    ),
    sa.Column("tool", sa.String(200), nullable=False),
    sa.Column("call_id", sa.String(200), nullable=False),
    sa.Column("idempotency_key", sa.String(300), nullable=False),
    sa.Column("arguments", sa.Text, nullable=False),
    sa.Column(
        "status",
        sa.String(16),
        nullable=False,
        comment="started, finished, or retry (a human asked for the call to run again)",
    ),
    sa.Column("result", sa.Text),
    sa.Column("dedupe_key", sa.String(64)),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("finished_at", sa.Float),
    sa.Column("resolved_by", sa.String(200)),
    sa.Index("ix_tether_ledger_dedupe_key", "dedupe_key"),
)

budgets = sa.Table(
    "tether_budgets",
    metadata,
    sa.Column(
        "scope",
        sa.String(300),
        primary_key=True,
        comment="user:<id>:<day>, tenant:<id>:<day> or run:<id>",
    ),
    sa.Column("limit_usd", sa.Float, nullable=False),
    sa.Column("reserved_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("spent_usd", sa.Float, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.Float, nullable=False),
)

budget_holds = sa.Table(
    "tether_budget_holds",
    metadata,
    sa.Column("hold_id", sa.String(64), primary_key=True),
    sa.Column("run_id", sa.String(128), nullable=False),
    sa.Column("scopes", sa.Text, nullable=False),
    sa.Column("amount_usd", sa.Float, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Index("ix_tether_budget_holds_run_id", "run_id"),
)

workers = sa.Table(
    "tether_workers",
    metadata,
    sa.Column("executor_id", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column(
        "kind",
        sa.String(16),
        nullable=False,
        comment="worker, or cli for a process running its own runs",
    ),
    sa.Column(
        "status",
        sa.String(16),
        nullable=False,
        comment="alive, stopped (it said goodbye) or dead (reaped)",
    ),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
    sa.Column("reaped_by", sa.String(200)),
    sa.Column("reaped_at", sa.Float),
)

policy_states = sa.Table(
    "tether_policy_states",
    metadata,
    sa.Column(
        "key",
        sa.String(400),
        primary_key=True,
        comment="breaker:<target> (a circuit) or ratelimit:<bucket> (a token bucket)",
    ),
    sa.Column("state", sa.Text, comment="JSON; NULL for a key seen but never written"),
    sa.Column("updated_at", sa.Float, nullable=False),
    sa.Index("ix_tether_policy_states_updated_at", "updated_at"),
)
