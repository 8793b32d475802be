"""The OpenAPI 3.1 document of the HTTP API (CONTRACT.md section 7), built in code.

It describes what the views answer: every route, every status code a route can give, the
bodies' required fields (responses leave `additionalProperties` open, so a new field is not a
break). Served at `GET /openapi.json`; `scripts/export_openapi.py` writes the same text to
`docs/openapi.json`, and a unit test keeps the two equal.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from app.breaches import MAX_BREACHES
from views.context import WebContext
from views.http import api, page

__all__ = ["OPENAPI_PATH", "document", "register", "render"]

OPENAPI_PATH = "/openapi.json"
API_VERSION = "0.3.0"

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: Schema) -> Schema:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(required: list[str], properties: dict[str, Schema], **extra: Any) -> Schema:
    """A response object: the listed fields must be there; others may be added later."""
    return {
        "type": "object",
        "required": required,
        "properties": properties,
        "additionalProperties": True,
        **extra,
    }


# --- schema fragments -----------------------------------------------------------------------

MONEY: Schema = {
    "type": "string",
    "pattern": r"^-?[0-9]+\.[0-9]{2}$",
    "description": "USD with exactly two decimals, as a string.",
    "examples": ["1250.50"],
}
RATIO: Schema = {
    "type": "string",
    "pattern": r"^[0-9]+\.[0-9]{4}$",
    "description": "A non-negative decimal ratio with four decimals, as a string.",
    "examples": ["0.8000"],
}
TIMESTAMP: Schema = {
    "type": "string",
    "format": "date-time",
    "pattern": r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{6})?Z$",
    "description": "RFC 3339 in UTC (`Z`); microseconds only when non-zero.",
    "examples": ["2026-11-23T10:00:00Z"],
}
DECIMAL_TEXT: Schema = {
    "type": "string",
    "pattern": r"^[0-9]+(\.[0-9]+)?$",
    "description": "A positive decimal as given by the trading engine (not money).",
}

ACCOUNT_STATUSES = ["active", "closed"]
WITHDRAWAL_STATUSES = ["pending", "approved", "completed", "rejected", "failed"]
RULE_STATUSES = ["safe", "warning", "danger", "violation"]
BALANCE_FIELDS = [
    "starting_balance",
    "current_balance",
    "peak_balance",
    "realized_pnl",
    "unrealized_pnl",
    "total_withdrawals",
]
REQUEST_REFUSALS = [
    "account_not_active",
    "open_positions",
    "min_trades_not_met",
    "below_minimum",
    "exceeds_withdrawable",
    "invalid_amount",
    "unsupported_payment_method",
    "invalid_destination",
    "too_many_open_withdrawals",
    "min_trading_days_not_met",
    "min_winning_days_not_met",
    "consistency_not_met",
    "payout_interval_not_met",
]

EXAMPLE_ACCOUNT_ID = "fa_0123456789abcdef0123456789abcdef"
EXAMPLE_WITHDRAWAL_ID = "wd_0123456789abcdef0123456789abcdef_0123456789abcdef"


def _error(codes: list[str] | None = None) -> Schema:
    code: Schema = {"type": "string"}
    if codes:
        code["enum"] = codes
    return {
        "allOf": [_ref("Error")],
        "properties": {"error": {"properties": {"code": code}}},
    }


def _schemas() -> dict[str, Schema]:
    balances = {name: _ref("Money") for name in BALANCE_FIELDS}
    summary_fields = [
        "id",
        "status",
        "tier_id",
        "activated_at",
        "closed_at",
        "closure_reason",
        *BALANCE_FIELDS,
        "withdrawable_amount",
        "withdrawals",
    ]
    rule = _object(
        ["value", "threshold", "status", "remaining", "floor"],
        {
            "value": {
                "anyOf": [
                    {"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{4}$"},
                    {"type": "null"},
                ],
                "description": (
                    "null when unbounded (positions open on a balance of zero or less); a "
                    "loss rule's value is negative while the equity is more than the "
                    "allowance above its floor"
                ),
            },
            "threshold": _ref("Ratio"),
            "status": {"type": "string", "enum": RULE_STATUSES},
            "remaining": {
                **_ref("Money"),
                "description": "what the equity can still lose before the breach",
            },
            "floor": {**_nullable(_ref("Money")), "description": "null for risk_per_trade"},
        },
    )
    gate = _object(
        ["gate", "passed", "value", "required", "message"],
        {
            "gate": {"type": "string"},
            "passed": {"type": "boolean"},
            "value": {"type": "string"},
            "required": {"type": "string"},
            "message": {"type": "string"},
        },
    )
    return {
        "Money": MONEY,
        "Ratio": RATIO,
        "Timestamp": TIMESTAMP,
        "NullableTimestamp": _nullable(_ref("Timestamp")),
        "Error": _object(
            ["error"],
            {
                "error": _object(
                    ["code", "message"],
                    {
                        "code": {"type": "string"},
                        "message": {"type": "string"},
                        "details": {
                            "type": "object",
                            "description": (
                                "A payout gate's refusal: the failing gate (`gate`, `passed`, "
                                "`value`, `required`, `message`)."
                            ),
                        },
                    },
                )
            },
        ),
        "Tier": _object(
            ["tier_id", "name", "starting_balance", "profit_split", "min_trades"],
            {
                "tier_id": {"type": "string"},
                "name": {"type": "string"},
                "starting_balance": _ref("Money"),
                "profit_split": _ref("Ratio"),
                "max_drawdown": {**_ref("Ratio"), "description": "a tier without `rules`"},
                "max_risk_per_trade": {**_ref("Ratio"), "description": "a tier without `rules`"},
                "min_trades": {"type": "integer", "minimum": 0},
                "rules": {
                    "type": "object",
                    "description": "The tier's rule pack (CONTRACT section 4a), when it has one.",
                },
            },
            description="The tier's terms, as kept by the account at activation.",
        ),
        "Gate": gate,
        "RiskView": _object(
            [
                "account_id",
                "version",
                "status",
                "equity",
                "balance",
                "peak_balance",
                "withdrawable_amount",
                "positions",
                "rules",
                "trading_day",
                "as_of",
            ],
            {
                "account_id": {"type": "string"},
                "version": {"type": "integer", "minimum": 0},
                "status": {"type": "string", "enum": ACCOUNT_STATUSES},
                "equity": _ref("Money"),
                "balance": _ref("Money"),
                "peak_balance": _ref("Money"),
                "withdrawable_amount": _ref("Money"),
                "positions": {"type": "array", "items": _ref("Position")},
                "rules": {"type": "object", "additionalProperties": _ref("Rule")},
                "trading_day": {
                    "anyOf": [{"type": "object"}, {"type": "null"}],
                    "description": "a rule-pack account's day, reset instant and lock",
                },
                "as_of": _ref("Timestamp"),
            },
            description="What the live risk feed sends: the account's risk as of `as_of`.",
        ),
        "PayoutEligibility": _object(
            ["eligible", "max_amount", "gates"],
            {
                "eligible": {"type": "boolean"},
                "max_amount": {
                    **_ref("Money"),
                    "description": "the largest amount a request could ask now (0.00 if none)",
                },
                "gates": {"type": "array", "items": _ref("Gate")},
            },
        ),
        "Position": _object(
            [
                "position_id",
                "symbol",
                "side",
                "quantity",
                "price",
                "notional",
                "unrealized_pnl",
                "opened_at",
            ],
            {
                "position_id": {"type": "string"},
                "symbol": {"type": "string"},
                "side": {"type": "string", "enum": ["long", "short"]},
                "quantity": DECIMAL_TEXT,
                "price": DECIMAL_TEXT,
                "notional": _ref("Money"),
                "unrealized_pnl": _ref("Money"),
                "opened_at": _ref("Timestamp"),
            },
        ),
        "Rule": rule,
        "Withdrawal": _object(
            [
                "id",
                "account_id",
                "amount",
                "status",
                "requires_review",
                "requested_at",
                "approved_at",
                "approved_by",
                "completed_at",
                "rejected_at",
                "rejection_reason",
                "stripe_payout_id",
                "estimated_completion_at",
                "reversed_total",
            ],
            {
                "id": {"type": "string", "examples": [EXAMPLE_WITHDRAWAL_ID]},
                "account_id": {"type": "string", "examples": [EXAMPLE_ACCOUNT_ID]},
                "amount": _ref("Money"),
                "status": {"type": "string", "enum": WITHDRAWAL_STATUSES},
                "requires_review": {"type": "boolean"},
                "requested_at": _ref("Timestamp"),
                "approved_at": _ref("NullableTimestamp"),
                "approved_by": {
                    "type": ["string", "null"],
                    "description": "`auto` or the approving admin's user id",
                },
                "completed_at": _ref("NullableTimestamp"),
                "rejected_at": {
                    **_ref("NullableTimestamp"),
                    "description": "also the time a withdrawal failed",
                },
                "rejection_reason": {
                    "type": ["string", "null"],
                    "description": "also the reason of a `failed` withdrawal",
                },
                "stripe_payout_id": {"type": ["string", "null"]},
                "estimated_completion_at": _ref("NullableTimestamp"),
                "reversed_total": {
                    **_ref("Money"),
                    "description": (
                        "What Stripe has reversed of the transfer so far (cumulative; "
                        '`"0.00"` when nothing was). A partly reversed withdrawal stays '
                        "`completed`; one reversed in full becomes `failed`."
                    ),
                },
            },
            description="The same withdrawal object everywhere the API returns one.",
        ),
        "AccountSummary": _object(
            summary_fields,
            {
                "id": {"type": "string", "examples": [EXAMPLE_ACCOUNT_ID]},
                "status": {"type": "string", "enum": ACCOUNT_STATUSES},
                "tier_id": {"type": "string"},
                "activated_at": _ref("Timestamp"),
                "closed_at": _ref("NullableTimestamp"),
                "closure_reason": {
                    "type": ["string", "null"],
                    "examples": ["rule_violation:drawdown"],
                },
                **balances,
                "withdrawable_amount": _ref("Money"),
                "withdrawals": _object(
                    ["pending", "completed_total"],
                    {
                        "pending": {"type": "integer", "minimum": 0},
                        "completed_total": _ref("Money"),
                    },
                ),
            },
        ),
        "AccountDetail": {
            "allOf": [
                _ref("AccountSummary"),
                _object(
                    ["user_id", "tier", "positions", "rules", "updated_at"],
                    {
                        "user_id": {"type": "string"},
                        "tier": _ref("Tier"),
                        "positions": {"type": "array", "items": _ref("Position")},
                        "rules": {
                            "type": "object",
                            "description": (
                                "Every rule of the account's tier by name: `drawdown` and "
                                "`risk_per_trade` for a tier without a rule pack; "
                                "`max_loss`, `daily_loss`, `risk_per_trade` (those it has) "
                                "for one with a pack."
                            ),
                            "additionalProperties": _ref("Rule"),
                        },
                        "trading_day": _object(
                            ["day", "resets_at", "day_anchor", "day_pnl", "locked_until"],
                            {
                                "day": {"type": "string", "format": "date"},
                                "resets_at": _ref("Timestamp"),
                                "day_anchor": _ref("Money"),
                                "day_pnl": _ref("Money"),
                                "locked_until": _ref("NullableTimestamp"),
                            },
                            description="A rule-pack account's trading day, as of now.",
                        ),
                        "updated_at": _ref("Timestamp"),
                    },
                ),
            ],
            "description": "The account as of the last input applied by its owner.",
        },
        "PendingWithdrawal": {
            "allOf": [
                _ref("Withdrawal"),
                _object(
                    ["user_id", "account"],
                    {
                        "user_id": {"type": "string"},
                        "account": _object(
                            ["id", "status", *BALANCE_FIELDS, "withdrawable_amount"],
                            {
                                "id": {"type": "string"},
                                "status": {"type": "string", "enum": ACCOUNT_STATUSES},
                                **balances,
                                "withdrawable_amount": _ref("Money"),
                            },
                        ),
                    },
                ),
            ],
        },
        **_breach_schemas(),
        "WithdrawalAnswer": _object(["withdrawal"], {"withdrawal": _ref("Withdrawal")}),
        "WithdrawalList": _object(
            ["withdrawals"], {"withdrawals": {"type": "array", "items": _ref("Withdrawal")}}
        ),
        "WithdrawRequest": {
            "type": "object",
            "required": ["amount", "payment_method", "destination"],
            "properties": {
                "amount": {
                    "description": (
                        "A decimal string or a JSON number with at most two decimals; at least "
                        "100.00 and at most the withdrawable amount. An exponent form, as a "
                        'number or a string (`1.5e2`, `"2E2"`), is accepted when its value has '
                        "at most two decimals. Anything else that is a string or a number "
                        "(three decimals, `1e-3`, `1e400`, NaN) is 422 `invalid_amount` (or "
                        "`below_minimum`, `exceeds_withdrawable`); another JSON type, or a "
                        "number no decimal can hold (an exponent past 10^18), is 400."
                    ),
                    "anyOf": [
                        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]{1,2})?$"},
                        {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?[eE][+-]?[0-9]{1,3}$"},
                        {"type": "number", "minimum": 0, "multipleOf": 0.01},
                    ],
                    "examples": ["250.00", "1.5e2"],
                },
                "payment_method": {
                    "type": "string",
                    "enum": ["stripe_connect"],
                    "description": (
                        "Another string (also one over 500 characters) is 422 "
                        "`unsupported_payment_method`."
                    ),
                },
                "destination": {
                    "type": "string",
                    "pattern": r"^acct_[A-Za-z0-9]{1,250}$",
                    "description": (
                        "The trader's Stripe connected account; another string (also one over "
                        "500 characters) is 422 `invalid_destination`."
                    ),
                    "examples": ["acct_1Test"],
                },
            },
        },
        "RejectRequest": {
            "type": "object",
            "required": ["reason"],
            "properties": {
                "reason": {
                    "type": "string",
                    "minLength": 1,
                    "maxLength": 500,
                    "description": (
                        "Required. White space around it is not part of it (it is stripped, "
                        'here and in the withdrawal\'s `rejection_reason`: `"kyc "` is the '
                        'reason `"kyc"`); what is left must be 1 to 500 characters.'
                    ),
                    "examples": ["KYC documents missing"],
                }
            },
        },
        "StripeEvent": {
            "type": "object",
            "description": "A Stripe event as Stripe sends it; `transfer.reversed` is acted on.",
            "properties": {
                "id": {"type": "string"},
                "type": {"type": "string", "examples": ["transfer.reversed"]},
                "created": {"type": "integer"},
                "data": {"type": "object"},
            },
        },
        "WebhookAnswer": _object(
            ["received", "handled"],
            {"received": {"type": "boolean"}, "handled": {"type": "boolean"}},
        ),
        "Health": _object(
            ["status", "detail"],
            {
                "status": {"type": "string", "enum": ["ok", "unavailable"]},
                "detail": {"type": "string"},
            },
        ),
    }


def _breach_schemas() -> dict[str, Schema]:
    """A breach is the `rules.violation-detected` fact as published (CONTRACT sections 4a, 6)."""
    money_or_null = _nullable(_ref("Money"))
    state = _object(
        ["equity", "balance", "peak_balance", "day", "day_anchor", "floor"],
        {
            "equity": _ref("Money"),
            "balance": _ref("Money"),
            "peak_balance": _ref("Money"),
            "day": {"type": "string", "format": "date", "description": "The trading day."},
            "day_anchor": money_or_null,
            "floor": money_or_null,
        },
    )
    return {
        "BreachEvidence": _object(
            ["trigger", "before", "after", "terms", "formula", "sha256"],
            {
                "trigger": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "The trade event that caused the breach, as received.",
                },
                "before": state,
                "after": state,
                "terms": {
                    "type": "object",
                    "additionalProperties": True,
                    "description": "The rule's terms, as in the tier's `rules`.",
                },
                "formula": {
                    "type": "string",
                    "examples": ["equity 94900.00 < floor 95000.00 = anchor 100000.00 - 5000.00"],
                },
                "sha256": {
                    "type": "string",
                    "pattern": "^[0-9a-f]{64}$",
                    "description": (
                        "Hex SHA-256 of the canonical JSON (sorted keys, no spaces, UTF-8) of "
                        "the evidence without `sha256`."
                    ),
                },
            },
        ),
        "Breach": _object(
            [
                "event_id",
                "type",
                "occurred_at",
                "account_id",
                "user_id",
                "rule",
                "value",
                "threshold",
                "trigger_event_id",
            ],
            {
                "event_id": {"type": "string"},
                "type": {"type": "string", "enum": ["rules.violation-detected"]},
                "occurred_at": _ref("Timestamp"),
                "account_id": {"type": "string", "examples": [EXAMPLE_ACCOUNT_ID]},
                "user_id": {"type": "string"},
                "rule": {"type": "string", "examples": ["drawdown", "daily_loss"]},
                "value": {
                    **_nullable({"type": "string", "pattern": r"^-?[0-9]+\.[0-9]{4}$"}),
                    "description": "null when unbounded (a balance of zero or less)",
                },
                "threshold": _ref("Ratio"),
                "trigger_event_id": {"type": "string"},
                "action": {
                    "type": "string",
                    "enum": ["close", "lock"],
                    "description": "Absent from facts published before rule packs.",
                },
                "evidence": {
                    **_ref("BreachEvidence"),
                    "description": "Absent from facts published before rule packs.",
                },
            },
            description="A `rules.violation-detected` fact, as published.",
        ),
        "BreachList": _object(
            ["breaches"],
            {
                "breaches": {
                    "type": "array",
                    "items": _ref("Breach"),
                    "maxItems": MAX_BREACHES,
                }
            },
        ),
    }


# --- responses ----------------------------------------------------------------------------------


def _json(schema: Schema, description: str, headers: dict[str, Any] | None = None) -> Schema:
    out: Schema = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        out["headers"] = headers
    return out


RETRY_AFTER = {"Retry-After": {"$ref": "#/components/headers/RetryAfter"}}


def _err(description: str, codes: list[str] | None = None, retry: bool = False) -> Schema:
    return _json(_error(codes), description, RETRY_AFTER if retry else None)


def _shared_responses() -> dict[str, Schema]:
    return {
        "Unauthorized": _err(
            "Missing, malformed, badly signed or expired token; an `exp` that is not a number; "
            "a `sub` that is empty, padded with white space, over 200 characters or holds NUL "
            "or a lone surrogate (the message says which).",
            ["unauthorized"],
        ),
        "Forbidden": _err("The token has no `admin` role.", ["forbidden"]),
        "InvalidRequest": _err(
            "Malformed JSON, nesting deeper than 32 levels, not a JSON object, an object "
            "holding the same key twice, a field of the wrong JSON type, a number no decimal "
            "can hold, a string anywhere in the body (keys too) holding NUL (`\\u0000`) or a "
            "lone UTF-16 surrogate (`\\ud800`), or an "
            "`Idempotency-Key` that is not UTF-8 text or holds NUL; also a command the account "
            "could not take at all. Nothing was done.",
            ["invalid_request"],
        ),
        "PayloadTooLarge": _err(
            "The request body is over 1 MiB (1,048,576 bytes). Nothing was done.",
            ["payload_too_large"],
        ),
        "RateLimited": _err(
            "Past the caller's budget of POST requests per minute.", ["rate_limited"], retry=True
        ),
        "Unavailable": _err(
            "The owner of the account cannot be reached, the workers are rebalancing, the "
            "account did not answer in time, or the database cannot be reached. Nothing was "
            "done half-way; try again after `Retry-After` seconds.",
            ["unavailable"],
            retry=True,
        ),
    }


def _use(name: str) -> Schema:
    return {"$ref": f"#/components/responses/{name}"}


ACCOUNT_NOT_FOUND = _err(
    "No such account, or another user's (no hint that it exists).",
    ["not_found", "unknown_account"],
)
WITHDRAWAL_NOT_FOUND = _err(
    "No such withdrawal.", ["not_found", "unknown_withdrawal", "unknown_account"]
)


def _account_param() -> Schema:
    return {
        "name": "account_id",
        "in": "path",
        "required": True,
        "description": "A funded account id (`fa_` and 32 hex digits); any other value is 404.",
        "schema": {"type": "string"},
        "example": EXAMPLE_ACCOUNT_ID,
    }


def _withdrawal_param() -> Schema:
    return {
        "name": "withdrawal_id",
        "in": "path",
        "required": True,
        "description": "A withdrawal id (it names its account); any other value is 404.",
        "schema": {"type": "string"},
        "example": EXAMPLE_WITHDRAWAL_ID,
    }


def _idempotency_param() -> Schema:
    return {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string"},
        "description": (
            "Makes a repeat of the same request harmless: scoped to the caller and kept 24 h, "
            "the same key and request answer the first answer again (on any worker, after a "
            "restart) and change nothing; the same key with another request is 409 "
            "`idempotency_key_reused`."
        ),
    }


def _not_pending_or_reused(what: str) -> Schema:
    return _err(
        "`not_pending`: the withdrawal is not pending (already decided). "
        f"`idempotency_key_reused`: this Idempotency-Key was used with another {what}.",
        ["not_pending", "idempotency_key_reused"],
    )


def _paths() -> dict[str, Schema]:
    open_route: list[dict[str, list[str]]] = []
    return {
        "/funded-accounts": {
            "get": {
                "operationId": "listFundedAccounts",
                "tags": ["accounts"],
                "summary": "The caller's funded accounts, newest `activated_at` first.",
                "responses": {
                    "200": _json(
                        _object(
                            ["funded_accounts"],
                            {
                                "funded_accounts": {
                                    "type": "array",
                                    "items": _ref("AccountSummary"),
                                }
                            },
                        ),
                        "The caller's accounts (an account appears once the database has it).",
                    ),
                    "401": _use("Unauthorized"),
                    "503": _use("Unavailable"),
                },
            }
        },
        "/funded-accounts/{account_id}": {
            "parameters": [_account_param()],
            "get": {
                "operationId": "getFundedAccount",
                "tags": ["accounts"],
                "summary": "One account, as of the last trade event applied (any worker).",
                "description": (
                    "The caller's own account; another user's is 404. Admin exception: a "
                    "token with the `admin` role reads any account here (support needs it), "
                    "but changes none through the trader routes."
                ),
                "responses": {
                    "200": _json(_ref("AccountDetail"), "The account."),
                    "401": _use("Unauthorized"),
                    "404": ACCOUNT_NOT_FOUND,
                    "503": _use("Unavailable"),
                },
            },
        },
        "/funded-accounts/{account_id}/withdrawals": {
            "parameters": [_account_param()],
            "get": {
                "operationId": "listAccountWithdrawals",
                "tags": ["withdrawals"],
                "summary": "The account's withdrawals, newest `requested_at` first.",
                "description": (
                    "The caller's own account; another user's is 404. Admin exception: a "
                    "token with the `admin` role reads any account's withdrawals here "
                    "(support needs it), but requests none for another user."
                ),
                "responses": {
                    "200": _json(_ref("WithdrawalList"), "The withdrawals."),
                    "401": _use("Unauthorized"),
                    "404": ACCOUNT_NOT_FOUND,
                    "503": _use("Unavailable"),
                },
            },
        },
        "/funded-accounts/{account_id}/payout-eligibility": {
            "parameters": [_account_param()],
            "get": {
                "operationId": "getPayoutEligibility",
                "tags": ["withdrawals"],
                "summary": "Whether a withdrawal could be requested now, and why not.",
                "description": (
                    "Every gate of the contract's sections 5 and 4a in order (account active, "
                    "no open positions, min_trades, the minimum withdrawal, then the rule "
                    "pack's gates), with the account's figure and what is required, and the "
                    "largest amount a request could ask now. The caller's own account; an "
                    "admin may read any."
                ),
                "responses": {
                    "200": _json(_ref("PayoutEligibility"), "The gates."),
                    "401": _use("Unauthorized"),
                    "404": ACCOUNT_NOT_FOUND,
                    "503": _use("Unavailable"),
                },
            },
        },
        "/funded-accounts/{account_id}/risk": {
            "parameters": [_account_param()],
            "get": {
                "operationId": "getAccountRisk",
                "tags": ["accounts"],
                "summary": "The account's risk view now (the live feed's first event).",
                "description": (
                    "Balances, equity, every rule reading with `remaining` and `floor`, open "
                    "positions, and a rule-pack account's trading day, reset instant and lock, "
                    "as of now, read at the account's owner. The caller's own account; an admin "
                    "may read any."
                ),
                "responses": {
                    "200": _json(_ref("RiskView"), "The risk view."),
                    "401": _use("Unauthorized"),
                    "404": ACCOUNT_NOT_FOUND,
                    "503": _use("Unavailable"),
                },
            },
        },
        "/funded-accounts/{account_id}/risk/stream": {
            "parameters": [_account_param()],
            "get": {
                "operationId": "streamAccountRisk",
                "tags": ["accounts"],
                "summary": "The account's risk, live (Server-Sent Events), from any worker.",
                "description": (
                    "First a `risk` event with the current view (`id:` the account's state "
                    "version), then one `risk` event per change the owner applies, a comment "
                    "heartbeat every 15 s. A client that falls behind gets the newest view, not "
                    "a queue of stale ones. `Last-Event-ID` resumes with the current view. "
                    "While the Redis fan-out is down a `feed` event says so and the stream polls "
                    "the owner every second; another `feed` event says when it is back. The "
                    "same authentication as the other routes (a Bearer header: read it with "
                    "fetch streaming, not EventSource, so no token goes in a URL)."
                ),
                "parameters": [
                    {
                        "name": "Last-Event-ID",
                        "in": "header",
                        "required": False,
                        "schema": {"type": "string"},
                        "description": (
                            "Ignored beyond resuming: the first event is the current view."
                        ),
                    }
                ],
                "responses": {
                    "200": {
                        "description": "An endless `text/event-stream`.",
                        "content": {"text/event-stream": {"schema": {"type": "string"}}},
                    },
                    "401": _use("Unauthorized"),
                    "404": ACCOUNT_NOT_FOUND,
                    "503": _use("Unavailable"),
                },
            },
        },
        "/funded-accounts/{account_id}/breaches": {
            "parameters": [_account_param()],
            "get": {
                "operationId": "listAccountBreaches",
                "tags": ["accounts"],
                "summary": "The account's rule breaches, newest first.",
                "description": (
                    "The account's `rules.violation-detected` facts as published (evidence and "
                    "its `sha256` included), from the database: newest `occurred_at` first, "
                    f"then the larger `event_id`; at most the newest {MAX_BREACHES}. A breach "
                    "appears once the database has it (normally well under a second). The "
                    "caller's own account; another user's is 404. Admin exception: a token "
                    "with the `admin` role reads any account's breaches here (support needs it)."
                ),
                "responses": {
                    "200": _json(_ref("BreachList"), "The breaches (none: an empty list)."),
                    "401": _use("Unauthorized"),
                    "404": ACCOUNT_NOT_FOUND,
                    "503": _use("Unavailable"),
                },
            },
        },
        "/funded-accounts/{account_id}/withdraw": {
            "parameters": [_account_param()],
            "post": {
                "operationId": "requestWithdrawal",
                "tags": ["withdrawals"],
                "summary": "Request a withdrawal of profit to the trader's Stripe account.",
                "description": (
                    "Below 1000.00 the withdrawal is approved at once and paid before the "
                    "answer (`completed` or `failed`), or `approved` if the transfer has not "
                    "finished within the answer's wait (it is then in flight); from 1000.00 it "
                    "is `pending` until an admin decides. With an `Idempotency-Key`, a repeat "
                    "with the same key and request (amount, payment method, destination; the "
                    "order of the JSON keys does not matter) answers the first answer again and "
                    "creates nothing."
                ),
                "parameters": [_idempotency_param()],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("WithdrawRequest")}},
                },
                "responses": {
                    "201": _json(_ref("WithdrawalAnswer"), "The withdrawal, as decided."),
                    "400": _use("InvalidRequest"),
                    "401": _use("Unauthorized"),
                    "404": ACCOUNT_NOT_FOUND,
                    "409": _err(
                        "This Idempotency-Key was used with another request (another amount, "
                        "payment method, destination or route); also when Redis has lost the "
                        "first answer: the key still names the first withdrawal, and a body "
                        "that differs from it is refused.",
                        ["idempotency_key_reused"],
                    ),
                    "413": _use("PayloadTooLarge"),
                    "422": _err(
                        "Refused; the code names the first rule that failed. Nothing changed. "
                        "`too_many_open_withdrawals`: the account already has as many pending "
                        "and approved withdrawals as it may have at once.",
                        REQUEST_REFUSALS,
                    ),
                    "429": _use("RateLimited"),
                    "503": _use("Unavailable"),
                },
            },
        },
        "/admin/withdrawals/pending": {
            "get": {
                "operationId": "listPendingWithdrawals",
                "tags": ["admin"],
                "summary": "Withdrawals waiting for review, oldest first.",
                "responses": {
                    "200": _json(
                        _object(
                            ["withdrawals"],
                            {"withdrawals": {"type": "array", "items": _ref("PendingWithdrawal")}},
                        ),
                        "The pending withdrawals, each with its user and an account summary.",
                    ),
                    "401": _use("Unauthorized"),
                    "403": _use("Forbidden"),
                    "503": _use("Unavailable"),
                },
            }
        },
        "/admin/withdrawals/{withdrawal_id}/approve": {
            "parameters": [_withdrawal_param()],
            "post": {
                "operationId": "approveWithdrawal",
                "tags": ["admin"],
                "summary": "Approve a pending withdrawal (re-checked, then paid).",
                "description": (
                    "The request body, if any, is ignored. The answer is the withdrawal now "
                    "`completed` or `failed` (paid or refused by Stripe), `rejected` (the "
                    "re-check failed: account closed or amount no longer covered), or "
                    "`approved` if the payout has not finished in time. With an "
                    "`Idempotency-Key` (scoped to the admin), a repeat on the same withdrawal "
                    "answers the first answer again and decides nothing; the same key on "
                    "another route or withdrawal is 409 `idempotency_key_reused`."
                ),
                "parameters": [_idempotency_param()],
                "responses": {
                    "200": _json(_ref("WithdrawalAnswer"), "The withdrawal, as decided."),
                    "400": _use("InvalidRequest"),
                    "401": _use("Unauthorized"),
                    "403": _use("Forbidden"),
                    "404": WITHDRAWAL_NOT_FOUND,
                    "409": _not_pending_or_reused("route or withdrawal"),
                    "413": _use("PayloadTooLarge"),
                    "429": _use("RateLimited"),
                    "503": _use("Unavailable"),
                },
            },
        },
        "/admin/withdrawals/{withdrawal_id}/reject": {
            "parameters": [_withdrawal_param()],
            "post": {
                "operationId": "rejectWithdrawal",
                "tags": ["admin"],
                "summary": "Reject a pending withdrawal with a reason.",
                "description": (
                    "With an `Idempotency-Key` (scoped to the admin), a repeat with the same "
                    "key and reason answers the first answer again and decides nothing; the "
                    "same key with another reason, route or withdrawal is 409 "
                    "`idempotency_key_reused`."
                ),
                "parameters": [_idempotency_param()],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("RejectRequest")}},
                },
                "responses": {
                    "200": _json(_ref("WithdrawalAnswer"), "The withdrawal, now `rejected`."),
                    "400": _use("InvalidRequest"),
                    "401": _use("Unauthorized"),
                    "403": _use("Forbidden"),
                    "404": WITHDRAWAL_NOT_FOUND,
                    "409": _not_pending_or_reused("reason, route or withdrawal"),
                    "413": _use("PayloadTooLarge"),
                    "422": _err(
                        "`reason` missing, empty, only white space, or over 500 characters "
                        "once the white space around it is stripped.",
                        ["invalid_reason"],
                    ),
                    "429": _use("RateLimited"),
                    "503": _use("Unavailable"),
                },
            },
        },
        "/webhooks/stripe": {
            "post": {
                "operationId": "stripeWebhook",
                "tags": ["system"],
                "summary": "Stripe events; `transfer.reversed` fails a completed withdrawal.",
                "security": open_route,
                "parameters": [
                    {
                        "name": "Stripe-Signature",
                        "in": "header",
                        "required": True,
                        "schema": {"type": "string"},
                        "description": "Checked against `STRIPE_WEBHOOK_SECRET`.",
                    }
                ],
                "requestBody": {
                    "required": True,
                    "content": {JSON: {"schema": _ref("StripeEvent")}},
                },
                "responses": {
                    "200": _json(
                        _ref("WebhookAnswer"), "Received (`handled` is false for ignored events)."
                    ),
                    "400": _err(
                        "`invalid_signature`: the signature is missing, malformed or does not "
                        "match the payload, or the body is not UTF-8. `invalid_request`: a "
                        "signed payload holding NUL or a lone surrogate in a string, a key "
                        "twice, or nested too deeply. `invalid_payload`: a `transfer.reversed` "
                        "without a transfer object, a usable `amount_reversed` or string ids.",
                        ["invalid_signature", "invalid_request", "invalid_payload"],
                    ),
                    "413": _use("PayloadTooLarge"),
                    "503": _err(
                        "`webhooks_disabled`: `STRIPE_WEBHOOK_SECRET` is not set. "
                        "`unavailable`: the broker did not take the event in time; Stripe "
                        "delivers it again (the same event is acted on once).",
                        ["webhooks_disabled", "unavailable"],
                        retry=True,
                    ),
                },
            }
        },
        "/health": {
            "get": {
                "operationId": "health",
                "tags": ["system"],
                "summary": "Whether this worker is consuming with its tables recovered.",
                "security": open_route,
                "responses": {
                    "200": _json(_ref("Health"), "Consuming, tables recovered."),
                    "503": _json(
                        _ref("Health"),
                        "Rebalancing, recovering tables, or the consumer stopped.",
                        RETRY_AFTER,
                    ),
                },
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "tags": ["system"],
                "summary": "Prometheus text exposition of this worker's counters and gauges.",
                "responses": {
                    "200": {
                        "description": "Events processed, rule evaluations, withdrawals by "
                        "status, consumer lag, sink lag, dead letters.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    "401": _use("Unauthorized"),
                },
            }
        },
        OPENAPI_PATH: {
            "get": {
                "operationId": "openapi",
                "tags": ["system"],
                "summary": "This document.",
                "security": open_route,
                "responses": {
                    "200": _json(
                        {
                            "type": "object",
                            "required": ["openapi", "info", "paths"],
                            "additionalProperties": True,
                        },
                        "The OpenAPI 3.1 document of the HTTP API.",
                    )
                },
            }
        },
    }


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document, as plain JSON-safe data (a fresh copy on every call)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "FundedFlow HTTP API",
            "version": API_VERSION,
            "description": (
                "Funded accounts of a proprietary-trading firm: balances and rules in real time, "
                "withdrawals of the trader's share of the profit, admin review. Any worker "
                "answers any request. Money is a decimal string with two decimals "
                '(`"1250.50"`), ratios are decimal strings, timestamps RFC 3339 in UTC. Errors '
                'are `{"error": {"code": "...", "message": "..."}}`.\n\n'
                "Changes in 0.3.0: `GET /funded-accounts/{account_id}/breaches` lists an "
                "account's rule breaches with their evidence.\n\n"
                "Changes in 0.2.0: a body over 1 MiB is 413 `payload_too_large` on every POST "
                "route; a string holding NUL or a lone surrogate anywhere in a body is 400 "
                "`invalid_request`; amounts accept exponent forms whose value has at most two "
                "decimals; the token's `exp` must be a number and its `sub` an id of at most "
                "200 characters without padding (else 401); `destination` and `payment_method` "
                "over 500 characters are 422 at once; a rejection reason is stripped of the "
                "white space around it; the withdrawal object gains `reversed_total`; a "
                "withdrawal request may be refused with 422 `too_many_open_withdrawals`; 409 "
                "`idempotency_key_reused` also when the first answer was lost and the body "
                "differs; a JSON object holding the same key twice is 400 `invalid_request` "
                "(it was read as its last value); a signed `transfer.reversed` with fields of "
                "the wrong JSON type is 400 `invalid_payload` (it was a 500)."
            ),
            "license": {"name": "Apache-2.0", "identifier": "Apache-2.0"},
        },
        "tags": [
            {"name": "accounts", "description": "A trader's funded accounts."},
            {"name": "withdrawals", "description": "A trader's withdrawals."},
            {"name": "admin", "description": "Review of withdrawals (role `admin`)."},
            {"name": "system", "description": "Health, metrics, webhooks, this document."},
        ],
        "security": [{"bearerAuth": []}],
        "paths": _paths(),
        "components": {
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http",
                    "scheme": "bearer",
                    "bearerFormat": "JWT",
                    "description": (
                        "`sub` is the user id (1 to 200 characters, no white space around it, "
                        "no NUL or lone surrogate), `roles` a list of strings (admin routes need "
                        '`"admin"`), `exp` required and a JSON number (seconds since the epoch; '
                        "a string is refused). HS256 with `JWT_SECRET` or RS256 with "
                        "`JWT_PUBLIC_KEY`."
                    ),
                }
            },
            "headers": {
                "RetryAfter": {
                    "description": "Seconds to wait before trying again.",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+$"},
                }
            },
            "responses": _shared_responses(),
            "schemas": _schemas(),
        },
    }


def render() -> str:
    """The document as the text of `docs/openapi.json` (stable: sorted keys, 2-space indent)."""
    return json.dumps(document(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def register(ctx: WebContext) -> None:
    body = render().encode()

    @page(ctx.ff.app, OPENAPI_PATH)
    @api
    async def openapi_json(self: Any, request: web.Request) -> web.Response:
        return web.Response(body=body, content_type="application/json")
