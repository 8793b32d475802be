from decimal import Decimal
from typing import Any

import pytest

from domain.tiers import InvalidTier, Tier, default_catalog, load_catalog, parse_tier

CONTRACT_TIER: dict[str, Any] = {
    "tier_id": "funded-100k",
    "name": "Funded 100K",
    "starting_balance": "100000.00",
    "profit_split": "0.80",
    "max_drawdown": "0.10",
    "max_risk_per_trade": "0.05",
    "min_trades": 0,
}


def test_the_contracts_tier_parses_and_goes_back_out_with_four_decimals() -> None:
    tier = parse_tier(CONTRACT_TIER)
    assert tier == Tier(
        "funded-100k",
        "Funded 100K",
        100_000_00,
        Decimal("0.8"),
        Decimal("0.1"),
        Decimal("0.05"),
        0,
    )
    assert tier.to_wire() == {
        **CONTRACT_TIER,
        "profit_split": "0.8000",
        "max_drawdown": "0.1000",
        "max_risk_per_trade": "0.0500",
    }
    assert Tier.from_wire(tier.to_wire()) == tier


def test_json_numbers_are_accepted() -> None:
    tier = parse_tier({**CONTRACT_TIER, "starting_balance": 100000, "profit_split": Decimal("0.8")})
    assert tier.starting_balance_cents == 100_000_00


def test_bundled_catalog() -> None:
    tiers = {t.tier_id: t for t in default_catalog()}
    assert {"funded-10k", "funded-25k", "funded-50k", "funded-100k", "funded-200k"} <= set(tiers)
    for tier in tiers.values():
        if tier.rules is None:
            assert tier.max_drawdown is not None
            assert Decimal("0.10") <= tier.max_drawdown <= Decimal("0.15")
            assert tier.max_risk_per_trade == Decimal("0.05")
        else:
            assert tier.max_drawdown is None and tier.max_risk_per_trade is None
            assert tier.rules.max_loss is not None and tier.rules.daily_loss is not None
        assert tier.profit_split >= Decimal("0.80")
        assert tier.min_trades == 0
    # One tier of each style of the contract's section 4a, named by its terms.
    actions = {t.rules.daily_loss.action for t in tiers.values() if t.rules and t.rules.daily_loss}
    assert actions == {"close", "lock"}
    assert any(t.rules and t.rules.consistency for t in tiers.values())
    assert tiers["funded-100k"].starting_balance_cents == 100_000_00


def _without(name: str) -> dict[str, Any]:
    return {k: v for k, v in CONTRACT_TIER.items() if k != name}


@pytest.mark.parametrize(
    ("obj", "reason"),
    [
        ("funded-100k", "invalid_tier"),
        (None, "invalid_tier"),
        (_without("tier_id"), "missing_field: tier_id"),
        (_without("min_trades"), "missing_field: min_trades"),
        ({**CONTRACT_TIER, "tier_id": 7}, "invalid_field: tier_id must be a string"),
        ({**CONTRACT_TIER, "tier_id": ""}, "invalid_field: tier_id"),
        ({**CONTRACT_TIER, "name": " padded"}, "invalid_field: name"),
        ({**CONTRACT_TIER, "starting_balance": "0.00"}, "starting_balance must be positive"),
        ({**CONTRACT_TIER, "starting_balance": "-1.00"}, "starting_balance must be positive"),
        ({**CONTRACT_TIER, "starting_balance": "1.005"}, "invalid_field: starting_balance"),
        ({**CONTRACT_TIER, "profit_split": "0"}, "profit_split must be above 0 and at most 1"),
        ({**CONTRACT_TIER, "profit_split": "1.01"}, "profit_split must be above 0"),
        ({**CONTRACT_TIER, "profit_split": "NaN"}, "invalid_field: profit_split"),
        ({**CONTRACT_TIER, "max_drawdown": "0"}, "max_drawdown must be above 0"),
        ({**CONTRACT_TIER, "max_drawdown": "1.5"}, "max_drawdown must be above 0"),
        ({**CONTRACT_TIER, "max_risk_per_trade": "-0.05"}, "invalid_field: max_risk_per_trade"),
        ({**CONTRACT_TIER, "max_risk_per_trade": "0"}, "max_risk_per_trade must be above 0"),
        ({**CONTRACT_TIER, "min_trades": -1}, "min_trades must not be negative"),
        ({**CONTRACT_TIER, "min_trades": "0"}, "min_trades must be an integer"),
        ({**CONTRACT_TIER, "min_trades": 1.0}, "min_trades must be an integer"),
        ({**CONTRACT_TIER, "min_trades": True}, "min_trades must be an integer"),
    ],
)
def test_invalid_tiers_are_refused_with_a_reason(obj: object, reason: str) -> None:
    with pytest.raises(InvalidTier) as caught:
        parse_tier(obj)
    assert reason in caught.value.reason


def test_a_threshold_of_exactly_one_is_allowed() -> None:
    tier = parse_tier({**CONTRACT_TIER, "profit_split": "1", "max_drawdown": "1.0"})
    assert tier.profit_split == 1 and tier.max_drawdown == 1


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("not json", "invalid_catalog"),
        ('{"tier_id": "x"}', "invalid_catalog"),
        ('[{"tier_id": "x"}]', "missing_field"),
    ],
)
def test_bad_catalogs(text: str, reason: str) -> None:
    with pytest.raises(InvalidTier, match=reason):
        load_catalog(text)


def test_catalog_refuses_duplicate_ids() -> None:
    import json

    text = json.dumps([CONTRACT_TIER, CONTRACT_TIER])
    with pytest.raises(InvalidTier, match="more than once"):
        load_catalog(text)


def test_catalog_numbers_never_become_floats() -> None:
    tiers = load_catalog(
        '[{"tier_id": "t", "name": "T", "starting_balance": 1000.10, "profit_split": 0.8,'
        ' "max_drawdown": 0.1, "max_risk_per_trade": 0.05, "min_trades": 0}]'
    )
    assert tiers[0].starting_balance_cents == 1000_10
    assert tiers[0].profit_split == Decimal("0.8")


def test_a_tier_with_rules_refuses_the_legacy_terms_and_bad_rules() -> None:
    legacy = ("max_drawdown", "max_risk_per_trade")
    base = {k: v for k, v in CONTRACT_TIER.items() if k not in legacy}
    rules = {"max_loss": {"mode": "static", "limit": "0.10"}}
    tier = parse_tier({**base, "rules": rules})
    assert tier.rules is not None and tier.max_drawdown is None
    assert tier.to_wire()["rules"] == {"max_loss": {"mode": "static", "limit": "0.1000"}}
    assert parse_tier(tier.to_wire()) == tier
    with pytest.raises(InvalidTier, match="max_drawdown has no meaning"):
        parse_tier({**base, "rules": rules, "max_drawdown": "0.10"})
    with pytest.raises(InvalidTier, match="unknown_field"):
        parse_tier({**base, "rules": {"max_loss": {"mode": "static", "limit": "0.1", "x": 1}}})
    with pytest.raises(InvalidTier, match="amount must not exceed"):
        parse_tier({**base, "rules": {"max_loss": {"mode": "static", "amount": "200000.00"}}})
