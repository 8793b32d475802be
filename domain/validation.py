"""One validation of text, shared by every edge that lets a string in.

The HTTP views, the token check and the domain's parsers (`FieldReader`) all call these, so
input the HTTP layer accepts is input the account agent's parser accepts too: a request is
refused at once with the contract's 4xx, never dead-lettered behind a waiting request.

A string holding NUL or a lone UTF-16 surrogate is invalid anywhere (CONTRACT section 2):
PostgreSQL refuses NUL in text (and a batch holding one stalls the sink), and a lone surrogate
cannot be encoded as UTF-8 (`uuid5`, Kafka keys, the database).
"""

from __future__ import annotations

import re

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_TEXT_LENGTH",
    "InvalidText",
    "check_id",
    "check_reason",
    "check_text",
    "poison_in",
    "quoted",
]

# Ids are opaque strings; the bound keeps a hostile producer from bloating state and rows.
MAX_ID_LENGTH = 200
# Free text kept in an account (a payment method, a destination, a rejection reason).
MAX_TEXT_LENGTH = 500

# Surrogate code points only survive in a Python str unpaired (the JSON decoder joins pairs).
_POISON = re.compile("[\x00\ud800-\udfff]")


class InvalidText(ValueError):
    """Text that is not acceptable; `reason` completes a sentence starting with its name."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def poison_in(text: str) -> str | None:
    """Why `text` is invalid anywhere (NUL, a lone surrogate), or None when it is fine."""
    found = _POISON.search(text)
    if found is None:
        return None
    char = found.group()
    if char == "\x00":
        return "holds NUL (U+0000)"
    return f"holds a lone surrogate (U+{ord(char):04X})"


def _clean(text: str) -> None:
    problem = poison_in(text)
    if problem is not None:
        raise InvalidText(problem)


def check_text(text: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """Any text of at most `max_length` characters (empty allowed), without NUL or a lone
    surrogate; returned unchanged."""
    if len(text) > max_length:
        raise InvalidText(f"is longer than {max_length} characters")
    _clean(text)
    return text


def check_id(text: str, *, max_length: int = MAX_ID_LENGTH) -> str:
    """An id (or a name): non-empty, no surrounding white space, at most `max_length`
    characters, without NUL or a lone surrogate; returned unchanged."""
    if text == "" or text.strip() != text:
        raise InvalidText("must be a non-empty string without padding")
    if len(text) > max_length:
        raise InvalidText(f"is longer than {max_length} characters")
    _clean(text)
    return text


def check_reason(text: str, *, max_length: int = MAX_TEXT_LENGTH) -> str:
    """A human reason (an admin's rejection): 1 to `max_length` characters once the white space
    around it is stripped, without NUL or a lone surrogate. Returns the stripped text, so
    "kyc " and "kyc" are the same reason wherever they come from."""
    stripped = text.strip()
    if stripped == "":
        raise InvalidText("must not be empty or only white space")
    if len(stripped) > max_length:
        raise InvalidText(f"is longer than {max_length} characters")
    _clean(stripped)
    return stripped


def quoted(text: str, *, max_length: int, fallback: str) -> str:
    """Text from outside that is only quoted, never decided on (a payment provider's refusal
    message): made acceptable to `check_id` instead of refused, since refusing it would lose
    the decision it explains. NUL and lone surrogates become U+FFFD, white space around it goes,
    and it is cut to `max_length`; `fallback` when nothing is left."""
    cleaned = _POISON.sub("\ufffd", text)[:max_length].strip()
    return cleaned or fallback
