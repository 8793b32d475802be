"""A withdrawal's reversed total: the cents of its transfer Stripe reversed so far.

A partly reversed withdrawal stays `completed` with what was reversed in `reversed_total`; a
fully reversed one is `failed` (CONTRACT.md section 5). Rows written before this migration, and
snapshots that do not carry the field, mean nothing was reversed: the default is 0.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 2)


def upgrade() -> None:
    op.add_column(
        "withdrawals",
        sa.Column("reversed_total", MONEY, nullable=False, server_default="0"),
    )


def downgrade() -> None:
    op.drop_column("withdrawals", "reversed_total")
