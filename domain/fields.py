"""Typed reads of fields from a parsed JSON object, each failure a named reason.

Parsers of tiers, events and stored state share these so every refusal reads the same:
`missing_field: x`, `invalid_field: x must be ...`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, NoReturn, TypeVar

from domain.money import InvalidNumber, parse_money, parse_price, parse_quantity, parse_ratio
from domain.timestamps import InvalidTimestamp, parse_ts
from domain.validation import (
    MAX_ID_LENGTH,
    MAX_TEXT_LENGTH,
    InvalidText,
    check_id,
    check_reason,
    check_text,
)

__all__ = ["MAX_ID_LENGTH", "FieldReader"]

_Choice = TypeVar("_Choice", bound=str)


class FieldReader:
    """Reads fields of `obj`; failures raise `error(code, detail)`."""

    def __init__(self, obj: Mapping[str, Any], error: Callable[[str, str], Exception]) -> None:
        self._obj = obj
        self._error = error

    @property
    def source(self) -> Mapping[str, Any]:
        """The object the fields are read from, as given."""
        return self._obj

    def fail(self, code: str, detail: str) -> NoReturn:
        raise self._error(code, detail)

    def has(self, name: str) -> bool:
        return name in self._obj and self._obj[name] is not None

    def raw(self, name: str) -> Any:
        if name not in self._obj:
            self.fail("missing_field", name)
        return self._obj[name]

    def _str(self, name: str) -> str:
        value = self.raw(name)
        if not isinstance(value, str):
            self.fail("invalid_field", f"{name} must be a string")
        return value

    def string(self, name: str, *, max_length: int = MAX_ID_LENGTH) -> str:
        """An id or a name: non-empty, unpadded, bounded, valid text (domain/validation.py)."""
        try:
            return check_id(self._str(name), max_length=max_length)
        except InvalidText as exc:
            self.fail("invalid_field", f"{name} {exc.reason}")

    def text(self, name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
        """Any bounded valid text, empty allowed (whether it makes sense is the caller's rule)."""
        try:
            return check_text(self._str(name), max_length=max_length)
        except InvalidText as exc:
            self.fail("invalid_field", f"{name} {exc.reason}")

    def reason(self, name: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
        """A human reason, stripped of the white space around it, 1 to `max_length` characters."""
        try:
            return check_reason(self._str(name), max_length=max_length)
        except InvalidText as exc:
            self.fail("invalid_field", f"{name} {exc.reason}")

    def choice(self, name: str, allowed: tuple[_Choice, ...]) -> _Choice:
        value = self.raw(name)
        for option in allowed:
            if value == option:
                return option
        self.fail("invalid_field", f"{name} must be one of {', '.join(allowed)}")

    def money(self, name: str) -> int:
        value = self.raw(name)
        try:
            return parse_money(value)
        except InvalidNumber as exc:
            self.fail("invalid_field", f"{name}: {exc.reason}")

    def ratio(self, name: str) -> Decimal:
        value = self.raw(name)
        try:
            return parse_ratio(value)
        except InvalidNumber as exc:
            self.fail("invalid_field", f"{name}: {exc.reason}")

    def quantity(self, name: str) -> Decimal:
        value = self.raw(name)
        try:
            return parse_quantity(value)
        except InvalidNumber as exc:
            self.fail("invalid_field", exc.reason)

    def price(self, name: str) -> Decimal:
        value = self.raw(name)
        try:
            return parse_price(value)
        except InvalidNumber as exc:
            self.fail("invalid_field", exc.reason)

    def integer(self, name: str) -> int:
        value = self.raw(name)
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail("invalid_field", f"{name} must be an integer")
        return value

    def timestamp(self, name: str) -> datetime:
        value = self.raw(name)
        try:
            return parse_ts(value)
        except InvalidTimestamp as exc:
            self.fail("invalid_field", f"{name}: {exc.reason}")

    def optional_timestamp(self, name: str) -> datetime | None:
        return self.timestamp(name) if self.has(name) else None

    def mapping(self, name: str) -> Mapping[str, Any]:
        value = self.raw(name)
        if not isinstance(value, Mapping):
            self.fail("invalid_field", f"{name} must be an object")
        return value
