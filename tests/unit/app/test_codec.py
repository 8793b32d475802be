"""The codec every topic and every HTTP body is read with: what it refuses never reaches the
domain, and everything it refuses is a WireError (a dead letter, an HTTP 400), never another
exception."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.codec import MAX_DEPTH, WireError, dumps, loads_object


def _nested(depth: int) -> str:
    """An object `depth` levels deep: {"a": {"a": ... {} ...}}."""
    return '{"a":' * (depth - 1) + "{}" + "}" * (depth - 1)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (r'{"event_id": "t-1\u0000"}', "NUL"),
        (r'{"event_id": "\u0000"}', "NUL"),
        (r'{"event_id": "\ud800"}', "lone surrogate"),
        (r'{"event_id": "x\udfffy"}', "lone surrogate"),
        (r'{"event_id": "\ude00\ud83d"}', "lone surrogate"),  # a pair in the wrong order
        (r'{"a\u0000": 1}', "NUL"),  # keys too
        (r'{"\ud800": 1}', "lone surrogate"),
        (r'{"a": {"b": ["ok", {"c": "\u0000"}]}}', "NUL"),  # at any depth
        (r'{"a": ["\ud801"]}', "lone surrogate"),
        (b'{"event_id": "\xed\xa0\x80"}', "lone surrogate"),  # a surrogate as raw UTF-8 bytes
        ('{"event_id": "\ud800"}', "lone surrogate"),  # a str holding the code point itself
        ('{"event_id": "\x00"}', "malformed JSON"),  # a raw control character in a string
    ],
)
def test_poison_strings_are_refused_anywhere(raw: str | bytes, why: str) -> None:
    for form in (raw, raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw):
        with pytest.raises(WireError, match=why) as caught:
            loads_object(form)
        # The reason is fit for a dead-letter record or an HTTP answer: it names the place, never
        # echoes the bad text.
        assert "\x00" not in str(caught.value) and "\ud800" not in str(caught.value)


def test_the_reason_names_where_the_bad_string_is() -> None:
    with pytest.raises(WireError, match=r"\$\.a\.b\[1\]"):
        loads_object(r'{"a": {"b": ["ok", "\u0000"]}}')


@pytest.mark.parametrize(
    "raw",
    [
        r'{"event_id": "t-1", "symbol": "\u00e9\ud83d\ude00"}',  # a surrogate pair is one char
        '{"name": "Funded 100K \u20ac \U0001f600"}',
        b'{"name": "\xed\x9f\xbf"}',  # U+D7FF: starts with 0xED, not a surrogate
        r'{"a": "\\u0000 is only text here"}',  # an escaped backslash, then plain text
    ],
)
def test_valid_text_passes(raw: str | bytes) -> None:
    obj = loads_object(raw)
    assert loads_object(dumps(obj)) == obj


def test_depth_is_bounded_and_never_a_recursion_error() -> None:
    assert loads_object(_nested(MAX_DEPTH)) is not None
    assert loads_object('{"a": [1, 2, 3], "b": {"c": {"d": []}}}')["b"]["c"]["d"] == []
    with pytest.raises(WireError, match="nested deeper"):
        loads_object(_nested(MAX_DEPTH + 1))
    with pytest.raises(WireError, match="nested deeper"):
        loads_object('{"a":' + "[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1) + "}")
    # Deeper than Python's recursion limit: the JSON decoder itself gives up; still a WireError.
    with pytest.raises(WireError, match="nested deeper"):
        loads_object('{"a":' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(WireError, match="nested deeper"):
        loads_object(_nested(50_000).encode())


def test_many_brackets_inside_strings_are_not_depth() -> None:
    text = json.dumps({"note": "[" * 1000 + "{" * 1000})
    assert loads_object(text)["note"].startswith("[[[")


def test_numbers_no_python_type_holds_are_wire_errors() -> None:
    with pytest.raises(WireError, match="cannot be parsed"):
        loads_object('{"amount": 1' + "0" * 5000 + "}")  # past int()'s 4300-digit limit
    with pytest.raises(WireError, match="out of range"):
        loads_object('{"amount": 1e999999999999999999999999999}')
    with pytest.raises(WireError, match="not valid JSON"):
        loads_object('{"amount": NaN}')
    assert loads_object('{"amount": 1.50}')["amount"] == Decimal("1.50")


@pytest.mark.parametrize("raw", [None, b"", "", b"[]", b'"x"', b"{nope", b"\xff\xfe"])
def test_what_is_not_an_object_is_refused(raw: bytes | str | None) -> None:
    with pytest.raises(WireError):
        loads_object(raw)


_fact_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.text(st.characters(codec="utf-8"))
    | st.decimals(allow_nan=False, allow_infinity=False, places=2),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(st.characters(codec="utf-8"), max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


@given(_fact_values)
def test_dumps_writes_the_bytes_the_standard_library_writes(value: object) -> None:
    """Facts are re-sent after a crash under the same ids: whichever encoder wrote the first
    copy, the repeat is the same bytes (orjson here, the standard library before)."""
    import json as std

    from app.codec import _default

    expected = std.dumps(value, default=_default, separators=(",", ":"), ensure_ascii=False)
    assert dumps(value) == expected.encode()
