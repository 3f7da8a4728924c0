"""How the CLI renders results: JSON on request, rich tables and lines on a terminal.

Invariant: with `--json`, stdout carries exactly one JSON document (or JSON lines for
streamed listings) and nothing else; human text and progress go to stderr.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = ["CliState", "Output"]


@dataclass
class Output:
    """Writes results for people or for programs."""

    json_mode: bool = False
    console: Console = field(default_factory=lambda: Console(highlight=False, soft_wrap=True))
    errors: Console = field(
        default_factory=lambda: Console(stderr=True, highlight=False, soft_wrap=True)
    )

    def result(self, data: Mapping[str, Any], human: str | None = None) -> None:
        """Print one result: `data` as JSON with --json, else `human` (or key: value lines)."""
        if self.json_mode:
            sys.stdout.write(json.dumps(data, sort_keys=True, default=str) + "\n")
            return
        if human is not None:
            self.console.print(human, markup=False)
            return
        for key, value in data.items():
            self.console.print(f"{key}: {value}", markup=False)

    def rows(
        self, rows: Iterable[Mapping[str, Any]], columns: Sequence[str], title: str | None = None
    ) -> None:
        """Print many results: JSON lines with --json, else one table."""
        if self.json_mode:
            for row in rows:
                sys.stdout.write(json.dumps(row, sort_keys=True, default=str) + "\n")
            return
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*(_cell(row.get(column)) for column in columns))
        self.console.print(table)

    def note(self, text: str) -> None:
        """Tell a person something on stderr (never pollutes --json stdout)."""
        self.errors.print(text, markup=False)


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
    identity: Path | None = None
    output: Output = field(default_factory=Output)
    debug: bool = False
