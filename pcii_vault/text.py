r"""Text from users and the log, made safe to show: control and bidi characters as escapes.

A right-to-left override or a stray carriage return in a purpose or an organisation must
not reorder or overwrite what a terminal, a report page or a chart shows next to it, and a
control character must not break an XML document (a chart's SVG) that carries it.
"""

from __future__ import annotations

import unicodedata

__all__ = ["hidden_character", "printable", "undecodable", "unreadable", "visible"]

# Control, format (bidi overrides, zero-width), surrogate, private, unassigned, separators.
_SHOWN_ESCAPED = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})
# What a reader does not see, or sees other than it is stored, beyond control characters:
# zero-width and bidi formatting, line and paragraph separators, private and unassigned.
_HIDDEN = _SHOWN_ESCAPED - {"Cc"}
# Letters that show as blank space: the Hangul fillers and the braille blank.
_BLANK_LETTERS = frozenset("\u115f\u1160\u3164\uffa0\u2800")


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


def hidden_character(text: str) -> str | None:
    """The first character a reader would not see as stored, as U+XXXX (None: none).

    Zero-width, bidi, separator, surrogate, private or unassigned. Control characters
    (tab, newline...) are left to the caller: some fields take lines.
    """
    for ch in text:
        if unicodedata.category(ch) in _HIDDEN:
            return f"U+{ord(ch):04X}"
    return None


def undecodable(text: str) -> bool:
    """Whether `text` holds bytes the command line could not decode (surrogate escapes)."""
    return any(unicodedata.category(ch) == "Cs" for ch in text)


def visible(text: str) -> bool:
    """Whether `text` shows anything: not only blanks, invisible characters or fillers."""
    return any(
        not ch.isspace()
        and unicodedata.category(ch) not in _SHOWN_ESCAPED
        and ch not in _BLANK_LETTERS
        for ch in text
    )


def unreadable(text: str, *, lines: bool = False) -> str | None:
    """Why `text` would not read as it is stored, or None when it does.

    A control character (newline, tab and carriage return allowed with `lines`), an
    invisible or bidi character, or nothing visible at all: a purpose of zero-width spaces
    passes for stated and reaches the cover sheet as none.
    """
    allowed = "\n\r\t" if lines else ""
    if undecodable(text):
        return "is not valid UTF-8 text"  # bytes the command line could not decode
    if any(unicodedata.category(ch) == "Cc" and ch not in allowed for ch in text):
        return "holds a control character"
    if (code := hidden_character(text)) is not None:
        return f"holds an invisible or bidirectional character ({code})"
    if not visible(text):
        return "shows nothing (only blanks or invisible characters)"
    return None
