"""Durable local files: a file appears whole or not at all, and stays once written.

Reading a user's file is bounded too (`read_bounded`): a pipe or a device such as
/dev/zero reports size 0 and never ends, so a size check on `stat` alone is no limit.

Invariants: the bytes go to a temporary file in the same directory, are fsynced, and only
then get their name (`link`, which refuses an existing name, or `rename`); the directory is
fsynced after. A crash leaves the old state or the new one, never a torn file; a temporary
file is removed on any failure.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
import re
import secrets
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from pcii_vault.errors import BackendError, InputError, IntegrityError

__all__ = [
    "fsync_directory",
    "is_temp_name",
    "left_by_a_dead_process",
    "new_file_via_temporary",
    "path_exists",
    "read_bounded",
    "replace_file",
    "staging_prefix",
    "temp_name",
    "vault_file_failure",
    "write_new_file",
]


def fsync_directory(directory: Path) -> None:
    """Make a directory's entries durable (where the filesystem supports it)."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def vault_file_failure(path: Path | str, exc: OSError) -> BackendError:
    """A file of the vault's own could not be written (exit 5): named, with why."""
    return BackendError(
        f"cannot write {path}: {exc.strerror or exc} (the vault directory must be "
        "writable, with room)"
    )


def temp_name(path: Path) -> Path:
    """A fresh hidden name beside `path` for the file or directory that will become it."""
    return path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")


_TEMP_NAME = re.compile(r"\..+\.[0-9a-f]{16}\.tmp")


def is_temp_name(name: str) -> bool:
    """Whether `name` is one `temp_name` gives (a crash may leave it behind)."""
    return _TEMP_NAME.fullmatch(name) is not None


def staging_prefix(tracking: str) -> str:
    """The start of a release's staging directory name: the record, then this process.

    The process (its host, hashed, and pid) lets a later release into the same folder
    remove a staging directory whose process was killed (`left_by_a_dead_process`).
    """
    return f".{tracking}.{_this_process()}."


# `.<tracking>.<host>-<pid>.<random>.partial`, as `staging_prefix` and mkdtemp name it.
_STAGING = re.compile(r"\.PCII-\d{4}-\d{8}\.(?P<host>[0-9a-f]{8})-(?P<pid>\d{1,10})\.\w+\.partial")


def _this_process() -> str:
    return f"{_host_tag()}-{os.getpid()}"


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def left_by_a_dead_process(name: str) -> bool:
    """Whether `name` is a release's staging directory whose process, on this host, died.

    Another host's (a shared folder) or a live process's, this one's included, is not.
    """
    found = _STAGING.fullmatch(name)
    if found is None or found["host"] != _host_tag():
        return False
    pid = int(found["pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False  # alive, another user's
    return False


def _write_temp(path: Path, data: bytes, mode: int, *, sync: bool = True) -> Path:
    tmp = temp_name(path)
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


@contextlib.contextmanager
def new_file_via_temporary(path: Path, *, mode: int = 0o600) -> Iterator[Path]:
    """Create `path` from a temporary file beside it: whole, or not at all.

    Yields the temporary file's path (created empty with `mode`, umask applied) for the
    caller to write, by name or by streaming into it. When the block ends without error the
    file is fsynced and linked to `path`; on any failure, or if `path` exists by then, the
    temporary file is removed and `path` is left as it was.

    Raises:
        FileExistsError: `path` already exists (a file, a directory, a symlink).
        OSError: the file could not be created or written (nothing is left behind).
    """
    tmp = temp_name(path)
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # refuses an existing name, and never follows a symlink there
    finally:
        tmp.unlink(missing_ok=True)
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


def read_bounded(path: Path, limit: int) -> bytes:
    """At most `limit + 1` bytes of `path`, whatever kind of file it is.

    A result longer than `limit` means the file is over the limit: the caller refuses it.
    Opened without blocking, then read blocking: a named FIFO nobody writes to reads as
    empty instead of waiting for a writer for ever; a pipe being written (`/dev/stdin`)
    is read to its end.

    Raises:
        OSError: the file cannot be opened or read.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
        return handle.read(limit + 1)


def read_named_file(
    path: Path,
    limit: int,
    what: str,
    *,
    error: Callable[[str], Exception] = InputError,
    too_large: str = "",
) -> bytes:
    """A file the user named (an input, a certificate), whole, with one line for each fault.

    At most `limit` bytes, whatever the file is (a pipe or /dev/zero has no size to check
    beforehand). `error` makes the exception (InputError, or ConfigError for settings);
    `too_large` ends the over-the-limit message (default: the limit in bytes).

    Raises:
        Exception: `error(...)` naming `what` and `path`: missing, a directory,
            unreadable, or over `limit`.
    """
    try:
        data = read_bounded(path, limit)
    except FileNotFoundError:
        raise error(f"{what} {path} not found") from None
    except IsADirectoryError:
        raise error(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise error(f"{what} {path} is larger than {too_large or f'{limit} bytes'}")
    return data


def read_regular(path: Path, limit: int) -> bytes:
    """At most `limit + 1` bytes of the regular file at `path`, never waiting on it.

    For the vault's own local files (its config, policies, the index's tag): opened
    without blocking, so a FIFO planted in their place cannot hang every command, and a
    device (a symlink to /dev/zero) is refused instead of read. A result longer than
    `limit` means the file is over the limit: the caller refuses it.

    Raises:
        IntegrityError: `path` is a FIFO, socket or device.
        OSError: it cannot be opened or read (a directory: IsADirectoryError).
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as handle:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(f"{path} is not a regular file (a FIFO or device in its place)")
        # One byte past the size seen, so a large limit costs nothing (`read(n)` allocates
        # n bytes at once), and a file that grew past the limit still reads as too long.
        return handle.read(min(limit, st.st_size) + 1)


def path_exists(path: Path, option: str) -> bool:
    """Whether anything is at `path`, a dangling symlink included (never followed).

    Raises:
        InputError: the path cannot be looked at (a directory on the way that is not one,
            or that the user may not search).
    """
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    except OSError as exc:
        raise InputError(f"cannot use {option} {path}: {exc.strerror}") from None
    return True
