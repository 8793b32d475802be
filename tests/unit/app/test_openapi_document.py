"""The OpenAPI document: valid OpenAPI 3.1, and docs/openapi.json never drifts from the code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openapi_spec_validator import OpenAPIV31SpecValidator

from views.openapi import OPENAPI_PATH, document, render

REPO = Path(__file__).resolve().parents[3]
OPEN_ROUTES = {"/health", "/webhooks/stripe", OPENAPI_PATH}
CONTRACT_ROUTES = {
    ("get", "/funded-accounts"),
    ("get", "/funded-accounts/{account_id}"),
    ("post", "/funded-accounts/{account_id}/withdraw"),
    ("get", "/funded-accounts/{account_id}/withdrawals"),
    ("get", "/funded-accounts/{account_id}/payout-eligibility"),
    ("get", "/funded-accounts/{account_id}/risk"),
    ("get", "/funded-accounts/{account_id}/risk/stream"),
    ("get", "/funded-accounts/{account_id}/breaches"),
    ("get", "/admin/withdrawals/pending"),
    ("post", "/admin/withdrawals/{withdrawal_id}/approve"),
    ("post", "/admin/withdrawals/{withdrawal_id}/reject"),
    ("post", "/webhooks/stripe"),
    ("get", "/health"),
    ("get", "/metrics"),
    ("get", OPENAPI_PATH),
}


def _operations(doc: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, op)
        for path, item in doc["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


def _resolve(doc: dict[str, Any], obj: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in obj and len(obj) == 1:
        node: Any = doc
        for part in obj["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    errors = list(OpenAPIV31SpecValidator(doc).iter_errors())
    assert errors == []


def test_docs_openapi_json_equals_what_the_code_generates() -> None:
    on_disk = (REPO / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert on_disk == render(), "docs/openapi.json is stale: run scripts/export_openapi.py"
    assert json.loads(on_disk) == document()


def test_every_contract_route_is_described_and_nothing_else() -> None:
    assert {(m, p) for m, p, _ in _operations(document())} == CONTRACT_ROUTES


def test_security_on_every_route_but_the_open_ones() -> None:
    doc = document()
    assert doc["security"] == [{"bearerAuth": []}]
    assert doc["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for _, path, op in _operations(doc):
        if path in OPEN_ROUTES:
            assert op["security"] == [], path
            assert "401" not in op["responses"], path
        else:
            assert "security" not in op, path
            assert "401" in op["responses"], path


def test_429_and_503_answers_carry_retry_after() -> None:
    doc = document()
    for method, path, op in _operations(doc):
        for status in ("429", "503"):
            if status in op["responses"]:
                response = _resolve(doc, op["responses"][status])
                assert "Retry-After" in response.get("headers", {}), (method, path, status)
        if method == "post" and path not in OPEN_ROUTES:
            assert "429" in op["responses"], path


def test_response_objects_stay_open_to_new_fields() -> None:
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            assert node.get("additionalProperties", True) is not False, node
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(document())


def test_money_and_timestamps_follow_the_contract() -> None:
    import re

    schemas = document()["components"]["schemas"]
    money = re.compile(schemas["Money"]["pattern"])
    assert money.match("1250.50") and money.match("-900.00")
    assert not money.match("1250.5") and not money.match("1e5")
    ts = re.compile(schemas["Timestamp"]["pattern"])
    assert ts.match("2026-11-23T10:00:00Z") and ts.match("2026-11-23T10:00:00.250000Z")
    assert not ts.match("2026-11-23T10:00:00+01:00")
    assert re.compile(schemas["Ratio"]["pattern"]).match("0.8000")


def _codes(doc: dict[str, Any], response: dict[str, Any]) -> list[str]:
    schema = _resolve(doc, response)["content"]["application/json"]["schema"]
    return list(schema["properties"]["error"]["properties"]["code"]["enum"])


def test_what_api_users_must_know_of_the_input_hardening() -> None:
    doc = document()
    for method, path, op in _operations(doc):
        if method == "post":
            assert _codes(doc, op["responses"]["413"]) == ["payload_too_large"], path
    withdraw = doc["paths"]["/funded-accounts/{account_id}/withdraw"]["post"]["responses"]
    assert "too_many_open_withdrawals" in _codes(doc, withdraw["422"])
    assert "Redis has lost the first answer" in withdraw["409"]["description"]
    withdrawal = doc["components"]["schemas"]["Withdrawal"]
    assert "reversed_total" in withdrawal["required"]
    assert "stays `completed`" in withdrawal["properties"]["reversed_total"]["description"]
    invalid = doc["components"]["responses"]["InvalidRequest"]["description"]
    assert "NUL" in invalid and "lone UTF-16 surrogate" in invalid
    assert "JSON number" in doc["components"]["securitySchemes"]["bearerAuth"]["description"]
    for path in (
        "/funded-accounts/{account_id}",
        "/funded-accounts/{account_id}/withdrawals",
        "/funded-accounts/{account_id}/breaches",
    ):
        assert "Admin exception" in doc["paths"][path]["get"]["description"], path
    amount = doc["components"]["schemas"]["WithdrawRequest"]["properties"]["amount"]
    import re

    exponent = next(a for a in amount["anyOf"] if "eE" in a.get("pattern", ""))
    assert re.match(exponent["pattern"], "1.5e2") and re.match(exponent["pattern"], "2E+2")


def test_breaches_are_the_violation_facts_bounded_and_sealed() -> None:
    from app.breaches import MAX_BREACHES

    doc = document()
    op = doc["paths"]["/funded-accounts/{account_id}/breaches"]["get"]
    assert set(op["responses"]) == {"200", "401", "404", "503"}
    assert f"at most the newest {MAX_BREACHES}" in op["description"]
    schemas = doc["components"]["schemas"]
    assert schemas["BreachList"]["properties"]["breaches"]["maxItems"] == MAX_BREACHES
    breach = schemas["Breach"]
    assert {"rule", "value", "threshold", "trigger_event_id"} <= set(breach["required"])
    # Facts published before rule packs have neither: optional, documented as such.
    assert "action" not in breach["required"] and "evidence" not in breach["required"]
    evidence = schemas["BreachEvidence"]
    assert evidence["required"] == ["trigger", "before", "after", "terms", "formula", "sha256"]
