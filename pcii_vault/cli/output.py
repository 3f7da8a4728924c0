r"""How the CLI renders results: JSON on request, tables and lines for people.

Invariants:
- with `--json`, stdout carries exactly one JSON document (or JSON lines for streamed
  listings) and nothing else; human text and progress go to stderr;
- nothing a user or the vault supplied is ever read as Rich markup, and control,
  format and bidirectional characters in it are shown as escapes (`\\u202e`), so a
  purpose or an organisation can neither crash a listing nor disguise what it shows;
- identifiers (tracking numbers, principal ids, times, log indices) are never cut: on a
  terminal a table wraps the other columns or leaves the least important out (and says
  so); when stdout is not a terminal, listings are plain tab-separated rows.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pcii_vault.text import printable

if TYPE_CHECKING:  # rich costs ~60 ms to import; only commands that print tables need it
    from rich.console import Console

__all__ = ["IDENTIFIER_COLUMNS", "CliState", "Output", "printable"]

# Columns whose values people copy into the next command: never truncated or hidden.
IDENTIFIER_COLUMNS = frozenset(
    {
        "tracking_number",
        "id",
        "principal",
        "seq",
        "time",
        "received_at",
        "state_at",
        "due",
        "record",
        "actor",
        "version",
        "created",
        "check",
        # Dates are times too; a principal's status and a record's state decide what a
        # reader may conclude from a row: never left out to fit.
        "training_expires",
        "nda_signed",
        "status",
        "state",
    }
)

# Space a table needs per column beyond its content (borders and padding).
_COLUMN_OVERHEAD = 3
_MIN_WRAPPED_WIDTH = 8


def _console(*, stderr: bool) -> Console:
    from rich.console import Console

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # Rich would exit 1 quietly; the CLI's entry point exits as SIGPIPE would.
            raise BrokenPipeError

    return _Console(stderr=stderr, highlight=False, soft_wrap=True, markup=False, emoji=False)


class ResultNotWrittenError(OSError):
    """A command's result could not be written to stdout, after the command was done."""


class Output:
    """Writes results for people or for programs."""

    def __init__(self, json_mode: bool = False, console: Console | None = None) -> None:
        self.json_mode = json_mode
        self._console: Console | None = console
        self._errors: Console | None = None

    @property
    def console(self) -> Console:
        """The stdout console (markup, emoji and highlighting off)."""
        if self._console is None:
            self._console = _console(stderr=False)
        return self._console

    @property
    def errors(self) -> Console:
        """The stderr console, for notes and progress."""
        if self._errors is None:
            self._errors = _console(stderr=True)
        return self._errors

    def result(self, data: Mapping[str, Any], human: str | None = None) -> None:
        """Print one result: `data` as JSON with --json, else `human` (or key: value lines).

        Raises:
            ResultNotWrittenError: stdout cannot be written (a full disk); what the command
                did before its result (an act, logged) is done all the same.
        """
        try:
            if self.json_mode:
                sys.stdout.write(json.dumps(data, sort_keys=True, default=str) + "\n")
                return
            if human is not None:
                self._line(printable(human, keep_newlines=True))
                return
            for key, value in data.items():
                self._line(f"{key}: {printable(_cell(value))}")
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise ResultNotWrittenError(exc.errno, exc.strerror) from exc

    def rows(
        self, rows: Iterable[Mapping[str, Any]], columns: Sequence[str], title: str | None = None
    ) -> None:
        """Print many results: JSON lines with --json, a table on a terminal, else TSV."""
        if self.json_mode:
            for row in rows:
                sys.stdout.write(json.dumps(row, sort_keys=True, default=str) + "\n")
            return
        if not self.console.is_terminal:
            sys.stdout.write("\t".join(columns) + "\n")
            for row in rows:
                sys.stdout.write("\t".join(printable(_cell(row.get(c))) for c in columns) + "\n")
            return
        self._table(
            [{c: printable(_cell(row.get(c))) for c in columns} for row in rows], columns, title
        )

    def _table(
        self, cells: list[dict[str, str]], columns: Sequence[str], title: str | None
    ) -> None:
        from rich.table import Table
        from rich.text import Text

        shown, hidden = fit_columns(cells, columns, self.console.width)
        if _needed_width(cells, shown) > self.console.width:
            # Even the identifiers alone are wider than the terminal: one block per row,
            # `column: value` per line, so each value stays whole and copyable.
            self._blocks(cells, columns, title)
            return
        table = Table(title=Text(printable(title)) if title else None)
        for column in shown:
            if column in IDENTIFIER_COLUMNS:
                widest = max([len(column), *(len(row[column]) for row in cells)])
                table.add_column(column, no_wrap=True, min_width=widest)
            else:
                table.add_column(column, overflow="fold")
        for row in cells:
            table.add_row(*(Text(row[column]) for column in shown))
        self.console.print(table)
        if hidden:
            self.note(f"(not shown to fit the terminal: {', '.join(hidden)}; --json has all)")

    def _blocks(
        self, cells: list[dict[str, str]], columns: Sequence[str], title: str | None
    ) -> None:
        if title:
            self._line(printable(title))
        label = max(len(c) for c in columns) + 1
        for row in cells:
            self._line("")
            for column in columns:
                self._line(f"{column + ':':<{label}} {row[column]}")

    def note(self, text: str) -> None:
        """Tell a person something on stderr (never pollutes --json stdout)."""
        self.errors.print(printable(text, keep_newlines=True), markup=False)

    def _line(self, text: str) -> None:
        if self.console.is_terminal:
            self.console.print(text, markup=False)
        else:
            sys.stdout.write(text + "\n")


def fit_columns(
    cells: Sequence[Mapping[str, str]], columns: Sequence[str], width: int
) -> tuple[list[str], list[str]]:
    """The columns a table of `width` can show whole identifiers in, and those left out.

    Identifier columns always stay, at their full width; other columns are left out from
    the right until each remaining one has room for at least a few characters.
    """
    shown = list(columns)
    hidden: list[str] = []
    for name in reversed(columns):
        if _needed_width(cells, shown) <= width:
            break
        if name not in IDENTIFIER_COLUMNS:
            shown.remove(name)
            hidden.insert(0, name)
    return shown, hidden


def _needed_width(cells: Sequence[Mapping[str, str]], names: Sequence[str]) -> int:
    """Terminal columns a table needs: identifiers whole, other columns a few characters."""
    total = 1
    for name in names:
        widest = max([len(name), *(len(row.get(name, "")) for row in cells)])
        total += _COLUMN_OVERHEAD + (
            widest if name in IDENTIFIER_COLUMNS else min(_MIN_WRAPPED_WIDTH, widest)
        )
    return total


def _cell(value: Any) -> str:  # noqa: ANN401 -- any printable value
    if value is None:
        return ""
    if isinstance(value, list | tuple):
        return ", ".join(str(v) for v in value)
    return str(value)


@dataclass
class CliState:
    """Global options, parsed once in the root callback and passed to every command."""

    vault: Path | None = None
    server: str | None = None  # an https:// URL of `pcii serve`, instead of a directory
    ca: Path | None = None  # the certificate that server's is pinned to
    identity: Path | None = None
    output: Output = field(default_factory=Output)
    debug: bool = False
    # What a command had done that its user must know when it fails after all (interrupted,
    # or its output cannot be written): said with the error, e.g. a submission's number.
    already_done: list[str] = field(default_factory=list)
