"""RFC 8785 canonical JSON: the one byte form for anything that is signed or logged.

Invariant: `canonical_json(parse(canonical_json(x))) == canonical_json(x)`; two documents
that are equal as JSON values have the same bytes, so signatures and hashes are stable.
"""

from __future__ import annotations

import json
from typing import Any

import rfc8785

from pcii_vault.errors import InputError

__all__ = ["canonical_json", "parse_json_object"]


def canonical_json(value: Any) -> bytes:  # noqa: ANN401 -- any JSON value
    """Serialise `value` per RFC 8785 (JCS).

    Raises:
        ValueError: the value is not representable (NaN, huge integers, non-str keys).
    """
    try:
        return bytes(rfc8785.dumps(value))
    except (rfc8785.CanonicalizationError, TypeError) as exc:
        raise ValueError(f"not canonicalisable as JSON: {exc}") from exc


def parse_json_object(data: bytes, what: str) -> dict[str, Any]:
    """Parse bytes that must hold one JSON object.

    Raises:
        InputError: not UTF-8, not JSON (with line and column), nested too deeply, a
            number too large to convert, or not an object.
    """
    try:
        value = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise InputError(f"{what}: not UTF-8 text (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise InputError(
            f"{what}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except RecursionError:
        # Arrays or objects nested thousands deep: no document of ours nests so.
        raise InputError(f"{what}: JSON nested too deeply") from None
    except ValueError:
        # An integer of thousands of digits (Python refuses to convert it): input, not a bug.
        raise InputError(f"{what}: a JSON number is too large to read") from None
    if not isinstance(value, dict):
        raise InputError(f"{what}: expected a JSON object, got {type(value).__name__}")
    return value
