"""Topic names (CONTRACT.md sections 3 and 6) and the internal ones FundedFlow owns."""

from __future__ import annotations

from dataclasses import dataclass

TIERS = "tiers"
ASSESSMENT_COMPLETED = "assessment.completed"
TRADES = "trades"
# Internal: every command that changes an account, keyed by account_id and co-partitioned with
# `trades`, so one agent is the only writer of an account.
ACCOUNT_COMMANDS = "fundedflow.account-commands"
# Internal: approved withdrawals waiting for their Stripe transfer, keyed by account_id.
PAYOUT_REQUESTS = "fundedflow.payout-requests"
# Internal: the rows of an account after each applied change, for the PostgreSQL sink.
ACCOUNT_SNAPSHOTS = "fundedflow.account-snapshots"

FACT_TOPICS: tuple[str, ...] = (
    "funded-account.created",
    "funded-account.activated",
    "funded-account.closed",
    "funded-account.locked",
    "funded-account.unlocked",
    "rules.violation-detected",
    "rules.status-changed",
    "withdrawal.requested",
    "withdrawal.approved",
    "withdrawal.completed",
    "withdrawal.rejected",
    "withdrawal.failed",
    "withdrawal.reversed",
)

INPUT_TOPICS: tuple[str, ...] = (TIERS, ASSESSMENT_COMPLETED, TRADES, ACCOUNT_COMMANDS)

# Topics that feed the accounts table: their partition count must equal the table's.
TABLE_SOURCE_TOPICS: tuple[str, ...] = (TRADES, ACCOUNT_COMMANDS, PAYOUT_REQUESTS)


ACCOUNTS_TABLE = "accounts"
# Every input id an account applied (key `account_id/event_id`), so a producer's redelivery at a
# new offset changes nothing however old it is; and settled withdrawals once they leave the
# account's value (key `withdrawal_id`). Both are written in the account's event, so they are
# co-partitioned with it (tables/accounts.py).
APPLIED_IDS_TABLE = "applied-ids"
WITHDRAWAL_ARCHIVE_TABLE = "withdrawal-archive"
TABLES: tuple[str, ...] = (ACCOUNTS_TABLE, APPLIED_IDS_TABLE, WITHDRAWAL_ARCHIVE_TABLE)

# Internal: records the PostgreSQL sink could not write because of their content (the database
# refused them, e.g. a NUL in text), set aside with the original bytes and a reason so the rest
# of the batch commits (agents/sink.py).
SINK_DLQ = "sink.dlq"


def dlq(topic: str) -> str:
    return f"{topic}.dlq"


@dataclass(frozen=True)
class TopicNames:
    """Every topic name with the deployment's prefix applied (empty outside tests)."""

    prefix: str = ""

    def name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def app_id(self) -> str:
        return f"{self.prefix}fundedflow"

    @property
    def sink_group(self) -> str:
        """The PostgreSQL sink's own consumer group (see agents/sink.py for why it has one)."""
        return f"{self.app_id}-sink"

    def changelog(self, table: str) -> str:
        """Faust's name for a table's changelog topic."""
        return f"{self.app_id}-{table}-changelog"

    def all_created(self) -> list[str]:
        bases = [
            *INPUT_TOPICS,
            *FACT_TOPICS,
            *(dlq(t) for t in INPUT_TOPICS),
            PAYOUT_REQUESTS,
            ACCOUNT_SNAPSHOTS,
            SINK_DLQ,
        ]
        return [self.name(b) for b in bases] + [self.changelog(t) for t in TABLES]
