"""A rule-pack account's day on its balances row (CONTRACT.md section 4a, for reporting).

Added to `funded_virtual_accounts`, not `funded_accounts`: like the balances they change with
the account's trades and come from the same snapshot with the same `version`, while
`funded_accounts` holds who and what the account is and when it opened or closed, which
changes a handful of times in its life (and stays narrow for the per-user listings).

- `trading_day` (date): the account's current trading day in the tier's reset zone;
  `day_resets_at` (timestamptz): the instant it ends.
- `day_anchor` (money): the daily-loss anchor taken at the day's start; `day_pnl` (money): the
  day's closed P&L so far (realized now less realized at the day's start).
- `locked_until` (timestamptz): a daily loss that locks: no new position until then.
- `trading_days`, `winning_days` (integer): the payout gates' counters, the current day
  included; `winning_days` is NULL when the pack has no `min_winning_days`.

They are the figures of the account's last applied change: an idle account's row keeps its
last day (a read rolls it over on the fly, the row does not), and a `locked_until` in the past
means the lock is over. A legacy tier's account leaves every one of them NULL, and so do rows
written before this migration until the account's next change. The checks keep that reading
true: the day columns are all set or all NULL, and the counters are not negative.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

TABLE = "funded_virtual_accounts"
MONEY = sa.Numeric(18, 2)
TS = sa.DateTime(timezone=True)
# Set together for a rule-pack account; `locked_until` and `winning_days` may be NULL on their
# own (no lock; no min_winning_days), but only on a row that has a day.
_DAY = ("day_resets_at", "day_anchor", "day_pnl", "trading_days")
CK_DAY = "ck_funded_virtual_accounts_day_together"
CK_COUNTS = "ck_funded_virtual_accounts_day_counts"


def upgrade() -> None:
    op.add_column(TABLE, sa.Column("trading_day", sa.Date, nullable=True))
    op.add_column(TABLE, sa.Column("day_resets_at", TS, nullable=True))
    op.add_column(TABLE, sa.Column("day_anchor", MONEY, nullable=True))
    op.add_column(TABLE, sa.Column("day_pnl", MONEY, nullable=True))
    op.add_column(TABLE, sa.Column("locked_until", TS, nullable=True))
    op.add_column(TABLE, sa.Column("trading_days", sa.Integer, nullable=True))
    op.add_column(TABLE, sa.Column("winning_days", sa.Integer, nullable=True))
    together = " AND ".join(f"(trading_day IS NULL) = ({c} IS NULL)" for c in _DAY)
    op.create_check_constraint(
        CK_DAY,
        TABLE,
        f"{together} AND (trading_day IS NOT NULL OR "
        "(locked_until IS NULL AND winning_days IS NULL))",
    )
    op.create_check_constraint(CK_COUNTS, TABLE, "trading_days >= 0 AND winning_days >= 0")


def downgrade() -> None:
    op.drop_constraint(CK_COUNTS, TABLE, type_="check")
    op.drop_constraint(CK_DAY, TABLE, type_="check")
    for column in (
        "winning_days",
        "trading_days",
        "locked_until",
        "day_pnl",
        "day_anchor",
        "day_resets_at",
        "trading_day",
    ):
        op.drop_column(TABLE, column)
