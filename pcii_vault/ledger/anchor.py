"""The vault's own memory of the log: the newest checkpoint it signed or verified.

The store is untrusted, and so is ``log/checkpoint``: an attacker with the bucket can put
back an older signed checkpoint (a rollback), delete the history, and let the vault extend
the shorter tree. The anchor is kept outside the store, in the vault directory, and the
ledger holds every checkpoint it reads or installs against it:

- a checkpoint smaller than the anchor is a rollback; one of the same size with another
  root, or a larger one whose tree does not contain the anchor's, is a fork;
- the anchor's checkpoint must still be in the store's history (``log/checkpoints/``):
  one that the vault signed and that has vanished is reported, not forgotten.

The file holds the signed note itself, so it cannot be forged without the log key; a
person with the vault's Unix account can delete it or put back an older one (then the
vault trusts on first use again): SECURITY.md says so, and auditors keep checkpoints of
their own (`pcii audit checkpoint`).

Invariants: the anchor only moves forward (checked under a file lock, so concurrent
processes of one vault never move it back); it is written atomically.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from pcii_vault.durable import read_regular, replace_file, vault_file_failure
from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.note import MAX_NOTE_BYTES, Checkpoint, NoteVerifier, parse_checkpoint

__all__ = ["CheckpointAnchor", "ReadOnlyAnchor"]


class CheckpointAnchor:
    """The last checkpoint a vault signed or verified, kept in its directory."""

    def __init__(self, path: Path) -> None:
        self.path = path
        # The last note read and checked, and the verifier that checked it.
        self._parsed: tuple[bytes, NoteVerifier, Checkpoint] | None = None
        # The largest checkpoint this object read or anchored: the file never shrinks by
        # the vault's own hand, so a long-lived process (a server) holds the log to it
        # even when the file is put back, with the store, to an older copy under it.
        self._highest: Checkpoint | None = None
        self._floor_lock = threading.Lock()

    def load(self, verifier: NoteVerifier) -> Checkpoint | None:
        """The anchored checkpoint, signature checked (None before the first one).

        Never smaller than one this object read or anchored before: a file removed or
        put back to an older checkpoint meanwhile still anchors what this process saw.

        Raises:
            IntegrityError: the file is not a checkpoint signed by the log key.
        """
        return self._raise_floor(self._load_file(verifier))

    def _raise_floor(self, checkpoint: Checkpoint | None) -> Checkpoint | None:
        """The larger of `checkpoint` and the highest one before, which it becomes.

        Raises:
            IntegrityError: `checkpoint` has the highest one's size and another root.
        """
        with self._floor_lock:
            highest = self._highest
            if highest is None or (checkpoint is not None and checkpoint.size > highest.size):
                self._highest = checkpoint
                return checkpoint
            if (
                checkpoint is not None
                and checkpoint.size == highest.size
                and checkpoint.root != highest.root
            ):
                raise IntegrityError(
                    f"{self.path}: another checkpoint of size {highest.size} than the one "
                    "this process anchored: the file was replaced"
                )
            return highest

    def _load_file(self, verifier: NoteVerifier) -> Checkpoint | None:
        if self.path.is_symlink():
            # The vault writes a file here, never a link: one to nothing would read as no
            # anchor at all, and one to the store's log/checkpoint would always agree.
            raise IntegrityError(
                f"{self.path} is a symlink, not the checkpoint this vault wrote; remove it"
            )
        try:
            note = read_regular(self.path, MAX_NOTE_BYTES)
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise IntegrityError(
                f"{self.path} is a directory, not the checkpoint this vault wrote"
            ) from None
        except OSError as exc:  # a symlink loop planted in its place, a name too long
            raise IntegrityError(
                f"{self.path} cannot be read ({exc.strerror}): not the checkpoint this vault wrote"
            ) from None
        if len(note) > MAX_NOTE_BYTES:
            raise IntegrityError(f"{self.path}: signed note is too large")
        parsed = self._parsed
        if parsed is not None and parsed[0] == note and parsed[1] is verifier:
            return parsed[2]  # the same signed bytes: checked already
        try:
            checkpoint = parse_checkpoint(note, verifier)
        except IntegrityError as exc:
            raise IntegrityError(f"{self.path}: {exc}") from exc
        self._parsed = (note, verifier, checkpoint)
        return checkpoint

    def advance(self, checkpoint: Checkpoint, verifier: NoteVerifier) -> None:
        """Remember `checkpoint` if it is newer than the anchored one.

        The caller has proved that it extends the anchored checkpoint.
        """
        with self._locked():
            current = self.load(verifier)
            if current is not None and current.size >= checkpoint.size:
                return
            try:
                replace_file(self.path, checkpoint.note.encode("utf-8"), mode=0o600)
            except OSError as exc:  # a full disk, say
                raise vault_file_failure(self.path, exc) from exc
            self._raise_floor(checkpoint)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except IsADirectoryError:
            raise IntegrityError(f"{self.path}.lock is a directory, not a lock file") from None
        except OSError as exc:  # a read-only vault directory, say
            raise vault_file_failure(f"{self.path}.lock", exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


class ReadOnlyAnchor(CheckpointAnchor):
    """A vault's anchor as the audit commands hold a log against it: read, never moved.

    The audit commands read a vault and write nothing in its directory (an auditor may
    have read access only); the vault's own commands move the anchor.
    """

    def advance(self, checkpoint: Checkpoint, verifier: NoteVerifier) -> None:
        """Leave the anchor as it is."""
