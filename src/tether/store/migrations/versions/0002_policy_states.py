"""shared policy state: circuit breakers and rate-limit buckets

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tether_policy_states",
        sa.Column(
            "key",
            sa.String(length=400),
            nullable=False,
            comment="breaker:<target> (a circuit) or ratelimit:<bucket> (a token bucket)",
        ),
        sa.Column(
            "state",
            sa.Text(),
            nullable=True,
            comment="JSON; NULL for a key seen but never written",
        ),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key"),
    )
    with op.batch_alter_table("tether_policy_states", schema=None) as batch_op:
        batch_op.create_index("ix_tether_policy_states_updated_at", ["updated_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tether_policy_states", schema=None) as batch_op:
        batch_op.drop_index("ix_tether_policy_states_updated_at")
    op.drop_table("tether_policy_states")
