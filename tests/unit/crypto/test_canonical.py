"""canonical_json's fast path writes exactly what the RFC 8785 reference writes, or defers.

The vault signs and hashes these bytes: one byte of difference would break every
signature an older client made. So the fast path (the standard library's encoder) is
compared with the `rfc8785` package on generated documents, weighted towards what it
must get right or refuse: control characters, quotes, non-ASCII and astral keys, lone
surrogates, integers at the edge of the safe range, floats, tuples, non-string keys.
"""

from __future__ import annotations

import enum
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from pcii_vault.crypto.canonical import canonical_json

_SAFE = 2**53 - 1
_TRICKY_CHARS = st.sampled_from(
    ["\x00", "\x01", "\x1f", "\x7f", '"', "\\", "/", "\b", "\f", "\n", "\r", "\t", "é",
     "\u2028", "\ufeff", "\uffff", "\ue000", "\U0001f600", "\U00010000", "\ud800", "a", "Z"]
)  # fmt: skip
_TEXT = st.text(st.one_of(_TRICKY_CHARS, st.characters()), max_size=8)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-_SAFE - 2, max_value=_SAFE + 2),
    st.sampled_from([_SAFE, -_SAFE, _SAFE + 1, -_SAFE - 1, 0, -1]),
    st.floats(allow_nan=True, allow_infinity=True),
    _TEXT,
)
_DOCUMENTS = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.lists(inner, max_size=3).map(tuple),
        st.dictionaries(_TEXT, inner, max_size=4),
    ),
    max_leaves=20,
)


def _reference(value: Any) -> bytes | type[BaseException]:
    try:
        return bytes(rfc8785.dumps(value))
    except Exception as exc:  # noqa: BLE001 -- the kind of refusal is compared
        return (
            ValueError if isinstance(exc, (rfc8785.CanonicalizationError, TypeError)) else type(exc)
        )


def _ours(value: Any) -> bytes | type[BaseException]:
    try:
        return canonical_json(value)
    except Exception as exc:  # noqa: BLE001 -- the kind of refusal is compared
        return type(exc)


@settings(max_examples=3000, deadline=None)
@given(_DOCUMENTS)
def test_same_bytes_as_the_reference_or_the_same_refusal(value: Any) -> None:
    assert _ours(value) == _reference(value)


@pytest.mark.parametrize(
    "value",
    [
        {"\ue000": 1, "\U0001f600": 2},  # code point order and UTF-16 order differ here
        {"b": 1, "a": {"d": [1, 2, {"f": None, "e": True}], "c": "x"}},
        {"k": "\ud800"},  # a lone surrogate is refused, as by the reference
        {"\ud800": 1},
        {1: "non-string key"},
        {"n": _SAFE + 1},
        {"f": 1.5, "g": 1e21, "h": -0.0},
        ("a", ["b", ("c",)]),
        "\x00\x1f\x7f\u2028",
    ],
)
def test_edge_cases_match_the_reference(value: Any) -> None:
    assert _ours(value) == _reference(value)


class _Colour(enum.StrEnum):
    RED = "red"


def test_a_str_subclass_goes_through_the_reference() -> None:
    # The standard encoder would write an enum's value; the reference decides instead.
    assert canonical_json({"c": _Colour.RED}) == rfc8785.dumps({"c": _Colour.RED})
