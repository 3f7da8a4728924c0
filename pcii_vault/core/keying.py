"""The KEK in use, checked against the log: versions, the key lock, the holder's state."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator

from pcii_vault.core.acting import Acting
from pcii_vault.core.base import _KEY_LOCK_NAME
from pcii_vault.durable import vault_file_failure
from pcii_vault.errors import BackendError, IntegrityError, VaultError
from pcii_vault.keys.base import KeyProvider
from pcii_vault.keys.custody import KeyCustody
from pcii_vault.keys.providers import LOCAL


class Keying(Acting):
    """A vault whose key holder is held to what the log records of its keys."""

    def _refuse_retired_by_log(self, version: int) -> None:
        """Refuse to unwrap under a KEK version the log retired, whatever the keyring says.

        `keys retire` logs first, then marks the version retired in the keyring: a
        `keyring.sealed` put back from before (or a replica's copy not yet replaced, or
        a retirement whose keyring write was cut short) still holds it usable. No live
        record is wrapped under a retired version (retire refuses while one is, and a
        submission on its way is refused at its log position), so a key wrapped under
        one was put back too.

        Raises:
            IntegrityError: the log retired `version`.
        """
        with self._lock:
            retired = self.index.retired_versions()
        if version in retired:
            raise IntegrityError(
                f"a data key is wrapped under KEK version {version}, which the log retired: "
                "the wrapped key was put back from before the retirement (changed outside "
                "the vault); nothing is unwrapped with a retired key"
            )

    def _follow_migration(self) -> KeyCustody:
        """The keys where the log places them now.

        A long-lived vault (a server) opened its keys before a `keys migrate` run by
        another process on this vault directory: it would go on wrapping new records
        under the source and find no provider for the keys moved. When the log's last
        migration is not the one the keys were opened under, they are opened again.
        """
        keyring = self.keyring
        with self._lock:
            logged = self.index.meta("key.migrated")
        if logged != self._keys_opened_for:
            with self._key_lock() as fresh_keyring:
                keyring = fresh_keyring()
        return keyring

    def check_keys_current(self) -> None:
        """Raise as the next submission would on a keyring behind the log (a readiness probe).

        Raises:
            BackendError: this keyring does not hold the logged current KEK version.
        """
        self._require_logged_kek()

    def _require_logged_kek(self) -> None:
        """Wrap only under the KEK version the log says is current.

        A keyring behind the log was rotated elsewhere (another replica of the vault with
        its own copy of a local keyring): wrapping under the old version, or making a
        second, different version, would strand records. Another process on this host
        may have rotated the same file: read it again first.

        Raises:
            BackendError: this keyring does not hold the logged current version.
        """
        keyring = self._follow_migration()
        logged = self._logged_kek_version(keyring)
        if keyring.key_id == LOCAL:
            # The file outlives this process: an older copy put back under a running
            # server would lose a version wrapped under from memory alone.
            self._local().reload_if_changed()
        if logged > keyring.current_version:
            with self._key_lock() as fresh_keyring:
                keyring = fresh_keyring()
        if logged > keyring.current_version and keyring.key_id != LOCAL:
            raise BackendError(_kek_missing_in_holder(keyring.key_id, logged))
        if logged > keyring.current_version:
            raise _keyring_not_the_logs(logged, keyring.current_version, pending=None)

    def _logged_kek_version(self, keyring: KeyProvider) -> int:
        """The current provider's KEK version as the log last recorded it.

        A provider the log has never rotated is at the version it had when the vault
        started using it (an existing transit or KMS key may already be past 1).
        """
        rotated = self.index.meta("key.rotated")
        if rotated:
            details = json.loads(rotated)
            if details.get("kek", LOCAL) == keyring.key_id:
                return int(details["version"])
        # Rotated elsewhere since: the migration that brought the KEKs back says where
        # this provider stood (`started` records the target's version).
        migrated = self.index.meta("key.migrated")
        if migrated:
            details = json.loads(migrated)
            if details["to"] == self.current_kek_uri() and "version" in details:
                return int(details["version"])
        return 1 if keyring.key_id == LOCAL else keyring.current_version

    @contextlib.contextmanager
    def _key_lock(self) -> Iterator[Callable[[], KeyCustody]]:
        """Hold the vault's key lock; yield a getter for a keyring read under it."""
        # The local keyring is unsealed as soon as the index is opened (its tag key): a
        # keyring read before the lock may predate another process's rotation.
        loaded_before = self._keyring is not None or self._local_keys is not None
        try:
            fd = os.open(self.paths.root / _KEY_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:  # a read-only vault directory, say
            raise vault_file_failure(self.paths.root / _KEY_LOCK_NAME, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)

            def fresh() -> KeyCustody:
                return self._reread_keyring() if loaded_before else self.keyring

            yield fresh
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    def _reread_keyring(self) -> KeyCustody:
        """The keyring read again from its file (replaced atomically: never half-written)."""
        if self._keyring is not None:
            self._keyring.close()
            self._keyring = None
            self._ledger = None  # it held the closed custody's signer
        self._local_keys = None  # read the keyring file again
        return self.keyring


def _keyring_not_the_logs(logged: int, held: int, *, pending: int | None) -> VaultError:
    """Why a key act cannot go on: the keyring holds another current KEK than the log.

    The same advice `keys rotate` acts on: a rotation this vault noted and logged but did
    not finish is finished by running it again; a keyring behind the log otherwise is an
    older copy (or another replica rotated), which no rotation here can repair.
    """
    said = f"the log says KEK version {logged} is current but this vault's keyring holds {held}"
    if logged == held + 1 and pending == logged:
        return IntegrityError(f"{said}: run `pcii keys rotate` again to complete the rotation")
    if logged > held:
        return BackendError(
            f"{said}: the keys were rotated by another replica (or this keyring.sealed is an "
            "older copy); copy the newest keyring.sealed here and restart"
        )
    return IntegrityError(f"{said}: the keyring was changed outside the vault")


def _kek_missing_in_holder(key_id: str, version: int) -> str:
    return (
        f"the log says KEK version {version} is current but {key_id} does not hold it: "
        "the key was deleted there (records wrapped under it cannot be read), or the "
        "rotation was logged and the key not made (`pcii keys rotate` on the vault "
        "directory that logged it completes it); nothing is wrapped until it is there"
    )
