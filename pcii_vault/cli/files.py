"""Files the CLI writes for a user (`--out`, `--html`, `--key-out`...): new, whole or absent.

Invariants: an output option never overwrites or follows what is already at its path (a
file, a directory, a symlink, dangling or not): exit 2, before any work is done. The bytes
go to a temporary file beside the path, which gets the name only once complete, so no
failure (a full disk, a read-only directory, an interrupt) leaves a partial file. An OS
error is one line naming the path, exit 2: the destination is the user's to fix, a full
disk included.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from pcii_vault.durable import path_exists, read_named_file, temp_name
from pcii_vault.errors import InputError

__all__ = [
    "new_directory",
    "new_output",
    "new_text_output",
    "output_key",
    "read_given_file",
    "refuse_existing",
    "refuse_other_document",
]


def output_key(path: Path) -> Path:
    """What two output options compare by: `x` and `./x` name one file."""
    return Path(os.path.abspath(path))  # noqa: PTH100 -- lexical: the file is not there yet


def refuse_existing(path: Path, option: str, what: str = "") -> None:
    """Refuse an output path that is taken (before the work that would fill it).

    Raises:
        InputError: something is at `path`, or the path cannot be looked at.
    """
    if path_exists(path, option):
        why = f": refusing to overwrite {what}" if what else f"; choose another {option}"
        raise InputError(f"{path} already exists{why}")


def _cannot_write(path: Path, option: str, exc: OSError) -> InputError:
    reason = exc.strerror or type(exc).__name__
    return InputError(f"cannot write {option} {path}: {reason}")


@contextlib.contextmanager
def new_output(path: Path, option: str) -> Iterator[Path]:
    """A temporary path to write; `path` gets the file when the block ends without error.

    Raises:
        InputError: `path` exists, or writing it failed (nothing is left behind).
    """
    from pcii_vault.durable import new_file_via_temporary

    refuse_existing(path, option)
    try:
        with new_file_via_temporary(path, mode=0o666) as tmp:
            yield tmp
    except FileExistsError:
        raise InputError(f"{path} already exists; choose another {option}") from None
    except OSError as exc:
        raise _cannot_write(path, option, exc) from None


@contextlib.contextmanager
def new_text_output(path: Path, option: str) -> Iterator[TextIO]:
    """A text stream (UTF-8, newlines as written) that becomes `path` once complete.

    Raises:
        InputError: `path` exists, or writing it failed (nothing is left behind).
    """
    with new_output(path, option) as tmp:
        try:
            with tmp.open("w", encoding="utf-8", newline="") as handle:
                yield handle
        except OSError as exc:
            raise _cannot_write(path, option, exc) from None


@contextlib.contextmanager
def new_directory(path: Path, option: str, *, parents: bool = True) -> Iterator[Path]:
    """A temporary directory to fill; it becomes `path` when the block ends without error.

    With `parents`, missing parent directories are created (and stay), as `--csv DIR`
    always did; without, a missing parent is refused (exit 2) as for a file output.

    Raises:
        InputError: `path` exists, or filling it failed (nothing is left behind).
    """
    refuse_existing(path, option)
    tmp = temp_name(path)
    try:
        if parents:
            path.parent.mkdir(parents=True, exist_ok=True)
        tmp.mkdir()
        try:
            yield tmp
            # rename() would replace an empty directory made meanwhile: refuse it instead.
            refuse_existing(path, option)
            tmp.rename(path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as exc:
        raise _cannot_write(path, option, exc) from None


def read_given_file(path: Path, what: str) -> bytes:
    """The bytes of a file the user named as input (`receipt verify FILE`...), bounded.

    Raises:
        InputError: missing, a directory, unreadable or over 16 MiB: one line naming it.
    """
    return read_named_file(path, _MAX_GIVEN_BYTES, what, too_large="16 MiB")


_MAX_GIVEN_BYTES = 16 << 20  # receipts, proof bundles and checkpoints are a few KiB

# The JSON documents the CLI writes and reads back, by their "format" tag: what each is
# and the command that checks it, to name a file given to the wrong command.
_DOCUMENTS = {
    "pcii-receipt/1": ("a receipt", "pcii receipt verify FILE"),
    "pcii-log-proof/1": ("a log proof bundle", "pcii audit verify-proof FILE"),
}


def refuse_other_document(data: bytes, path: Path, expected: str, what: str) -> None:
    """Refuse a file that is plainly another kind of file (a PDF, an assessment).

    Exit 2, naming it (and, for another of the vault's documents, the command that checks
    it): a file that is not a JSON object at all (it does not even begin with `{`), a
    JSON object without a `format` tag, or one tagged as another of our documents. A
    document of ours that was damaged (JSON broken by an altered byte, a `format` tag
    altered) is left to its checks: exit 4.

    Raises:
        InputError: `data` is plainly not the kind of document asked for.
    """
    if not data.lstrip().startswith(b"{"):
        raise InputError(f"{path} is not {what} (not a JSON object)")
    try:
        document = json.loads(data)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return  # begins like one of ours: damaged, for its checks to name (exit 4)
    if not isinstance(document, dict):
        return
    found = document.get("format")
    if found is None:
        raise InputError(f'{path} is not {what} (no "format": "{expected}")')
    if found != expected and isinstance(found, str) and found in _DOCUMENTS:
        other, command = _DOCUMENTS[found]
        raise InputError(f"{path} is {other}, not {what}: check it with `{command}`")
