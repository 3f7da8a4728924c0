"""The index as a projection of the verified log: caught up, checked, rebuilt.

Invariants:
- no row is read before the index's tag is checked; a failing tag is compared with a
  replay of the verified log, and what differs is named;
- an index ahead of the log (by its tag, or by the events its rows name) is evidence of
  a rollback: it is refused, and replaced only when asked to (`--accept-rollback`).
"""

from __future__ import annotations

import hmac
import json
import sqlite3
import time
from datetime import datetime
from pathlib import Path

from pcii_vault.core.base import VaultBase
from pcii_vault.crypto.mac import Authenticator
from pcii_vault.errors import IntegrityError
from pcii_vault.index import Deadline, Index, IndexTamperedError
from pcii_vault.ledger.log import Ledger
from pcii_vault.ledger.note import Checkpoint
from pcii_vault.models.principal import Principal


class Projection(VaultBase):
    """The vault with its index kept a checked projection of the verified log."""

    def current_kek_version(self) -> int:
        """The KEK version new records are wrapped under, as the log last recorded it."""
        rotated = self._trusted_index().meta("key.rotated")
        return int(json.loads(rotated)["version"]) if rotated else 1

    def sync(self) -> None:
        """Bring the authenticated index up to the log's latest checkpoint.

        Concurrent callers share a sync: one that began after this call was made and
        succeeded has read everything this one would (a server's many reads at once
        read the checkpoint once or twice, not once each).

        Raises:
            IntegrityError: the index was edited outside the vault (naming what changed),
                or the log was rolled back, forked, or its tiles do not reproduce the
                signed root.
        """
        asked = time.monotonic()
        with self._lock:
            if self._synced_since > asked:
                return
            began = time.monotonic()
            index = self._trusted_index()
            # The index's size before the checkpoint: another process of this vault may
            # commit and apply in between, and a checkpoint read first would look older
            # than the index (a rollback that is none).
            start, root = index.size_and_root()
            reader = self.reader()
            checkpoint = reader.check_edge()
            size = checkpoint.size if checkpoint else 0
            if start > size:
                raise IntegrityError(_rolled_back(start, size))
            if checkpoint is None:
                # `init` logs the vault's creation before it writes vault.json: a vault
                # directory always has a log, and an empty store is not this vault's.
                raise IntegrityError(
                    f"the store holds no log, yet vault {self.config.vault_id} logged its "
                    "creation there: the log was deleted, or vault.json names another store"
                )
            _refuse_other_history(reader, checkpoint, start, root)
            if start < size or root is None:
                index.apply_all(
                    reader.events(start, size),
                    skip_applied=True,
                    strict=False,
                    root=(size, checkpoint.root),
                )
            index.write_if_due()  # a server idle since its last batch: the file catches up
            self._synced_since = began

    def _trusted_index(self) -> Index:
        """The index, after checking its tag; an edit is named and refused.

        Raises:
            IntegrityError: the index differs from a projection of the verified log.
        """
        index = self.index
        try:
            index.verify()
        except IndexTamperedError:
            # Look again under the write lock (another process may have been writing),
            # and name what differs from the log, if anything does.
            problems = index.verify_or_diagnose(self._projection)
            if problems:
                self._refuse_if_ahead(index)
                said = "; ".join(problems)
                if "pcii index rebuild" not in said:  # a problem may give the advice itself
                    said += "; run `pcii index rebuild` to rebuild it from the verified log"
                raise IntegrityError(said) from None
        return index

    def _refuse_if_ahead(self, index: Index) -> None:
        """Name a rollback rather than damage: an index, tag failing, ahead of the log.

        Raises:
            IntegrityError: the index claims more events than the verified log holds.
        """
        try:
            indexed = index.claimed_size()
        except (sqlite3.DatabaseError, ValueError):
            return
        self._refuse_ahead_of_log(indexed, authentic=False)

    def _projection(self, size: int) -> Index:
        """An in-memory projection of the verified log's first `size` events."""
        reader = self.reader()
        replayed = Index.in_memory()
        try:
            replayed.apply_all(reader.events(0, min(size, reader.size())), strict=False)
        except BaseException:
            replayed.close()
            raise
        return replayed

    def rebuild_index(self, *, accept_rollback: bool = False) -> int:
        """Replay the whole verified log into a new index; return the event count.

        The new index is built in memory and put in the old one's place atomically (with
        its tag), so processes of this vault acting meanwhile never see it half-built:
        they go on from the new file at their next look at it.

        An index that carries its tag and holds more events than the log is the vault's
        own evidence that the log was rolled back (store and `log-checkpoint` together):
        it is not replaced unless `accept_rollback`.

        Raises:
            IntegrityError: the log is shorter than the authenticated index (rollback).
        """
        seal = self._local().index_authenticator()
        if not accept_rollback:
            self._refuse_rolled_back_log(seal)
        self.close()
        for suffix in ("", "-wal", "-shm", "-journal", ".mac"):
            path = Path(f"{self.paths.index}{suffix}")
            if path.is_dir() and not path.is_symlink():
                raise IntegrityError(
                    f"{path} is a directory, not a file the vault wrote; remove it and run "
                    "`pcii index rebuild` again"
                )
        # Built in memory: nothing in the vault directory is read back and tagged.
        index = Index.in_memory()
        try:
            reader = self.reader()
            checkpoint = reader.checkpoint()
            if checkpoint is not None:
                index.apply_all(
                    reader.events(0, checkpoint.size),
                    strict=False,
                    root=(checkpoint.size, checkpoint.root),
                )
            built = index.serialize()
        finally:
            index.close()
        Index.install(built, self.paths.index, seal=seal)
        self._index = self._open_index(seal)
        return self._index.size

    def _refuse_rolled_back_log(self, seal: Authenticator) -> None:
        """Raise if the index holds more events than the verified log.

        Its tag failing changes nothing: the attacker who rolled the log back can also
        flip a byte of the index (or remove its tag) to make the evidence look like mere
        damage. An index edited only to claim more events is refused the same way, and
        `--accept-rollback` rebuilds from the log anyway.

        Raises:
            IntegrityError: the log holds fewer events than the index.
        """
        if not self.paths.index.is_file():
            return  # nothing to lose
        try:
            index = Index.open(self.paths.index, seal=seal)
        except IntegrityError:
            return  # not readable as an index: it claims nothing
        try:
            try:
                index.verify()
                authentic = True
            except IntegrityError:
                authentic = False
            indexed, root = index.size_and_root()
            if not authentic:
                indexed = index.claimed_size()
        except (sqlite3.DatabaseError, ValueError):
            return  # unreadable rows: it claims nothing
        finally:
            index.close()
        self._refuse_ahead_of_log(indexed, authentic=authentic)
        reader = self.reader()
        checkpoint = reader.checkpoint()
        if authentic and checkpoint is not None:
            # The vault's own record of another history: a fork of the log, or an
            # index from one put in place. Neither is replaced without being asked.
            _refuse_other_history(reader, checkpoint, indexed, root)

    def _refuse_ahead_of_log(self, indexed: int, *, authentic: bool) -> None:
        """Raise if an index of `indexed` events is ahead of the verified log (a rollback).

        Raises:
            IntegrityError: the log holds fewer events than the index.
        """
        logged = self.reader().size()
        if indexed > logged:
            raise IntegrityError(_rolled_back(indexed, logged, authentic=authentic))

    def lookup_principal(self, principal_id: str, *, refresh: bool = False) -> Principal:
        """A registered principal (after catching up with the log when `refresh`).

        Raises:
            NotFoundError: nobody of that id is registered.
        """
        with self._lock:
            if refresh:
                self.sync()
            return self.index.principal(principal_id)

    def principals(self) -> list[Principal]:
        """Every registered principal, from the verified, authenticated projection."""
        self.sync()
        return self.index.principals()

    def deadlines(self, until: datetime) -> list[Deadline]:
        """The 30-day deadlines falling due by `until`, from the verified projection."""
        self.sync()
        return self.index.deadlines(until)

    def illegal_events(self) -> list[tuple[int, str]]:
        """Logged events the projection gave no effect (the lifecycle forbids them)."""
        self.sync()
        return self.index.illegal_events()


def _refuse_other_history(
    reader: Ledger, checkpoint: Checkpoint, size: int, root: bytes | None
) -> None:
    """Raise if the index's first `size` events are not the log's (its recorded root).

    Raises:
        IntegrityError: the index was built from another history of the log.
    """
    if (
        root is not None
        and 0 < size <= checkpoint.size
        and not hmac.compare_digest(reader.root_at(size, checkpoint), root)
    ):
        raise IntegrityError(_forked(size))


def _forked(size: int) -> str:
    return (
        f"the index was built from another history of the log than the store holds (its "
        f"first {size} events differ): the log was forked (rolled back and appended to "
        "since), or an index from such a fork was put in place; find which history is "
        "the vault's before acting on either, then restore the store from a copy of it, "
        "or rebuild the index from the store's log with "
        "`pcii index rebuild --accept-rollback`"
    )


def _rolled_back(indexed: int, logged: int, *, authentic: bool = True) -> str:
    if not authentic:
        # Its tag fails: its count may be an edit as well as the trace of a rollback.
        return (
            f"the index holds {indexed} events (its tag failing) but the log only {logged}: "
            "either the log was rolled back (its store, with this vault's log-checkpoint) or "
            "the index was changed outside the vault; restore the store from a copy holding "
            f"{indexed} events if one exists, else rebuild the index from the log with "
            "`pcii index rebuild --accept-rollback`"
        )
    return (
        f"the index holds {indexed} events (authenticated by this vault) but the log only "
        f"{logged}: the log was rolled back (its store, with this vault's log-checkpoint); "
        "restore the store from a copy holding the newer history, or accept the loss with "
        "`pcii index rebuild --accept-rollback`"
    )
