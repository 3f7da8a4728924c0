"""Maintenance: finish half-done acts and remove crash leftovers, after a grace period."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import structlog

from pcii_vault.core.acting import Acting
from pcii_vault.durable import is_temp_name
from pcii_vault.errors import IntegrityError, NotFoundError, VaultError
from pcii_vault.index import RecordRow
from pcii_vault.ledger.log import CLAIM_PREFIX, claim_key, decode_claim, parse_event
from pcii_vault.lifecycle import SHREDDED_STATES
from pcii_vault.policy.archive import policy_set_damage, policy_set_key, store_policy_set
from pcii_vault.policy.engine import PolicyLoadError
from pcii_vault.store.base import UnfinishedUploads
from pcii_vault.store.filesystem import FilesystemStore

_log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Maintenance:
    """What `maintain` found (and, unless a dry run, removed)."""

    unfinished_shreds: tuple[str, ...]
    orphans: tuple[str, ...]
    stale_claims: tuple[str, ...]
    leftovers: tuple[str, ...]
    kept: tuple[str, ...]
    dry_run: bool
    # The text of the policy set in force, deleted or changed in the store: written again.
    policy_texts: tuple[str, ...] = ()


class MaintenanceActs(Acting):
    """What `pcii maintenance` does."""

    def maintain(self, *, grace: timedelta, dry_run: bool) -> Maintenance:
        """Finish what a crash left half-done; remove what never became part of the vault.

        - a withdrawn or destroyed record whose wrapped key (or ciphertext) is still in the
          store: the log says it is shredded, so the shredding is finished;
        - objects under ``records/`` and ``wrapped/`` of no logged record (an upload whose
          submission never reached the log), once older than `grace` (an upload in
          flight is younger), and objects under a record that its logged manifest does
          not name (uploaded beside it: nothing can read them);
        - claims below the checkpoint (already committed), and temporary files of writes
          that never finished (filesystem store) or their unfinished multipart uploads
          (S3: a writer killed mid-upload leaves its parts stored), older than `grace`.
        Objects the store refuses to delete (Object Lock retention) are listed as kept.

        Raises:
            IntegrityError: the log or the index does not verify.
            BackendError: the store is unavailable.
        """
        cutoff = self._clock() - grace
        # The store is listed before the log is read: a submission logged meanwhile is then
        # a record below, never an orphan (listed the other way round, it was both).
        uploads = self._uploads_older_than(cutoff)
        with self._lock:
            self.sync()
            records = {r.tracking: r for r in self.index.records()}
            size = self.reader().size()
            policy_texts = self._policy_text_to_restore(dry_run=dry_run)
        shreds = [
            tracking
            for tracking, row in records.items()
            if row.state in SHREDDED_STATES and self._holds_objects_of(tracking)
        ]
        claimed = self._claimed_records(size)
        orphaned = {t: keys for t, keys in uploads.items() if t not in records and t not in claimed}
        # Objects under a record that its logged manifest does not name: uploaded beside
        # the submission, or into it after it was logged. Nobody can ever read them.
        strays = [
            key
            for tracking, keys in uploads.items()
            if tracking in records and records[tracking].state not in SHREDDED_STATES
            for key in keys
            if key.startswith("records/") and key not in _manifest_keys(records[tracking])
        ]
        orphans = [key for keys in orphaned.values() for key in keys] + strays
        claims = [
            info.key
            for info in self.store.list(CLAIM_PREFIX)
            if info.key[len(CLAIM_PREFIX) :].isdigit() and int(info.key[len(CLAIM_PREFIX) :]) < size
        ] + self._junk_claims(size)
        store_leftovers = (
            [str(path) for path in self.store.leftovers(cutoff)]
            if isinstance(self.store, FilesystemStore)
            else []
        )
        leftovers = list(store_leftovers)
        unfinished = (
            self.store.unfinished_uploads(cutoff)
            if isinstance(self.store, UnfinishedUploads)
            else []
        )
        leftovers += [f"{key} (unfinished multipart upload)" for key, _ in unfinished]
        # The vault directory's own: a command killed while it wrote the index, the
        # keyring or log-checkpoint left a whole copy of it under a temporary name.
        vault_temps = _temp_files_older_than(self.paths.root, cutoff)
        leftovers += [str(path) for path in vault_temps]
        kept: list[str] = []
        if not dry_run:
            for tracking in shreds:
                self._shred(tracking)
                if self._holds_objects_of(tracking):
                    kept.append(f"records/{tracking}/")
            for tracking, keys in orphaned.items():
                kept += self._remove_unless_recorded(tracking, keys)
            for key in [*strays, *claims]:
                try:
                    self.store.delete(key)
                except VaultError:
                    kept.append(key)
            kept += self._remove_leftovers(store_leftovers, vault_temps, unfinished)
        return Maintenance(
            tuple(shreds),
            tuple(orphans),
            tuple(claims),
            tuple(leftovers),
            tuple(kept),
            dry_run,
            policy_texts,
        )

    def _remove_leftovers(
        self,
        store_leftovers: list[str],
        vault_temps: list[Path],
        unfinished: Sequence[tuple[str, str]],
    ) -> list[str]:
        """Remove what `maintain` found of writes that never finished; what stays."""
        for temp in vault_temps:
            temp.unlink(missing_ok=True)
        if isinstance(self.store, FilesystemStore):
            for path in store_leftovers:
                self.store.remove_leftover(Path(path))
            # A temporary file was the last thing in its record's folder (an upload
            # killed mid-write, its document removed above as an orphan).
            for tracking in _record_folders_of(self.store.root, store_leftovers):
                self.remove_empty_record_folder(tracking)
        kept: list[str] = []
        if isinstance(self.store, UnfinishedUploads):
            for key, upload_id in unfinished:
                try:
                    self.store.abort_unfinished(key, upload_id)
                except VaultError:
                    kept.append(f"{key} (unfinished multipart upload)")
        return kept

    def _policy_text_to_restore(self, *, dry_run: bool) -> tuple[str, ...]:
        """The key of the logged set in force when its stored text was deleted or changed.

        Written again unless `dry_run` (a set not logged yet is stored by the next act).

        Raises:
            IntegrityError: it was, and policies/ holds another set to write it from.
        """
        try:
            self._refresh_policy()
        except PolicyLoadError:
            return ()  # every act refuses until the policies load; nothing to restore from
        if self._policy_set_unlogged():
            # policies/ holds a set not logged yet (the next act logs it): the one in
            # force cannot be written again from it, and it must be before the change.
            self._refuse_replacing_a_damaged_set()
            return ()
        damage = policy_set_damage(self.store, self.policy.policy_set_hash)
        if damage is None:
            return ()
        _log.warning("policy_set_text_damaged", problem=damage)
        if not dry_run:
            store_policy_set(self.store, self.policy)
            self._policy_text_stored = self.policy.policy_set_hash
        return (policy_set_key(self.policy.policy_set_hash),)

    def _uploads_older_than(self, cutoff: datetime) -> dict[str, list[str]]:
        """The objects of uploads whose newest object is older than `cutoff`, by tracking number.

        Objects under ``records/`` and ``wrapped/``. An upload is judged by its newest
        object: a large attachment still arriving keeps its document (written first) as
        young as itself.
        """
        keys: dict[str, list[str]] = {}
        newest: dict[str, datetime | None] = {}
        for prefix in ("records/", "wrapped/"):
            for info in self.store.list(prefix):
                tracking = info.key.split("/")[1]
                keys.setdefault(tracking, []).append(info.key)
                seen = newest.get(tracking, info.modified)
                if info.modified is None or seen is None:
                    newest[tracking] = None  # age unknown: never an orphan
                else:
                    newest[tracking] = max(seen, info.modified)
        return {
            tracking: found
            for tracking, found in keys.items()
            if (when := newest[tracking]) is not None and when < cutoff
        }

    def _remove_unless_recorded(self, tracking: str, keys: list[str]) -> list[str]:
        """Remove an orphaned upload's objects, unless the log made it a record meanwhile.

        Returns:
            The keys the store kept (Object Lock retention).
        """
        with self._lock:
            self.sync()
            with contextlib.suppress(NotFoundError):
                self.index.record(tracking)
                return []  # logged since the listing: a record now, not an orphan
            if tracking in self._claimed_records(self.index.size):
                return []  # claimed since the listing: the next append commits it
        kept: list[str] = []
        for key in keys:
            try:
                self.store.delete(key)
            except VaultError:
                kept.append(key)
        self.remove_empty_record_folder(tracking)
        return kept

    def _junk_claims(self, size: int) -> list[str]:
        """Objects under `log/claims/` that no writer made (removed by maintenance).

        A name no claim has, or a claim ahead of the log that the log key did not sign:
        `audit verify` fails on them until they are gone, and appends remove a forged one
        only once the log reaches its position.
        """
        junk: list[str] = []
        for info in self.store.list(CLAIM_PREFIX):
            suffix = info.key[len(CLAIM_PREFIX) :]
            if not (suffix.isdigit() and len(suffix) == len(claim_key(0)) - len(CLAIM_PREFIX)):
                junk.append(info.key)
                continue
            position = int(suffix)
            if position < size:
                continue  # committed: removed as such
            try:
                decode_claim(self.store.get(info.key), position, self.log_public_key, info.key)
            except NotFoundError:
                continue
            except IntegrityError:
                junk.append(info.key)
        return junk

    def _claimed_records(self, size: int) -> set[str]:
        """The records named by claims past the log's `size`: the next append commits them.

        A writer that claimed and then failed to commit (a crash, a store error) leaves
        its claim for the next writer, which commits it: a submission in it is a record
        to be, whose objects must stay. A forged claim (not the log key's) names nothing.
        """
        named: set[str] = set()
        for info in self.store.list(CLAIM_PREFIX):
            suffix = info.key[len(CLAIM_PREFIX) :]
            if not suffix.isdigit() or int(suffix) < size:
                continue
            position = int(suffix)
            try:
                data = self.store.get(info.key)
                entries = decode_claim(data, position, self.log_public_key, info.key)
            except (NotFoundError, IntegrityError):
                continue  # committed and cleaned meanwhile, or forged
            for offset, entry in enumerate(entries):
                with contextlib.suppress(IntegrityError, ValueError):
                    record = parse_event(entry, position + offset).record
                    if record is not None:
                        named.add(record)
        return named

    def _holds_objects_of(self, tracking: str) -> bool:
        try:
            self.store.head(f"wrapped/{tracking}")
        except NotFoundError:
            return any(True for _ in self.store.list(f"records/{tracking}/"))
        return True


def _manifest_keys(record: RecordRow) -> set[str]:
    """The store keys of a record's logged objects."""
    return {f"records/{record.tracking}/{entry['object']}" for entry in record.files}


def _temp_files_older_than(directory: Path, cutoff: datetime) -> list[Path]:
    """The files `temp_name` named in `directory`, unchanged since before `cutoff`."""
    found: list[Path] = []
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            if not is_temp_name(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                changed = datetime.fromtimestamp(entry.stat(follow_symlinks=False).st_mtime, UTC)
                if changed < cutoff:
                    found.append(directory / entry.name)
    return sorted(found)


def _record_folders_of(root: Path, paths: Iterable[str]) -> set[str]:
    """The tracking numbers whose ``records/<t>/`` folder holds one of `paths`."""
    found = set()
    for path in paths:
        parts = Path(path).relative_to(root).parts if Path(path).is_relative_to(root) else ()
        if len(parts) > 2 and parts[0] == "records":
            found.add(parts[1])
    return found
