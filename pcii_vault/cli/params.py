"""Options and arguments shared by several commands: one name, placeholder and help each.

Invariant: a concept has one option name everywhere (`--org`, `--sector`, `--purpose`),
its placeholder is an upper-case word (`TRACKING`, `FILE`, `DIR`), and every value a
user types for a closed vocabulary (sectors) is checked against it, with a suggestion.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path

import typer

from pcii_vault.errors import InputError
from pcii_vault.text import undecodable, unreadable, visible

__all__ = [
    "DEFAULT_USE",
    "PURPOSE_HELP",
    "TRACKING",
    "USE_HELP",
    "aware_time",
    "check_purpose",
    "check_sectors",
    "check_use",
    "path_argument",
    "refuse_undecodable",
    "suggest",
]

TRACKING = typer.Argument(metavar="TRACKING", help="Tracking number.", show_default=False)
PURPOSE_HELP = "Why you need it, in your words (recorded in the log)."
# The intended use `get`, `search` and `policy explain` assume when none is given.
DEFAULT_USE = "infrastructure-protection"
USE_HELP = "Intended use the policies reason about (see `pcii policy explain`)."


def path_argument(value: str) -> Path:
    """A path given as an argument (FILE, DIR): an empty one is refused, not taken for ".".

    Raises:
        typer.BadParameter: the value is empty or blank.
    """
    if not value.strip():
        raise typer.BadParameter("is empty: give a path")
    return Path(value)


def refuse_undecodable(option: str, text: str) -> None:
    """Refuse an option's text of bytes the command line could not decode.

    Checked before any emptiness check: such text shows nothing, and is no empty value.

    Raises:
        InputError: naming the option.
    """
    if undecodable(text):
        raise InputError(f"{option} is not valid UTF-8 text: state it in plain text")


def suggest(value: str, known: Iterable[str]) -> str:
    """`" (did you mean 'Water and Wastewater Systems'?)"` or `""`."""
    names = list(known)
    folded = {name.casefold(): name for name in names}
    close = difflib.get_close_matches(value.casefold(), list(folded), n=1, cutoff=0.5)
    if not close:
        # "Watr" is a prefix-ish typo of a long name: compare with each name's first words.
        close = [
            name
            for name in folded
            if name.startswith(value.casefold()[:3]) and len(value.strip()) >= 3
        ][:1]
    return f" (did you mean {folded[close[0]]!r}?)" if close else ""


def check_purpose(purpose: str) -> None:
    """Refuse a blank `--purpose` (get, search, review): the log keeps it as the reason.

    A record read or searched for with no stated purpose would be logged with none, and
    the policies would reason about an empty one.

    Raises:
        InputError: the purpose is empty or only blanks.
    """
    refuse_undecodable("--purpose", purpose)
    if not purpose.strip() or not visible(purpose):
        raise InputError("--purpose must state why you need the record")
    if why := unreadable(purpose):
        raise InputError(f"--purpose {why}: state it in plain text")


def check_use(use: str) -> None:
    """Refuse a `--use` that is no intended use of the reference data (get, search).

    An unknown use matches no permit policy: `search` then listed nothing (exit 0) where
    `get` said the value was wrong.

    Raises:
        InputError: listing every use.
    """
    from pcii_vault.models.reference import reference_data

    uses = {u.id for u in reference_data().uses}
    if use not in uses:
        raise InputError(f"--use must be one of: {', '.join(sorted(uses))}")


def check_sectors(values: Sequence[str], option: str = "--sector") -> tuple[str, ...]:
    """Each of `values` as the sector list spells it.

    Raises:
        InputError: a value is not a sector (with the closest name, when one is close).
    """
    from pcii_vault.models.reference import reference_data

    names = reference_data().sector_names
    by_fold = {name.casefold(): name for name in names}
    checked: list[str] = []
    for value in values:
        name = by_fold.get(" ".join(value.split()).casefold())
        if name is None:
            hint = suggest(value, names) or f"; one of: {'; '.join(names)}"
            raise InputError(f"{option} {value!r} is not a sector{hint}")
        if name not in checked:
            checked.append(name)
    return tuple(checked)


def aware_time(text: str, option: str) -> datetime:
    """An ISO 8601 time that names its zone: a naive time would be read in a guessed zone.

    Raises:
        InputError: not a time, or no zone; the message shows a form that is accepted.
    """
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{option}: not an ISO 8601 time: {text!r}") from None
    if moment.tzinfo is None:
        # A date alone (also with an offset Python drops) needs a time before its zone.
        example = moment.strftime("%Y-%m-%dT%H:%M:%S") if "T" not in text.upper() else text
        raise InputError(f"{option}: give a time zone, e.g. {example}Z or {example}+00:00 (UTC)")
    return moment
