"""`fundedflow explain`'s pure part: a breach as text, and the evidence hash recomputed."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from typing import Any

import pytest

from app.breaches import MAX_BREACHES, breach_params
from app.explain import (
    EXIT_MISMATCH,
    EXIT_NO_BREACH,
    EXIT_OK,
    check_digest,
    explain,
    no_breach,
    parse_fact,
)
from domain.rulepacks import evidence_digest, evidence_state, make_evidence
from views.breaches import breaches_body

DAY = date(2026, 11, 24)


def sealed_evidence() -> dict[str, Any]:
    """Evidence as the publisher seals it (domain.rulepacks.make_evidence)."""
    return make_evidence(
        trigger={
            "event_id": "t-3",
            "type": "position_closed",
            "account_id": "fa_1",
            "position_id": "p-1",
            "realized_pnl": "-5100.00",
            "occurred_at": "2026-11-24T09:15:00Z",
        },
        before=evidence_state(
            equity_cents=10_000_000,
            balance_cents=10_000_000,
            peak_balance_cents=10_000_000,
            day=DAY,
            day_anchor_cents=10_000_000,
            floor_cents=9_500_000,
        ),
        after=evidence_state(
            equity_cents=9_490_000,
            balance_cents=9_490_000,
            peak_balance_cents=10_000_000,
            day=DAY,
            day_anchor_cents=10_000_000,
            floor_cents=9_500_000,
        ),
        terms={
            "limit": "0.0500",
            "anchor": "balance",
            "reset_tz": "Europe/Prague",
            "reset_at": "00:00",
            "action": "close",
        },
        formula="equity 94900.00 < floor 95000.00 = anchor 100000.00 - 5000.00",
    )


def fact(evidence: Any = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "event_id": "5b0c6f7e-0000-5000-8000-000000000001",
        "type": "rules.violation-detected",
        "occurred_at": "2026-11-24T09:15:00Z",
        "account_id": "fa_1",
        "user_id": "usr_1",
        "rule": "daily_loss",
        "value": "0.0510",
        "threshold": "0.0500",
        "trigger_event_id": "t-3",
        **extra,
    }
    if evidence is not None:
        out["action"] = "close"
        out["evidence"] = evidence
    return out


def test_a_sealed_breach_reads_well_and_its_hash_holds() -> None:
    evidence = sealed_evidence()
    answer = explain(fact(evidence))
    assert answer.exit_code == EXIT_OK
    text = answer.text
    lines = text.splitlines()
    assert lines[0] == "breach of account fa_1 (user usr_1)"
    for label, value in [
        ("rule", "daily_loss"),
        ("action", "close"),
        ("when", "2026-11-24T09:15:00Z"),
        ("trigger event", "t-3"),
        ("value", "0.0510 (threshold 0.0500)"),
    ]:
        assert any(line.split() == [*label.split(), *value.split()] for line in lines), label
    # The trigger: its id, type and time, then the event itself.
    assert "t-3 position_closed at 2026-11-24T09:15:00Z" in text
    assert '"realized_pnl":"-5100.00"' in text
    # Before and after side by side, in the contract's order.
    figures = [line.split() for line in lines if line.split()[:1] in (["figures"], ["equity"])]
    assert figures == [["figures", "before", "after"], ["equity", "100000.00", "94900.00"]]
    names = [line.split()[0] for line in lines]
    start = names.index("equity")
    assert names[start : start + 6] == [
        "equity",
        "balance",
        "peak_balance",
        "day",
        "day_anchor",
        "floor",
    ]
    assert (
        "action=close, anchor=balance, limit=0.0500, reset_at=00:00, reset_tz=Europe/Prague" in text
    )
    assert "equity 94900.00 < floor 95000.00 = anchor 100000.00 - 5000.00" in text
    assert lines[-1] == f"evidence hash OK (sha256 {evidence['sha256']})"


def test_tampered_evidence_is_a_mismatch_naming_both_hashes() -> None:
    evidence = sealed_evidence()
    tampered = {**evidence, "after": {**evidence["after"], "equity": "95900.00"}}
    answer = explain(fact(tampered))
    assert answer.exit_code == EXIT_MISMATCH
    computed = evidence_digest(tampered)
    assert computed != evidence["sha256"]
    assert answer.text.splitlines()[-1] == (
        f"evidence hash MISMATCH: stored {evidence['sha256']}, computed {computed}"
    )


def test_a_replaced_hash_or_a_missing_one_is_a_mismatch() -> None:
    evidence = sealed_evidence()
    forged = explain(fact({**evidence, "sha256": "0" * 64}))
    assert forged.exit_code == EXIT_MISMATCH
    assert f"stored {'0' * 64}, computed {evidence['sha256']}" in forged.text
    unsealed = {k: v for k, v in evidence.items() if k != "sha256"}
    missing = explain(fact(unsealed))
    assert missing.exit_code == EXIT_MISMATCH
    assert f"evidence hash MISMATCH: stored -, computed {evidence['sha256']}" in missing.text
    not_an_object = explain(fact(["not", "evidence"]))
    assert not_an_object.exit_code == EXIT_MISMATCH
    assert "the evidence is a list, not an object" in not_an_object.text


def test_the_check_recomputes_sha256_of_the_canonical_json_independently() -> None:
    evidence = sealed_evidence()
    body = {k: v for k, v in evidence.items() if k != "sha256"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    expected = hashlib.sha256(canonical.encode("utf-8")).hexdigest()
    check = check_digest(evidence)
    assert check.ok and check.stored == check.computed == expected


def test_the_hash_survives_what_postgresql_does_to_the_json() -> None:
    """jsonb keeps neither key order nor spacing; the canonical form does not depend on them.
    A number the trading engine sent as a number (here a quantity) is read back as the same
    number, so the digest still holds."""
    evidence = sealed_evidence()
    evidence["trigger"]["quantity"] = 2.5
    evidence["trigger"]["position_count"] = 3
    evidence = make_evidence(**{k: v for k, v in evidence.items() if k != "sha256"})
    published = fact(evidence)

    def reorder(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: reorder(value[k]) for k in sorted(value, key=lambda k: (len(k), k))}
        return value

    as_stored = json.dumps(reorder(published), separators=(", ", ": "), ensure_ascii=False)
    assert as_stored != json.dumps(published)
    answer = explain(parse_fact(as_stored))
    assert answer.exit_code == EXIT_OK, answer.text
    assert "evidence hash OK" in answer.text


def test_a_fact_without_evidence_says_so_and_verifies_nothing() -> None:
    answer = explain(fact())
    assert answer.exit_code == EXIT_OK
    assert "no evidence: this fact was published before breaches carried evidence" in answer.text
    assert "hash" not in answer.text
    assert any(line.split() == ["action", "(not", "recorded)"] for line in answer.text.splitlines())


def test_no_breach_is_exit_1_with_a_clear_message() -> None:
    known = no_breach("fa_1", account_known=True)
    assert known.exit_code == EXIT_NO_BREACH == 1
    assert known.text == "account fa_1 has no breach on record"
    unknown = no_breach("fa_2", account_known=False)
    assert unknown.exit_code == 1
    assert unknown.text == "no account fa_2 in the database (and no breach on record)"


def test_strings_from_outside_cannot_drive_the_terminal() -> None:
    evidence = sealed_evidence()
    evidence["trigger"]["symbol"] = "EUR\x1b[2JUSD\u202e"
    evidence = make_evidence(**{k: v for k, v in evidence.items() if k != "sha256"})
    answer = explain(fact(evidence, rule="daily_loss\x07"))
    assert "\x1b" not in answer.text and "\x07" not in answer.text
    assert "\u202e" not in answer.text
    assert "daily_loss\\u0007" in answer.text
    assert answer.exit_code == EXIT_OK  # escaping is for display; the hash is of the data


def test_parse_fact_takes_objects_only() -> None:
    with pytest.raises(ValueError):
        parse_fact("[1, 2]")
    assert parse_fact('{"a": 1.5}') == {"a": 1.5}


def test_breaches_body_wraps_json_text_without_parsing_it() -> None:
    facts = ['{"rule": "drawdown", "value": "0.1200"}', '{"n": 1.50}']
    body = breaches_body(facts)
    assert body == b'{"breaches":[{"rule": "drawdown", "value": "0.1200"},{"n": 1.50}]}'
    assert json.loads(body) == {"breaches": [json.loads(f) for f in facts]}
    assert json.loads(breaches_body([])) == {"breaches": []}


def test_breach_params_are_bounded() -> None:
    assert breach_params("fa_1") == {
        "account_id": "fa_1",
        "type": "rules.violation-detected",
        "limit": MAX_BREACHES,
    }
    with pytest.raises(ValueError):
        breach_params("fa_1", limit=0)


def test_the_cli_has_the_explain_command() -> None:
    from app.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["explain", "fa_1"])
    assert args.command == "explain" and args.account_id == "fa_1"
    assert "explain" in parser.format_help()
    with pytest.raises(SystemExit):
        parser.parse_args(["explain"])
