"""One-line descriptions of model validation failures, for error messages.

pydantic's own message is several lines with links; the CLI's contract is one clear line
naming the field and what is wrong with it.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["describe"]


def describe(exc: ValidationError, what: str) -> str:
    """`"<what>: <field path>: <message>"` for the first problem (and how many more)."""
    errors = exc.errors()
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "(value)"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{what}: {where}: {first['msg']}{more}"
