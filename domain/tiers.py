"""Funded tiers: the terms an account gets at activation (CONTRACT section 3, `tiers`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from functools import cached_property
from importlib import resources
from typing import Any

from domain.daybook import PackTerms
from domain.fields import FieldReader
from domain.money import format_cents, format_ratio
from domain.rulepacks import InvalidRules, RulePack, parse_rules

__all__ = ["InvalidTier", "Tier", "default_catalog", "load_catalog", "parse_tier", "stored_tier"]

_ONE = Decimal(1)


class InvalidTier(ValueError):
    """A tier that cannot be used; `reason` is `code: detail`."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.reason = f"{code}: {detail}"
        super().__init__(self.reason)


@dataclass(frozen=True)
class Tier:
    """A tier's terms. A legacy tier (no `rules`) has `max_drawdown` and `max_risk_per_trade`
    (CONTRACT section 4); a tier with a rule pack (section 4a) has `rules` and neither of
    them. `min_trades` (section 5) may go with either (0 when a pack tier leaves it out)."""

    tier_id: str
    name: str
    starting_balance_cents: int
    profit_split: Decimal
    max_drawdown: Decimal | None
    max_risk_per_trade: Decimal | None
    min_trades: int
    rules: RulePack | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "tier_id": self.tier_id,
            "name": self.name,
            "starting_balance": format_cents(self.starting_balance_cents),
            "profit_split": format_ratio(self.profit_split),
        }
        if self.max_drawdown is not None:
            wire["max_drawdown"] = format_ratio(self.max_drawdown)
        if self.max_risk_per_trade is not None:
            wire["max_risk_per_trade"] = format_ratio(self.max_risk_per_trade)
        wire["min_trades"] = self.min_trades
        if self.rules is not None:
            wire["rules"] = self.rules.to_wire()
        return wire

    @cached_property
    def wire(self) -> dict[str, Any]:
        """`to_wire()` made once per tier object (the stored account value carries it on every
        write); callers must not change it."""
        return self.to_wire()

    @cached_property
    def terms(self) -> PackTerms | None:
        """The rule pack worked out against the starting balance, once per tier object (None
        for a legacy tier)."""
        if self.rules is None:
            return None
        return PackTerms.of(self.rules, self.starting_balance_cents)

    @classmethod
    def from_wire(cls, obj: object) -> Tier:
        return parse_tier(obj)


def _in_unit_interval(fields: FieldReader, name: str) -> Decimal:
    value = fields.ratio(name)
    if not (0 < value <= _ONE):
        fields.fail("invalid_field", f"{name} must be above 0 and at most 1")
    return value


def parse_tier(obj: object) -> Tier:
    """A validated tier from its wire form; raises `InvalidTier` naming the first problem."""
    if not isinstance(obj, Mapping):
        raise InvalidTier("invalid_tier", "a tier must be a JSON object")
    fields = FieldReader(obj, InvalidTier)
    tier_id = fields.string("tier_id")
    name = fields.string("name")
    starting_balance_cents = fields.money("starting_balance")
    if starting_balance_cents <= 0:
        fields.fail("invalid_field", "starting_balance must be positive")
    profit_split = _in_unit_interval(fields, "profit_split")
    rules: RulePack | None = None
    max_drawdown: Decimal | None = None
    max_risk_per_trade: Decimal | None = None
    if "rules" in obj:
        for legacy in ("max_drawdown", "max_risk_per_trade"):
            if legacy in obj:
                fields.fail(
                    "invalid_field",
                    f"{legacy} has no meaning in a tier with rules (use rules.max_loss and "
                    "rules.risk_per_trade)",
                )
        try:
            rules = parse_rules(obj["rules"], starting_balance_cents=starting_balance_cents)
        except InvalidRules as exc:
            raise InvalidTier(exc.code, exc.detail) from None
    else:
        max_drawdown = _in_unit_interval(fields, "max_drawdown")
        max_risk_per_trade = _in_unit_interval(fields, "max_risk_per_trade")
    min_trades = fields.integer("min_trades") if "min_trades" in obj or rules is None else 0
    if min_trades < 0:
        fields.fail("invalid_field", "min_trades must not be negative")
    return Tier(
        tier_id=tier_id,
        name=name,
        starting_balance_cents=starting_balance_cents,
        profit_split=profit_split,
        max_drawdown=max_drawdown,
        max_risk_per_trade=max_risk_per_trade,
        min_trades=min_trades,
        rules=rules,
    )


# Tiers read back from stored account values, by their canonical JSON: an account's value is
# decoded on every batch, and parsing a rule pack (zones, ratios) costs more than the rest of
# the value. Tier objects are immutable, so one may serve every account that kept those terms.
_STORED_TIERS: dict[str, Tier] = {}
_STORED_TIERS_MAX = 4096


def stored_tier(obj: object) -> Tier:
    """`parse_tier` for a tier kept in an account's value, remembered by its exact terms."""
    try:
        key = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    except (TypeError, ValueError):
        return parse_tier(obj)
    tier = _STORED_TIERS.get(key)
    if tier is None:
        tier = parse_tier(obj)
        if len(_STORED_TIERS) >= _STORED_TIERS_MAX:
            _STORED_TIERS.clear()
        _STORED_TIERS[key] = tier
    return tier


def load_catalog(text: str) -> list[Tier]:
    """Tiers from a JSON array of wire-form tiers (numbers parsed as Decimal, never float)."""
    try:
        data = json.loads(text, parse_float=Decimal)
    except ValueError as exc:
        raise InvalidTier("invalid_catalog", f"not JSON: {exc}") from exc
    if not isinstance(data, list):
        raise InvalidTier("invalid_catalog", "a catalog must be a JSON array of tiers")
    tiers = [parse_tier(item) for item in data]
    ids = [tier.tier_id for tier in tiers]
    if len(set(ids)) != len(ids):
        raise InvalidTier("invalid_catalog", "tier_id appears more than once")
    return tiers


def default_catalog() -> list[Tier]:
    """The bundled funded tiers (`domain/data/tiers.json`)."""
    text = resources.files("domain").joinpath("data/tiers.json").read_text(encoding="utf-8")
    return load_catalog(text)
