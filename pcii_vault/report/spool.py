"""Disk-backed table rows: the report's per-event tables never sit in memory.

A table that grows with the log (every release, every disclosure) is written row by row to
a JSON-lines file in a scratch directory while the log streams by, and read back row by
row when the report is rendered. Invariant: memory use is one row, whatever the log size.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["TableSpool"]


class TableSpool:
    """Named tables of JSON rows, appended in order and replayed in order."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._handles: dict[str, IO[str]] = {}
        self._counts: dict[str, int] = {}

    def _path(self, table: str) -> Path:
        return self._directory / f"{table}.jsonl"

    def append(self, table: str, row: dict[str, Any]) -> None:
        """Add one row to `table` (created on first use)."""
        handle = self._handles.get(table)
        if handle is None:
            handle = self._path(table).open("w", encoding="utf-8")
            self._handles[table] = handle
            self._counts[table] = 0
        handle.write(json.dumps(row, sort_keys=True, default=str) + "\n")
        self._counts[table] += 1

    def count(self, table: str) -> int:
        """How many rows `table` holds."""
        return self._counts.get(table, 0)

    def rows(self, table: str) -> Iterator[dict[str, Any]]:
        """Replay `table`'s rows in the order they were appended."""
        handle = self._handles.get(table)
        if handle is None:
            return
        handle.flush()
        with self._path(table).open(encoding="utf-8") as reader:
            for line in reader:
                yield json.loads(line)

    def close(self) -> None:
        """Close every table file (the directory's owner removes them)."""
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
