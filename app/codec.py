"""JSON on the wire: decimals never pass through float."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from domain.money import InvalidNumber, json_number


class WireError(ValueError):
    """The bytes are not a JSON object."""


def _default(obj: object) -> str:
    if isinstance(obj, Decimal):
        return str(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, default=_default, separators=(",", ":"), ensure_ascii=False).encode()


def _reject_constant(name: str) -> Any:
    raise WireError(f"{name} is not valid JSON")


def _number(text: str) -> Decimal:
    try:
        return json_number(text)
    except InvalidNumber as exc:
        raise WireError(exc.reason) from None


def loads_object(raw: bytes | str | None) -> dict[str, Any]:
    """Parse a JSON object; numbers with a fraction become Decimal, never float."""
    if raw is None or raw == b"" or raw == "":
        raise WireError("empty value")
    try:
        obj = json.loads(raw, parse_float=_number, parse_constant=_reject_constant)
    except WireError:
        raise
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise WireError(f"malformed JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise WireError(f"expected a JSON object, got {type(obj).__name__}")
    return obj
