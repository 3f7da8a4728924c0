"""One opened vault: its configuration, store, keys, log and index, each opened on first use.

The layer every act stands on. Nothing here decides anything: it opens what the vault
directory names and refuses what is not this vault's (a keyring sealed for another
vault, a `vault.json` whose key holders were edited, a vault file that is a symlink).

Invariants:
- the keys are unsealed at most once per object, and only when an act needs them;
- the appending ledger and the read-only reader share one checkpoint anchor, so what
  either saw, both hold the log to.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import os
import stat
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import structlog

from pcii_vault.config import CONFIG_NAME, Batching, VaultConfig, VaultPaths
from pcii_vault.crypto.mac import Authenticator
from pcii_vault.crypto.signing import Ed25519PublicKey, Signer
from pcii_vault.errors import ConfigError, IntegrityError, VaultError
from pcii_vault.index import Index
from pcii_vault.keys.custody import KeyCustody, open_custody
from pcii_vault.keys.local import UNSEAL_SECRET_ENV, LocalKeyring, UnsealError
from pcii_vault.keys.providers import LOCAL
from pcii_vault.keys.shares import SHARES_ENV
from pcii_vault.ledger.anchor import CheckpointAnchor
from pcii_vault.ledger.log import Ledger
from pcii_vault.ledger.note import NoteVerifier, verifier_key_string
from pcii_vault.policy.engine import PolicyEngine
from pcii_vault.sequencer import Sequencer
from pcii_vault.store import open_store
from pcii_vault.store.base import ObjectStore
from pcii_vault.store.filesystem import FilesystemStore

_log = structlog.get_logger(__name__)


Clock = Callable[[], datetime]


_DEFAULT_BATCHING = Batching()


# The actor of the vault's own events (notices, policy loads): no principal may take it.
VAULT_ACTOR = "vault"


def _utcnow() -> datetime:
    return datetime.now(UTC)


_ROTATION_PENDING = "rotation-pending"  # in the vault directory: a rotation this vault logs


_KEY_LOCK_NAME = "keys.lock"


class VaultBase:
    """A vault directory opened: configuration, store, keys, log and index (lazily)."""

    def __init__(
        self,
        root: Path,
        *,
        unseal: Callable[[], bytes],
        clock: Clock = _utcnow,
        batching: Batching = _DEFAULT_BATCHING,
    ) -> None:
        self.paths = VaultPaths(root)
        self.config = VaultConfig.load(self.paths.config)
        _check_vault_files(self.paths)
        self.store: ObjectStore = open_store(self.config.store, root_for_file=self.paths.objects)
        self._unseal = unseal
        self._clock = clock
        self._keyring: KeyCustody | None = None
        self._keys_opened_for: str | None = None  # the log's last migration at that time
        self._local_keys: LocalKeyring | None = None
        self._ledger: Ledger | None = None
        self._reader: Ledger | None = None
        # One anchor for the ledger and the reader: what either saw, both hold the log to.
        self._checkpoint_anchor = CheckpointAnchor(self.paths.anchor)
        self._synced_since = float("-inf")  # when the last sync that succeeded began
        self._index: Index | None = None
        # The index connection and its overlay transaction are shared by the threads
        # that use this object: one of them at a time touches the index.
        self._lock = threading.RLock()
        self._batching = batching
        self._sequencer: Sequencer | None = None
        self._policy_stamp = _policy_stamp(self._policy_dir())
        self.policy = PolicyEngine.load(self._policy_dir())
        self._policy_text_stored: str | None = None  # the set whose stored text was seen

    def close(self) -> None:
        """Commit what is queued, stop the group commit, release the index and keys."""
        self._synced_since = float("-inf")
        if self._sequencer is not None:
            self._sequencer.close()
            self._sequencer = None
        if self._index is not None:
            self._index.close()
            self._index = None
        if self._keyring is not None:
            self._keyring.close()
            self._keyring = None

    def now(self) -> datetime:
        """The vault's clock."""
        return self._clock()

    def _policy_dir(self) -> Path:
        """The vault's own copy of the policies, which `init` always makes.

        There is no fallback to the shipped defaults: every vault directory has had its
        copy since the first version, so a missing one was removed (or symlinked away),
        and deciding with other policies than the vault's must not happen silently.

        Raises:
            ConfigError: the directory is missing or not a directory.
        """
        local = self.paths.root / "policies"
        if not local.is_dir():
            raise ConfigError(
                f"{local} is missing or not a directory: the vault decides only with its "
                "own policies (restore them, e.g. from a backup or the shipped policies/)"
            )
        return local

    @property
    def keyring(self) -> KeyCustody:
        """The vault's keys behind their seam (asks for the unseal secret on first use)."""
        if self._keyring is None:
            # Where the log placed the keys when they were opened (`_follow_migration`).
            self._keys_opened_for = self.index.meta("key.migrated")
            custody = self._open_keys()
            if not self._is_log_key(custody.log_signer.public_key):
                custody.close()
                raise IntegrityError(
                    f"the log key at {self.config.log_signer} is not the one {CONFIG_NAME} "
                    f"of vault {self.config.vault_id} names; refusing to sign with it"
                )
            self._keyring = custody
        return self._keyring

    def _local(self) -> LocalKeyring:
        """The unsealed local keyring (the index's key, the intake key; maybe the KEKs)."""
        if self._local_keys is None:
            try:
                local = LocalKeyring.open(self.paths.keyring, self._unseal(), clock=self._clock)
            except UnsealError as exc:
                if self.config.unseal_threshold is None:
                    raise
                # A passphrase left in the environment is tried before shares are asked
                # for (an edited claim of shares is found by the seal): say what is wrong.
                count = self.config.unseal_threshold
                if os.environ.get(UNSEAL_SECRET_ENV):
                    said = (
                        f"{exc}; this vault's secret is split into shares and "
                        f"{UNSEAL_SECRET_ENV}, when set, is tried first: unset it and give "
                        f"{count} of the shares with {SHARES_ENV}"
                    )
                else:
                    said = (
                        f"{exc}: the shares given do not open it (shares of another vault?); "
                        f"give {count} of this vault's shares with {SHARES_ENV}"
                    )
                raise UnsealError(said) from None
            self._check_keyring_belongs(local)
            self._local_keys = local
        return self._local_keys

    def _check_keyring_belongs(self, local: LocalKeyring) -> None:
        """Refuse a keyring that is not this vault's, before anything is read or written.

        Another vault's keyring sealed with the same secret unseals too; its intake key
        (always in the local keyring) and its log key (when the keyring holds it) are not
        the ones `vault.json` names. A `vault.json` carrying another vault's keys fails
        here the same way.

        Raises:
            IntegrityError: the keyring and `vault.json` name different keys.
        """
        if self.config.seal is None:
            raise IntegrityError(
                f"{CONFIG_NAME} carries no seal (removed, or written before vaults sealed "
                "it): its key holders cannot be trusted; refusing to open"
            )
        seal = bytes.fromhex(self.config.seal)
        expected = local.config_authenticator().tag(self.config.sealed_fields())
        if not hmac.compare_digest(seal, expected):
            # Edited outside the vault (a key holder's address or PKCS#11 module path would
            # otherwise be opened, with the unseal secret in this process), or another
            # vault's keyring: nothing is opened either way.
            raise IntegrityError(
                f"{self.paths.keyring} and {CONFIG_NAME} are not of the same vault: "
                f"{CONFIG_NAME} does not carry this keyring's seal (edited outside the vault, "
                "or another vault's keyring); refusing to open"
            ) from None
        intake = base64.b64encode(local.intake_public_key).decode()
        mismatch = None
        if intake != self.config.intake_public_key:
            mismatch = "intake key"
        elif self.config.log_signer == LOCAL and not self._is_log_key(
            local.log_signer().public_key
        ):
            mismatch = "log key"
        if mismatch is not None:
            raise IntegrityError(
                f"{self.paths.keyring} and {CONFIG_NAME} are not of the same vault: the "
                f"keyring's {mismatch} is not the one {CONFIG_NAME} names; refusing to open"
            )

    def _is_log_key(self, public_key: Ed25519PublicKey) -> bool:
        return verifier_key_string(self.config.log_origin, public_key) == self.config.log_key

    def _open_keys(
        self, kek_uri: str | None = None, *, readers: tuple[str, ...] | None = None
    ) -> KeyCustody:
        """Open the keys (`kek_uri` and `readers` override what the log names)."""
        return open_custody(
            self._local(),
            kek_uri or self.current_kek_uri(),
            self.config.log_signer,
            readers=self._migration_source() if readers is None else readers,
        )

    def current_kek_uri(self) -> str:
        """Where the KEKs live now: the last migration the log records, else `init`'s."""
        migrated = self.index.meta("key.migrated")
        return str(json.loads(migrated)["to"]) if migrated else self.config.kek

    def _migration_source(self) -> tuple[str, ...]:
        """A migration's source while it is unfinished (its blobs must still unwrap)."""
        migrated = self.index.meta("key.migrated")
        if migrated is None:
            return ()
        details = json.loads(migrated)
        return (str(details["from"]),) if details["phase"] == "started" else ()

    def _open_index(self, seal: Authenticator) -> Index:
        """The index file, written as this vault's batching says (a server: behind)."""
        return Index.open(self.paths.index, seal=seal, write_every=self._batching.index_write_every)

    @property
    def index(self) -> Index:
        """The authenticated projection (its key comes from the keyring: unseals)."""
        if self._index is None:
            seal = self._local().index_authenticator()
            missing = not self.paths.index.is_symlink() and not self.paths.index.exists()
            self._index = self._open_index(seal)
            if missing and self.paths.anchor.exists():
                # Deleted (or lost): what decides is the log, replayed into a new one.
                _log.warning("index_rebuilt_from_log", reason=f"{self.paths.index} was missing")
        return self._index

    @property
    def ledger(self) -> Ledger:
        """The log, able to append (needs the keyring's log signing key)."""
        if self._ledger is None:
            signer = self.keyring.log_signer
            self._ledger = self._log_over(signer, signer.public_key)
        return self._ledger

    def reader(self) -> Ledger:
        """The log, read-only (no unseal secret needed).

        One reader per vault object and store, kept like the appending ledger: what it
        proved (a checkpoint against the anchor, the right edge of a checkpoint's tree)
        is proved again when the log moves, not on every call. Until the first append,
        every first look of every requester used to prove it all afresh.
        """
        if self._ledger is not None:
            return self._ledger
        reader = self._reader
        if reader is None or reader.store is not self.store:
            reader = self._log_over(None, self.log_public_key)
            self._reader = reader
        return reader

    def _log_over(self, signer: Signer | None, verifier: Ed25519PublicKey) -> Ledger:
        """The log on this vault's store, held to the one anchor of this vault object."""
        return Ledger(
            self.store,
            self.config.log_origin,
            signer=signer,
            verifier=verifier,
            clock=self._clock,
            anchor=self._anchor(),
        )

    def _anchor(self) -> CheckpointAnchor:
        return self._checkpoint_anchor

    @property
    def log_public_key(self) -> Ed25519PublicKey:
        """The log's Ed25519 verifying key, from the vault config."""
        return NoteVerifier.from_key_string(self.config.log_key).public_key

    def remove_empty_record_folder(self, tracking: str) -> None:
        """Remove the record's empty folder, in a store that keeps folders (filesystem)."""
        if isinstance(self.store, FilesystemStore):
            with contextlib.suppress(VaultError, OSError):
                self.store.remove_empty_folder(f"records/{tracking}/")

    def _shred(self, tracking: str) -> None:
        # Deleting the wrapped DEK makes every copy of the ciphertext noise; the ciphertext
        # itself is removed too where the store allows (object lock may keep it).
        self.store.delete(f"wrapped/{tracking}")
        try:
            for info in list(self.store.list(f"records/{tracking}/")):
                self.store.delete(info.key)
        except VaultError as exc:
            # Shredded all the same (the key is gone); `pcii maintenance` lists what stays.
            _log.warning("record_ciphertext_not_removed", record=tracking, reason=str(exc))
        self.remove_empty_record_folder(tracking)


def _policy_stamp(directory: Path) -> tuple[tuple[str, int, int, int], ...]:
    """What changes when a policy file is edited, added or removed (stat, no reading).

    Taken before every act of a long-lived vault, so plain strings and `os.scandir`.
    """
    stamp = []
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            with contextlib.suppress(OSError):
                st = entry.stat()
                stamp.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns))
    stamp.sort()
    return (os.fspath(directory), 0, 0, 0), *stamp


# The vault directory's own files: each is a regular file when the vault wrote it.
_VAULT_FILES = (
    "keyring.sealed",
    "keyring.sealed.lock",
    "index.sqlite",
    "index.sqlite.mac",
    "index.sqlite.lock",
    "log-checkpoint",
    "log-checkpoint.lock",
    _KEY_LOCK_NAME,
)


def _check_vault_files(paths: VaultPaths) -> None:
    """Refuse a vault whose own files were replaced by something else (a directory).

    A symlink is refused too, dangling or not: the vault would write through it, out of
    its directory (an index kept elsewhere, a lock file created where the link points),
    and a `log-checkpoint` linked to the store's checkpoint would always agree with it.

    Raises:
        IntegrityError: one of them exists and is not a regular file.
    """
    for name in _VAULT_FILES:
        path = paths.root / name
        try:
            mode = path.lstat().st_mode
        except FileNotFoundError:
            continue  # not written yet (the index, the locks) or reported where it is read
        except OSError as exc:
            raise IntegrityError(f"{path} cannot be read: {exc.strerror}") from None
        if stat.S_ISLNK(mode):
            raise IntegrityError(
                f"{path} is a symlink, not the file the vault wrote: put the file itself "
                "there (the vault writes only inside its directory)"
            )
        if not stat.S_ISREG(mode):
            if name in {"keyring.sealed", "log-checkpoint"}:
                fix = "restore it from a backup"
            elif name.endswith(".lock"):
                fix = "remove it (the vault makes a new one)"
            else:
                fix = "remove it and run `pcii index rebuild`"
            raise IntegrityError(f"{path} is not a regular file, not what the vault wrote: {fix}")
