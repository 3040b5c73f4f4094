"""initial tables: runs, ledger, budgets, holds, workers

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tether_budget_holds",
        sa.Column("hold_id", sa.String(length=64), nullable=False),
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("amount_usd", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("hold_id"),
    )
    with op.batch_alter_table("tether_budget_holds", schema=None) as batch_op:
        batch_op.create_index("ix_tether_budget_holds_run_id", ["run_id"], unique=False)

    op.create_table(
        "tether_budgets",
        sa.Column(
            "scope",
            sa.String(length=300),
            nullable=False,
            comment="user:<id>:<day>, tenant:<id>:<day> or run:<id>",
        ),
        sa.Column("limit_usd", sa.Float(), nullable=False),
        sa.Column("reserved_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column("spent_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("scope"),
    )
    op.create_table(
        "tether_ledger",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column(
            "step_id",
            sa.Integer(),
            nullable=False,
            comment="The durable step that ran the call (as tether trace shows it)",
        ),
        sa.Column("tool", sa.String(length=200), nullable=False),
        sa.Column("call_id", sa.String(length=200), nullable=False),
        sa.Column("idempotency_key", sa.String(length=300), nullable=False),
        sa.Column("arguments", sa.Text(), nullable=False),
        sa.Column(
            "status",
            sa.String(length=16),
            nullable=False,
            comment="started, finished, or retry (a human asked for the call to run again)",
        ),
        sa.Column("result", sa.Text(), nullable=True),
        sa.Column("dedupe_key", sa.String(length=64), nullable=True),
        sa.Column("attempts", sa.Integer(), server_default="1", nullable=False),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("resolved_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("run_id", "step_id"),
    )
    with op.batch_alter_table("tether_ledger", schema=None) as batch_op:
        batch_op.create_index("ix_tether_ledger_dedupe_key", ["dedupe_key"], unique=False)

    op.create_table(
        "tether_runs",
        sa.Column("run_id", sa.String(length=128), nullable=False),
        sa.Column("agent", sa.String(length=200), nullable=False),
        sa.Column(
            "target",
            sa.String(length=500),
            nullable=True,
            comment="Where the agent's code is (module:attr or file.py:attr), to resume it",
        ),
        sa.Column("user_id", sa.String(length=200), nullable=True),
        sa.Column("tenant", sa.String(length=200), nullable=True),
        sa.Column("tier", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=True),
        sa.Column("prompt_version", sa.String(length=100), nullable=True),
        sa.Column("prompt", sa.Text(), nullable=False),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("steps", sa.Integer(), server_default="0", nullable=False),
        sa.Column("requests", sa.Integer(), server_default="0", nullable=False),
        sa.Column("tool_calls", sa.Integer(), server_default="0", nullable=False),
        sa.Column("input_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("output_tokens", sa.Integer(), server_default="0", nullable=False),
        sa.Column("cost_usd", sa.Float(), server_default="0", nullable=False),
        sa.Column("executor_id", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("run_id"),
    )
    with op.batch_alter_table("tether_runs", schema=None) as batch_op:
        batch_op.create_index("ix_tether_runs_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_tether_runs_status", ["status"], unique=False)
        batch_op.create_index(
            "ix_tether_runs_tenant_created_at", ["tenant", "created_at"], unique=False
        )

    op.create_table(
        "tether_workers",
        sa.Column("executor_id", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column(
            "kind",
            sa.String(length=16),
            nullable=False,
            comment="worker, or cli for a process running its own runs",
        ),
        sa.Column(
            "status",
            sa.String(length=16),
            nullable=False,
            comment="alive, stopped (it said goodbye) or dead (reaped)",
        ),
        sa.Column("started_at", sa.Float(), nullable=False),
        sa.Column("heartbeat_at", sa.Float(), nullable=False),
        sa.Column("reaped_by", sa.String(length=200), nullable=True),
        sa.Column("reaped_at", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("executor_id"),
    )


def downgrade() -> None:
    op.drop_table("tether_workers")
    with op.batch_alter_table("tether_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_tether_runs_tenant_created_at")
        batch_op.drop_index("ix_tether_runs_status")
        batch_op.drop_index("ix_tether_runs_created_at")

    op.drop_table("tether_runs")
    with op.batch_alter_table("tether_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_tether_ledger_dedupe_key")

    op.drop_table("tether_ledger")
    op.drop_table("tether_budgets")
    with op.batch_alter_table("tether_budget_holds", schema=None) as batch_op:
        batch_op.drop_index("ix_tether_budget_holds_run_id")

    op.drop_table("tether_budget_holds")
