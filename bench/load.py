"""Accounts and trade events for the benchmarks.

The mix is the trading engine's: every position lives through one `position_opened`, three
`position_updated` and one `position_closed`, so the events are 20 % opens, 60 % updates and
20 % closes, interleaved at random across the accounts (each account's own events in order).
Amounts keep the rules mostly `safe` (exposure at most 3.5 % of a 100K balance against a 5 %
limit, swings of a few thousand against a 10 % drawdown), as on most real accounts; a few
status changes still happen.

`TradeMix.next` picks the account of each event at random; `TradeMix.deal` gives each account an
exact number of events (the mixes of `bench.run --only mixes`: young, deep, long-history and hot
accounts; `skewed_counts` makes the hot one). Left alone, an account's realized P&L is a random
walk that sooner or later breaks the drawdown rule and closes the account (18 of 40 simulated
accounts within 32,500 events), after which its events are dead letters; `pnl_band_cents` keeps
it within a band instead (`LONG_HISTORY_BAND_CENTS`), so an account stays open however long it
trades.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from domain.events import account_id_for

TIER = "funded-100k"
# A bundled tier with every rule of a rule pack on (CONTRACT section 4a), for `--only packs`.
EVERY_RULE_TIER = "funded-100k-every-rule-eod-10-soft-daily-5-new-york"

# A 100K account whose realized P&L stays within +-2,000.00 (open positions swing +-2,500.00)
# has a drawdown of at most (104,500 - 95,500) / 104,500 = 8.6 % (limit 10 %) and a risk per
# trade of at most 4,100 / 95,500 = 4.3 % (limit 5 %): never a violation.
LONG_HISTORY_BAND_CENTS = 200_000
_CLOSE_PNL_CENTS = (-100_000, 120_001)  # realized P&L of a close: randrange bounds, a slight edge


def now_ts() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def money(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    cents = abs(cents)
    return f"{sign}{cents // 100}.{cents % 100:02d}"


@dataclass(frozen=True)
class Account:
    index: int
    assessment_id: str
    account_id: str
    user_id: str


def make_accounts(run: str, group: str, start: int, count: int) -> list[Account]:
    out = []
    for i in range(start, start + count):
        asm = f"asm-{run}-{group}-{i}"
        out.append(Account(i, asm, account_id_for(asm), f"usr_{group}_{i}"))
    return out


def assessment(a: Account, tier: str = TIER) -> dict[str, Any]:
    return {
        "event_id": f"e-{a.assessment_id}",
        "assessment_id": a.assessment_id,
        "user_id": a.user_id,
        "tier_id": tier,
        "status": "passed",
        "completed_at": now_ts(),
    }


def opened(account_id: str, position_id: str, event_id: str, notional_cents: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "position_opened",
        "account_id": account_id,
        "position_id": position_id,
        "symbol": "EURUSD",
        "side": "long",
        "quantity": "2.5",
        "price": "1.0850",
        "notional": money(notional_cents),
        "occurred_at": now_ts(),
    }


def updated(
    account_id: str, position_id: str, event_id: str, pnl_cents: int, notional_cents: int
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "position_updated",
        "account_id": account_id,
        "position_id": position_id,
        "unrealized_pnl": money(pnl_cents),
        "notional": money(notional_cents),
        "occurred_at": now_ts(),
    }


def closed(account_id: str, position_id: str, event_id: str, pnl_cents: int) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "type": "position_closed",
        "account_id": account_id,
        "position_id": position_id,
        "realized_pnl": money(pnl_cents),
        "occurred_at": now_ts(),
    }


@dataclass
class _Lifecycle:
    """Where one account is in its current position's life."""

    positions: int = 0
    step: int = 0  # 0 open, 1-3 updates, 4 close
    notional_cents: int = 0
    realized_cents: int = 0  # sum of the account's closes so far


@dataclass
class TradeMix:
    """Trade events across `accounts`, 20/60/20 opens/updates/closes, each account in order."""

    accounts: list[Account]
    run: str
    seed: int = 7
    pnl_band_cents: int | None = None  # keep each account's realized P&L within +- this
    produced: int = 0
    counts: dict[str, int] = field(default_factory=lambda: {"opened": 0, "updated": 0, "closed": 0})
    _rng: random.Random = field(init=False)
    _life: dict[str, _Lifecycle] = field(init=False)

    def __post_init__(self) -> None:
        if self.pnl_band_cents is not None and self.pnl_band_cents < max(
            abs(x) for x in _CLOSE_PNL_CENTS
        ):
            raise ValueError("pnl_band_cents must be at least the largest close")
        self._rng = random.Random(self.seed)
        self._life = {a.account_id: _Lifecycle() for a in self.accounts}

    def next(self) -> tuple[str, dict[str, Any]]:
        """The next event of an account picked at random."""
        return self._event(self.accounts[self._rng.randrange(len(self.accounts))])

    def _event(self, account: Account) -> tuple[str, dict[str, Any]]:
        """The next event in `account`'s position life: open, three updates, close."""
        rng = self._rng
        acct = account.account_id
        life = self._life[acct]
        self.produced += 1
        event_id = f"t-{self.run}-{self.produced}"
        position_id = f"p-{life.positions}"
        if life.step == 0:
            life.notional_cents = rng.randrange(50_000, 350_000)
            event = opened(acct, position_id, event_id, life.notional_cents)
            self.counts["opened"] += 1
        elif life.step < 4:
            life.notional_cents = max(10_000, life.notional_cents + rng.randrange(-20_000, 20_001))
            pnl = rng.randrange(-250_000, 250_001)
            event = updated(acct, position_id, event_id, pnl, life.notional_cents)
            self.counts["updated"] += 1
        else:
            # A slight edge keeps accounts from drifting into their drawdown limit.
            pnl = rng.randrange(*_CLOSE_PNL_CENTS)
            band = self.pnl_band_cents
            if band is not None and abs(life.realized_cents + pnl) > band:
                pnl = -pnl  # mirrored: back inside the band (band >= the largest close)
            life.realized_cents += pnl
            event = closed(acct, position_id, event_id, pnl)
            self.counts["closed"] += 1
        life.step += 1
        if life.step == 5:
            life.step = 0
            life.positions += 1
        return acct, event

    def batch(self, n: int) -> list[tuple[str, str, dict[str, Any]]]:
        out = []
        for _ in range(n):
            acct, event = self.next()
            out.append(("trades", acct, event))
        return out

    def deal(self, per_account: Sequence[int]) -> list[tuple[str, str, dict[str, Any]]]:
        """Exactly `per_account[i]` events for `accounts[i]`, interleaved at random across the
        accounts (each account's own events in order, continuing where its last ones ended)."""
        if len(per_account) != len(self.accounts):
            raise ValueError("one count per account")
        order = [i for i, k in enumerate(per_account) for _ in range(k)]
        self._rng.shuffle(order)
        out = []
        for i in order:
            acct, event = self._event(self.accounts[i])
            out.append(("trades", acct, event))
        return out

    def mix(self) -> dict[str, float]:
        total = sum(self.counts.values()) or 1
        return {k: round(v / total, 3) for k, v in self.counts.items()}


def skewed_counts(
    accounts: int, events: int, hot_accounts: float = 0.01, hot_events: float = 0.5
) -> list[int]:
    """Events per account when a share `hot_accounts` of the accounts (the first ones, at least
    one) gets a share `hot_events` of the events and the others share the rest evenly."""
    hot = max(1, round(accounts * hot_accounts))
    if hot >= accounts:
        raise ValueError("the hot accounts must be fewer than all of them")
    to_hot = round(events * hot_events)
    each, extra = divmod(to_hot, hot)
    counts = [each + (1 if i < extra else 0) for i in range(hot)]
    each, extra = divmod(events - to_hot, accounts - hot)
    counts += [each + (1 if i < extra else 0) for i in range(accounts - hot)]
    return counts


def shares(items: Sequence[tuple[str, str, dict[str, Any]]]) -> dict[str, float]:
    """Opens / updates / closes among published trade events, as shares."""
    counts = {"opened": 0, "updated": 0, "closed": 0}
    for _, _, event in items:
        kind = str(event.get("type", "")).removeprefix("position_")
        if kind in counts:
            counts[kind] += 1
    total = sum(counts.values()) or 1
    return {k: round(v / total, 3) for k, v in counts.items()}
