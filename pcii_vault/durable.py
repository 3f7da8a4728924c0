"""Durable local files: a file appears whole or not at all, and stays once written.

Invariants: the bytes go to a temporary file in the same directory, are fsynced, and only
then get their name (`link`, which refuses an existing name, or `rename`); the directory is
fsynced after. A crash leaves the old state or the new one, never a torn file; a temporary
file is removed on any failure.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["fsync_directory", "replace_file", "write_new_file"]


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries durable (where the filesystem supports it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes, mode: int, *, sync: bool = True) -> Path:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            if sync:
                out.flush()
                os.fsync(out.fileno())
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp


def write_new_file(
    path: Path,
    data: bytes,
    *,
    mode: int = 0o600,
    sync_directory: bool = True,
    durable: bool = True,
) -> None:
    """Create `path` holding `data`, atomically and durably.

    With `sync_directory=False` the caller makes the new name durable: it writes several
    files into one directory and fsyncs that directory once, after the last (each fsync
    is a journal commit; the files' bytes are fsynced here all the same). With
    `durable=False` nothing is fsynced: for scratch files that a crash may lose (a
    server's spool), still atomic.

    Raises:
        FileExistsError: `path` already exists (it is left untouched).
        OSError: the file could not be written (nothing is left behind).
    """
    tmp = _write_temp(path, data, mode, sync=durable)
    try:
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    if sync_directory and durable:
        fsync_directory(path.parent)


def replace_file(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Replace (or create) `path` with `data`, atomically and durably."""
    tmp = _write_temp(path, data, mode)
    try:
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)
