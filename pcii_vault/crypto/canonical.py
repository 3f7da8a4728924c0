"""RFC 8785 canonical JSON: the one byte form for anything that is signed or logged.

Invariant: `canonical_json(parse(canonical_json(x))) == canonical_json(x)`; two documents
that are equal as JSON values have the same bytes, so signatures and hashes are stable.

Speed: every act serialises its request and events several times. For the documents the
vault makes (objects, arrays, strings, safe integers, booleans, null: what
`model_dump(mode="json")` gives) the standard library's encoder, with sorted keys, no
whitespace and no ASCII escaping, writes exactly the RFC 8785 bytes: its string escaping
is RFC 8785's (quote and backslash, the short forms of backspace, form feed, newline,
return and tab, other control characters as a lower-case six-character escape, nothing
else), and sorting keys by code point is sorting them by UTF-16 code unit as long as no
key holds a character beyond U+FFFF. Anything else (a float, an integer beyond
2**53 - 1, such a key, a lone surrogate, a type other than exactly these) goes through
the `rfc8785` package, as does everything when in doubt; a test compares the two on
generated documents.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from pcii_vault.errors import InputError

__all__ = ["DuplicateKeyError", "canonical_json", "no_duplicate_keys", "parse_json_object"]

_SAFE_INT = 2**53 - 1
_LAST_BMP = "\uffff"
_MAX_DEPTH = 64  # deeper documents go to the reference implementation
_ENCODER = json.JSONEncoder(
    ensure_ascii=False,
    check_circular=False,
    allow_nan=False,
    sort_keys=True,
    separators=(",", ":"),
)


def canonical_json(value: Any) -> bytes:  # noqa: ANN401 -- any JSON value
    """Serialise `value` per RFC 8785 (JCS).

    Raises:
        ValueError: the value is not representable (NaN, huge integers, non-str keys).
    """
    if _plain(value, 0):
        try:
            return _ENCODER.encode(value).encode("utf-8")
        except (UnicodeEncodeError, ValueError, TypeError, RecursionError):
            pass  # a lone surrogate, say: the reference implementation decides
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ValueError(f"not canonicalisable as JSON: {exc}") from exc


def _plain(value: Any, depth: int) -> bool:  # noqa: ANN401 -- any JSON value
    """Whether the standard encoder writes `value`'s RFC 8785 bytes (module docstring)."""
    kind = type(value)
    if kind is int:
        return bool(-_SAFE_INT <= value <= _SAFE_INT)
    if kind is dict:
        return depth < _MAX_DEPTH and all(
            type(key) is str
            and (key.isascii() or max(key) <= _LAST_BMP)
            and _plain(item, depth + 1)
            for key, item in value.items()
        )
    if kind is list or kind is tuple:
        return depth < _MAX_DEPTH and all(_plain(item, depth + 1) for item in value)
    return kind is str or kind is bool or value is None


class DuplicateKeyError(ValueError):
    """A JSON object names one key twice (which value counts would be the reader's guess)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key {key!r} is given twice")
        self.key = key


def no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads` object hook: an object naming a key twice is refused, never resolved.

    Raises:
        DuplicateKeyError: a key is given twice.
    """
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKeyError(key)
            seen.add(key)
    return document


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse bytes that must hold one JSON object.

    Raises:
        InputError: not UTF-8, not JSON (with line and column), nested too deeply, a
            number too large to convert, a key given twice in an object, or not an object.
    """
    try:
        value = json.loads(data.decode("utf-8"), object_pairs_hook=no_duplicate_keys)
    except UnicodeDecodeError as exc:
        raise InputError(f"{what}: not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{what}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError:
        # Arrays or objects nested thousands deep: no document of ours nests so.
        raise InputError(f"{what}: JSON nested too deeply") from None
    except DuplicateKeyError as exc:
        raise InputError(f"{what}: {exc}") from None
    except ValueError:
        # An integer of thousands of digits (Python refuses to convert it): input, not a bug.
        raise InputError(f"{what}: a JSON number is too large to read") from None
    if not isinstance(value, dict):
        raise InputError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value
