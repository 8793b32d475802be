"""Funded tiers: the terms an account gets at activation (CONTRACT section 3, `tiers`)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from importlib import resources
from typing import Any

from domain.fields import FieldReader
from domain.money import format_cents, format_ratio

__all__ = ["InvalidTier", "Tier", "default_catalog", "load_catalog", "parse_tier"]

_ONE = Decimal(1)


class InvalidTier(ValueError):
    """A tier that cannot be used; `reason` is `code: detail`."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.reason = f"{code}: {detail}"
        super().__init__(self.reason)


@dataclass(frozen=True)
class Tier:
    tier_id: str
    name: str
    starting_balance_cents: int
    profit_split: Decimal
    max_drawdown: Decimal
    max_risk_per_trade: Decimal
    min_trades: int

    def to_wire(self) -> dict[str, Any]:
        return {
            "tier_id": self.tier_id,
            "name": self.name,
            "starting_balance": format_cents(self.starting_balance_cents),
            "profit_split": format_ratio(self.profit_split),
            "max_drawdown": format_ratio(self.max_drawdown),
            "max_risk_per_trade": format_ratio(self.max_risk_per_trade),
            "min_trades": self.min_trades,
        }

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
    max_drawdown = _in_unit_interval(fields, "max_drawdown")
    max_risk_per_trade = _in_unit_interval(fields, "max_risk_per_trade")
    min_trades = fields.integer("min_trades")
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
    )


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
