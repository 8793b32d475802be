"""JSON on the wire: decimals never pass through float.

`loads_object` reads every consumed topic and every HTTP body, so what it refuses never reaches
the domain: malformed JSON, a value that is not an object, nesting deeper than `MAX_DEPTH`,
numbers no Python type holds, an object with a key twice, and any string (a key too, at any
depth) holding NUL or a lone surrogate (CONTRACT section 2). Each refusal is a `WireError`
with a reason: a stream dead-letters the record, HTTP answers 400.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import orjson

from domain.money import InvalidNumber, json_number
from domain.validation import poison_in


class WireError(ValueError):
    """The bytes are not an acceptable JSON object; the message says why."""


# Our own values are a few levels deep; past this an input is refused, not parsed on.
MAX_DEPTH = 32


def _default(obj: object) -> str:
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    """Compact UTF-8 JSON, byte for byte what `json.dumps(..., separators=(",", ":"),
    ensure_ascii=False)` writes for our values (a fact re-sent after a crash is the same bytes
    whichever wrote it), by orjson: several times faster."""
    return orjson.dumps(obj, default=_default)


def _reject_constant(name: str) -> Any:
    raise WireError(f"{name} is not valid JSON")


def _number(text: str) -> Decimal:
    try:
        return json_number(text)
    except InvalidNumber as exc:
        raise WireError(exc.reason) from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object whose keys are all different: `{"amount": "100.00", "amount": "9000.00"}`
    means one thing to one reader and another to the next, so it is refused, not resolved."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise WireError(f"duplicate key {key[:40]!r}")
            seen.add(key)
    return obj


def _may_be_unfit(raw: bytes | str) -> bool:
    """False when the text cannot hold what `_check_tree` looks for (the common case, checked
    at C speed): NUL and surrogates only come as `\\u` escapes or as raw code points (a
    surrogate in UTF-8 bytes starts with 0xED), and depth needs brackets."""
    if isinstance(raw, bytes):
        if b"\\u" in raw or b"\xed" in raw or b"\x00" in raw:
            return True
        return raw.count(b"[") + raw.count(b"{") > MAX_DEPTH
    if "\\u" in raw or poison_in(raw) is not None:
        return True
    return raw.count("[") + raw.count("{") > MAX_DEPTH


def _check_tree(obj: object) -> None:
    """Every string (keys too) valid text, and no deeper than MAX_DEPTH; iterative, so a deep
    value cannot exhaust the stack here."""
    stack: list[tuple[object, int, str]] = [(obj, 1, "$")]
    while stack:
        node, depth, where = stack.pop()
        if isinstance(node, str):
            problem = poison_in(node)
            if problem is not None:
                raise WireError(f"the string at {where} {problem}")
        elif isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise WireError(f"nested deeper than {MAX_DEPTH} levels")
            if isinstance(node, dict):
                for key, value in node.items():
                    problem = poison_in(key)
                    if problem is not None:
                        raise WireError(f"a key in {where} {problem}")
                    stack.append((value, depth + 1, f"{where}.{key[:40]}"))
            else:
                stack.extend((value, depth + 1, f"{where}[{i}]") for i, value in enumerate(node))


def loads_object(raw: bytes | str | None) -> dict[str, Any]:
    """Parse a JSON object; numbers with a fraction become Decimal, never float."""
    if raw is None or raw == b"" or raw == "":
        raise WireError("empty value")
    try:
        obj = json.loads(
            raw, parse_float=_number, parse_constant=_reject_constant, object_pairs_hook=_object
        )
    except WireError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise WireError(f"nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:
        # e.g. an integer literal past Python's 4300-digit conversion limit
        raise WireError(f"cannot be parsed: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError(f"expected a JSON object, got {type(obj).__name__}")
    if _may_be_unfit(raw):
        _check_tree(obj)
    return obj
