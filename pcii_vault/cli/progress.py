"""Progress bars for large transfers: one 80-column line per file, on a terminal only.

Invariant: progress goes to stderr, never with `--json`, and never when stderr is not a
terminal; it only observes a transfer and cannot change what is sent or released.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from pcii_vault.cli.output import Output

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

__all__ = ["progress_bar", "release_progress", "short_name"]


def short_name(name: str, width: int = 20) -> str:
    """A file name cut to `width` for a progress line (a file name, not an identifier)."""
    return name if len(name) <= width else name[: width - 1] + "…"


@contextlib.contextmanager
def progress_bar(output: Output) -> Iterator[Progress | None]:
    """A rich Progress with file name, bar, bytes, speed and time left; None if not shown."""
    if output.json_mode or not output.errors.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}", markup=False),
        BarColumn(bar_width=16),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(compact=True),
        console=output.errors,
        transient=True,
    ) as bar:
        yield bar


@contextlib.contextmanager
def release_progress(output: Output) -> Iterator[Callable[[str, int, int], None] | None]:
    """A `progress(name, done, total)` callback for `Vault.release`, one bar per file."""
    with progress_bar(output) as bar:
        if bar is None:
            yield None
            return
        tasks: dict[str, TaskID] = {}

        def update(name: str, done: int, total: int) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(short_name(name), total=total or None)
            bar.update(tasks[name], completed=done)

        yield update
