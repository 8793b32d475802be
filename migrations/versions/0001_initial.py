"""The system of record: accounts, balances, withdrawals and the audit trail (CONTRACT.md s. 8).

Every row but the audit trail carries `version`, the account's state version when the row was
written: the sink only overwrites a row with a newer version, so replays never move it back.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

MONEY = sa.Numeric(18, 2)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "funded_accounts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("assessment_id", sa.Text, nullable=False),
        sa.Column("tier_id", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("activated_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("closure_reason", sa.Text, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint("assessment_id", name="uq_funded_accounts_assessment_id"),
        sa.CheckConstraint("status IN ('active', 'closed')", name="ck_funded_accounts_status"),
    )
    op.create_index("ix_funded_accounts_user_id_status", "funded_accounts", ["user_id", "status"])

    op.create_table(
        "funded_virtual_accounts",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column(
            "funded_account_id",
            sa.Text,
            sa.ForeignKey("funded_accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("starting_balance", MONEY, nullable=False),
        sa.Column("current_balance", MONEY, nullable=False),
        sa.Column("peak_balance", MONEY, nullable=False),
        sa.Column("realized_pnl", MONEY, nullable=False),
        sa.Column("unrealized_pnl", MONEY, nullable=False),
        sa.Column("total_withdrawals", MONEY, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.UniqueConstraint(
            "funded_account_id", name="uq_funded_virtual_accounts_funded_account_id"
        ),
    )

    op.create_table(
        "withdrawals",
        sa.Column("id", sa.Text, primary_key=True),
        sa.Column(
            "funded_account_id",
            sa.Text,
            sa.ForeignKey("funded_accounts.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("user_id", sa.Text, nullable=False),
        sa.Column("amount", MONEY, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("requested_at", TS, nullable=False),
        sa.Column("approved_at", TS, nullable=True),
        sa.Column("completed_at", TS, nullable=True),
        sa.Column("rejected_at", TS, nullable=True),
        sa.Column("rejection_reason", sa.Text, nullable=True),
        sa.Column("stripe_payout_id", sa.Text, nullable=True),
        sa.Column("approved_by", sa.Text, nullable=True),
        sa.Column("version", sa.BigInteger, nullable=False, server_default="0"),
        sa.CheckConstraint("amount > 0", name="ck_withdrawals_amount_positive"),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'completed', 'rejected', 'failed')",
            name="ck_withdrawals_status",
        ),
    )
    op.create_index("ix_withdrawals_funded_account_id", "withdrawals", ["funded_account_id"])
    op.create_index("ix_withdrawals_user_id", "withdrawals", ["user_id"])
    op.create_index("ix_withdrawals_status", "withdrawals", ["status"])

    op.create_table(
        "account_events",
        sa.Column("event_id", sa.Text, primary_key=True),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("payload", postgresql.JSONB, nullable=False),
    )
    op.create_index(
        "ix_account_events_account_id_occurred_at", "account_events", ["account_id", "occurred_at"]
    )


def downgrade() -> None:
    op.drop_table("account_events")
    op.drop_table("withdrawals")
    op.drop_table("funded_virtual_accounts")
    op.drop_table("funded_accounts")
