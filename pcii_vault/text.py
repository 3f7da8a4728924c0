r"""Text from users and the log, made safe to show: control and bidi characters as escapes.

A right-to-left override or a stray carriage return in a purpose or an organisation must
not reorder or overwrite what a terminal, a report page or a chart shows next to it, and a
control character must not break an XML document (a chart's SVG) that carries it.
"""

from __future__ import annotations

import unicodedata

__all__ = ["printable"]

# Control, format (bidi overrides, zero-width), surrogate, private, unassigned, separators.
_SHOWN_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def printable(text: str, *, keep_newlines: bool = False) -> str:
    r"""`text` with control, format and bidirectional characters shown as escapes (`\u202e`)."""
    out: list[str] = []
    for ch in text:
        if ch == "\n" and keep_newlines:
            out.append(ch)
        elif ch == "\t":
            out.append(" ")
        elif unicodedata.category(ch) in _SHOWN_ESCAPED:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)
