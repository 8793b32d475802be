"""`fundedflow explain`: one breach, readable, with its evidence hash checked. Pure: text in,
text out (the command in `app/cli.py` reads the fact from PostgreSQL).

The evidence's `sha256` (CONTRACT section 4a) is the hex SHA-256 of the canonical JSON of the
evidence without that key; `domain.rulepacks` computes it for the publisher and here alike, so
the check recomputes exactly what was sealed. The fact is parsed from the JSON text PostgreSQL
gives back (`account_events.payload`, jsonb): key order does not matter to the canonical form,
and a JSON number comes back as the same Python number it was published as (jsonb keeps a
number's decimal digits). Such numbers exist only in the trigger, if the trading engine sent
one; money is a decimal string everywhere in a fact, and nothing here does arithmetic.
"""

from __future__ import annotations

import json
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from domain.rulepacks import evidence_digest, verify_digest

__all__ = [
    "EXIT_MISMATCH",
    "EXIT_NO_BREACH",
    "EXIT_OK",
    "STATE_FIELDS",
    "DigestCheck",
    "Explanation",
    "check_digest",
    "explain",
    "no_breach",
    "parse_fact",
]

EXIT_OK = 0
EXIT_NO_BREACH = 1
# 2 is the CLI's configuration (and database) error.
EXIT_MISMATCH = 3

# The `before` / `after` figures in the contract's order; any others follow, sorted.
STATE_FIELDS = ("equity", "balance", "peak_balance", "day", "day_anchor", "floor")
NONE_SHOWN = "-"
LABEL_WIDTH = 16


@dataclass(frozen=True)
class DigestCheck:
    stored: str | None
    computed: str
    ok: bool

    def line(self) -> str:
        if self.ok:
            return f"evidence hash OK (sha256 {self.computed})"
        stored = NONE_SHOWN if self.stored is None else _clean(str(self.stored))
        return f"evidence hash MISMATCH: stored {stored}, computed {self.computed}"


@dataclass(frozen=True)
class Explanation:
    text: str
    exit_code: int


def parse_fact(payload: str) -> dict[str, Any]:
    """A fact from the JSON text of its `payload`. Plain `json` numbers on purpose: the digest
    was computed over JSON values (`canonical_json` refuses `Decimal`), and a float read back
    from the digits it was written with is that same float."""
    fact = json.loads(payload)
    if not isinstance(fact, dict):
        raise ValueError(f"a fact is a JSON object, got {type(fact).__name__}")
    return fact


def check_digest(evidence: Mapping[str, Any]) -> DigestCheck:
    """The stored `sha256` against the one recomputed from the rest of the evidence."""
    stored = evidence.get("sha256")
    return DigestCheck(
        stored=stored if isinstance(stored, str) or stored is None else str(stored),
        computed=evidence_digest(evidence),
        ok=verify_digest(evidence),
    )


def no_breach(account_id: str, account_known: bool) -> Explanation:
    if account_known:
        message = f"account {_clean(account_id)} has no breach on record"
    else:
        message = f"no account {_clean(account_id)} in the database (and no breach on record)"
    return Explanation(message, EXIT_NO_BREACH)


def explain(fact: Mapping[str, Any]) -> Explanation:
    """The breach as text, and the command's exit status: 0 when the evidence hash holds or the
    fact has no evidence (published before breaches carried it), 3 when the hash differs."""
    lines = [
        f"breach of account {_text(fact.get('account_id'))} (user {_text(fact.get('user_id'))})",
        *_pairs(
            [
                ("rule", _text(fact.get("rule"))),
                ("action", _text(fact.get("action"), "(not recorded)")),
                ("when", _text(fact.get("occurred_at"))),
                ("fact", _text(fact.get("event_id"))),
                ("trigger event", _text(fact.get("trigger_event_id"))),
                (
                    "value",
                    f"{_text(fact.get('value'))} (threshold {_text(fact.get('threshold'))})",
                ),
            ]
        ),
    ]
    evidence = fact.get("evidence")
    if evidence is None:
        lines.append(
            "no evidence: this fact was published before breaches carried evidence; "
            "nothing to verify"
        )
        return Explanation("\n".join(lines), EXIT_OK)
    if not isinstance(evidence, Mapping):
        kind = type(evidence).__name__
        lines.append(f"evidence hash MISMATCH: the evidence is a {kind}, not an object")
        return Explanation("\n".join(lines), EXIT_MISMATCH)
    lines.append("evidence")
    lines.extend(_evidence_lines(evidence))
    check = check_digest(evidence)
    lines.append(check.line())
    return Explanation("\n".join(lines), EXIT_OK if check.ok else EXIT_MISMATCH)


def _evidence_lines(evidence: Mapping[str, Any]) -> list[str]:
    trigger = evidence.get("trigger")
    out = _pairs([("trigger", _trigger_summary(trigger))], indent=2)
    if trigger is not None:
        out.append(" " * (2 + LABEL_WIDTH) + _compact(trigger))
    out.extend(_figures(evidence.get("before"), evidence.get("after")))
    out.extend(
        _pairs(
            [("terms", _terms(evidence.get("terms"))), ("formula", _text(evidence.get("formula")))],
            indent=2,
        )
    )
    return out


def _trigger_summary(trigger: Any) -> str:
    if isinstance(trigger, Mapping):
        parts = [_text(trigger.get("event_id")), _text(trigger.get("type"))]
        if "occurred_at" in trigger:
            parts.append(f"at {_text(trigger.get('occurred_at'))}")
        return " ".join(parts)
    return "(not an object)" if trigger is not None else NONE_SHOWN


def _figures(before: Any, after: Any) -> list[str]:
    """`before` and `after` side by side, one figure a line."""
    sides = [b if isinstance(b, Mapping) else {} for b in (before, after)]
    extra = sorted({k for side in sides for k in side} - set(STATE_FIELDS))
    names = [*STATE_FIELDS, *extra]
    rows = [(name, *(_text(side.get(name)) for side in sides)) for name in names]
    header = ("figures", "before", "after")
    first = max(LABEL_WIDTH, max(len(r[0]) for r in [header, *rows]) + 2)
    second = max(len(r[1]) for r in [header, *rows]) + 2
    return [f"  {a:<{first}}{b:<{second}}{c}".rstrip() for a, b, c in [header, *rows]]


def _terms(terms: Any) -> str:
    if isinstance(terms, Mapping):
        # Sorted, as in the canonical form: the database does not keep the published order.
        pairs = sorted(terms.items())
        return ", ".join(f"{_clean(str(k))}={_scalar(v)}" for k, v in pairs) or "(none)"
    return _text(terms)


def _scalar(value: Any) -> str:
    return _clean(value) if isinstance(value, str) else _compact(value)


def _pairs(pairs: list[tuple[str, str]], indent: int = 2) -> list[str]:
    return [f"{' ' * indent}{label:<{LABEL_WIDTH}}{value}" for label, value in pairs]


def _text(value: Any, missing: str = NONE_SHOWN) -> str:
    """A field for the terminal: strings as they are (controls escaped), others as JSON."""
    if value is None:
        return missing
    return _scalar(value)


def _compact(value: Any) -> str:
    return _clean(json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True))


def _clean(text: str) -> str:
    """Control and format characters escaped: a fact's strings come from outside (the trigger
    is the trading engine's event) and must not drive the terminal."""
    return "".join(_escape(ch) if unicodedata.category(ch)[0] == "C" else ch for ch in text)


def _escape(ch: str) -> str:
    code = ord(ch)
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"
