"""A small story-telling harness over `domain.account.handle` for the unit tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from domain.account import DictMemory, Outcome, step
from domain.events import (
    ActivateAccount,
    ApproveWithdrawal,
    Command,
    PayoutFailed,
    PayoutSucceeded,
    PositionClosed,
    PositionOpened,
    PositionUpdated,
    RejectWithdrawal,
    RequestWithdrawal,
    ReverseTransfer,
    TradeEvent,
    account_id_for,
)
from domain.money import parse_money
from domain.state import AccountState
from domain.tiers import Tier

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
USER = "usr_42"
DESTINATION = "acct_1Nv0FGQ9RKHgCVdK"


def tier(**changes: Any) -> Tier:
    """funded-100k as in the contract, with optional changes."""
    base = Tier(
        tier_id="funded-100k",
        name="Funded 100K",
        starting_balance_cents=100_000_00,
        profit_split=Decimal("0.80"),
        max_drawdown=Decimal("0.10"),
        max_risk_per_trade=Decimal("0.05"),
        min_trades=0,
    )
    return replace(base, **changes)


def cents(amount: str) -> int:
    return parse_money(amount)


cents_of = cents


def types(outcome: Outcome) -> list[str]:
    return [fact["type"] for fact in outcome.facts]


class Story:
    """One account, a clock that ticks a minute per input, and readable steps."""

    def __init__(
        self,
        terms: Tier | None = None,
        *,
        assessment_id: str = "asm_7",
        memory: DictMemory | None = None,
    ) -> None:
        self.tier = terms or tier()
        # The applied-ids memory and withdrawal archive the agent keeps in its tables.
        self.memory = memory if memory is not None else DictMemory()
        self.clock = T0
        self.seq = 0
        self.account_id = account_id_for(assessment_id)
        self.last: Outcome | None = None
        self.activation = ActivateAccount(
            event_id="act-1",
            account_id=self.account_id,
            user_id=USER,
            assessment_id=assessment_id,
            tier=self.tier,
            activated_at=T0,
        )
        self.state_or_none: AccountState | None = None
        self.send(self.activation)

    @property
    def state(self) -> AccountState:
        assert self.state_or_none is not None
        return self.state_or_none

    def next_id(self, prefix: str) -> str:
        self.seq += 1
        return f"{prefix}-{self.seq}"

    def tick(self) -> datetime:
        self.clock += timedelta(minutes=1)
        return self.clock

    def send(self, message: Command | TradeEvent) -> Outcome:
        outcome = step(self.state_or_none, message, self.memory)
        self.memory.record(message, outcome)
        if outcome.state is not None:
            self.state_or_none = outcome.state
        self.last = outcome
        return outcome

    # --- trades

    def open(self, position_id: str = "p-1", notional: str = "1000.00") -> Outcome:
        return self.send(self.opened(position_id, notional))

    def opened(self, position_id: str = "p-1", notional: str = "1000.00") -> PositionOpened:
        return PositionOpened(
            event_id=self.next_id("t"),
            account_id=self.account_id,
            position_id=position_id,
            symbol="EURUSD",
            side="long",
            quantity=Decimal("2.5"),
            price=Decimal("1.0850"),
            notional_cents=cents(notional),
            occurred_at=self.tick(),
        )

    def update(self, position_id: str, pnl: str, notional: str | None = None) -> Outcome:
        return self.send(self.updated(position_id, pnl, notional))

    def updated(self, position_id: str, pnl: str, notional: str | None = None) -> PositionUpdated:
        return PositionUpdated(
            event_id=self.next_id("t"),
            account_id=self.account_id,
            position_id=position_id,
            unrealized_pnl_cents=cents(pnl),
            notional_cents=None if notional is None else cents(notional),
            occurred_at=self.tick(),
        )

    def close(self, position_id: str, pnl: str) -> Outcome:
        return self.send(self.closed(position_id, pnl))

    def closed(self, position_id: str, pnl: str) -> PositionClosed:
        return PositionClosed(
            event_id=self.next_id("t"),
            account_id=self.account_id,
            position_id=position_id,
            realized_pnl_cents=cents(pnl),
            occurred_at=self.tick(),
        )

    def trade(self, pnl: str, notional: str = "1000.00") -> Outcome:
        """A whole round trip: open and close a position for `pnl`."""
        position_id = self.next_id("p")
        self.open(position_id, notional)
        return self.close(position_id, pnl)

    # --- withdrawals

    def requested(
        self,
        amount: str,
        withdrawal_id: str | None = None,
        *,
        method: str = "stripe_connect",
        destination: str = DESTINATION,
        user_id: str = USER,
    ) -> RequestWithdrawal:
        return RequestWithdrawal(
            event_id=self.next_id("cmd"),
            account_id=self.account_id,
            user_id=user_id,
            withdrawal_id=withdrawal_id or self.next_id("wd"),
            amount_cents=cents(amount),
            payment_method=method,
            destination=destination,
            requested_at=self.tick(),
        )

    def request(self, amount: str, withdrawal_id: str | None = None, **kw: Any) -> Outcome:
        return self.send(self.requested(amount, withdrawal_id, **kw))

    def withdraw(self, amount: str) -> str:
        """Request and expect acceptance; the new withdrawal's id."""
        outcome = self.request(amount)
        assert outcome.reply is not None and outcome.reply.accepted, outcome.reply
        assert outcome.reply.withdrawal is not None
        return str(outcome.reply.withdrawal["id"])

    def approve(self, withdrawal_id: str, admin: str = "adm_1") -> Outcome:
        return self.send(
            ApproveWithdrawal(
                event_id=self.next_id("cmd"),
                account_id=self.account_id,
                withdrawal_id=withdrawal_id,
                admin_id=admin,
                at=self.tick(),
            )
        )

    def reject(self, withdrawal_id: str, reason: str = "kyc", admin: str = "adm_1") -> Outcome:
        return self.send(
            RejectWithdrawal(
                event_id=self.next_id("cmd"),
                account_id=self.account_id,
                withdrawal_id=withdrawal_id,
                admin_id=admin,
                reason=reason,
                at=self.tick(),
            )
        )

    def paid(self, withdrawal_id: str, transfer_id: str | None = None) -> Outcome:
        return self.send(
            PayoutSucceeded(
                event_id=self.next_id("pay"),
                account_id=self.account_id,
                withdrawal_id=withdrawal_id,
                stripe_transfer_id=transfer_id or f"tr_{withdrawal_id}",
                at=self.tick(),
            )
        )

    def payout_failed(self, withdrawal_id: str, reason: str = "insufficient_funds") -> Outcome:
        return self.send(
            PayoutFailed(
                event_id=self.next_id("pay"),
                account_id=self.account_id,
                withdrawal_id=withdrawal_id,
                reason=reason,
                at=self.tick(),
            )
        )

    def reversed(
        self,
        withdrawal_id: str,
        transfer_id: str | None = None,
        amount_reversed: str | None = None,
    ) -> Outcome:
        """Stripe's `transfer.reversed`; `amount_reversed` is the transfer's cumulative figure
        (default: all of it)."""
        w = self.state.withdrawals.get(withdrawal_id) or self.memory.archived(
            self.account_id, withdrawal_id
        )
        full = w.amount_cents if w is not None else 0
        cents = full if amount_reversed is None else cents_of(amount_reversed)
        return self.send(
            ReverseTransfer(
                event_id=self.next_id("wh"),
                account_id=self.account_id,
                withdrawal_id=withdrawal_id,
                stripe_transfer_id=transfer_id or f"tr_{withdrawal_id}",
                amount_reversed_cents=cents,
                at=self.tick(),
            )
        )

    def withdrawal(self, withdrawal_id: str) -> dict[str, Any]:
        w = self.state.withdrawals.get(withdrawal_id) or self.memory.archived(
            self.account_id, withdrawal_id
        )
        assert w is not None, withdrawal_id
        return w.to_wire(self.account_id)
