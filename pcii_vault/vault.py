"""The vault core: every act on PCII goes through here, in-process or behind a server.

Each act follows the same order, and the order is the security argument:
1. verify the signed request (registered principal, signature, vault, time window, nonce);
2. ask the protection policies (Cedar) for a decision, with the principal's and the
   record's attributes and the request's purpose, use and authority;
3. append the event (permit or deny, determining policies, obligations) to the log and
   wait for a signed checkpoint that covers it;
4. only then act: write state, release bytes, shred keys.
A failure before step 3 leaves nothing visible; a failure in step 3 releases nothing.

Invariants:
- no plaintext leaves the vault unless its access event is durably in the log;
- a record's objects become a record only through its `submission.received` event; if that
  append fails, the uploaded ciphertext and wrapped key are removed;
- the index is a projection of the log, caught up before every decision that counts: a
  read (nothing logged) syncs before its look; an act that logs is decided at its log
  position on every event before it, and its first look, made on the index as it is,
  refuses nothing without looking again after a sync.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import errno
import fcntl
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import sqlite3
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from pcii_vault.config import CONFIG_NAME, INIT_MARKER, Batching, VaultConfig, VaultPaths
from pcii_vault.crypto.envelope import (
    ObjectContext,
    RecordContext,
    decrypt_to_file,
    open_object,
)
from pcii_vault.crypto.mac import Authenticator
from pcii_vault.crypto.seal import DEFAULT_SCRYPT, ScryptParams
from pcii_vault.crypto.signing import Ed25519PrivateKey, Ed25519PublicKey
from pcii_vault.decisions import decide, principal_facts, record_facts, request_facts
from pcii_vault.durable import (
    fsync_directory,
    is_temp_name,
    read_regular,
    staging_prefix,
    vault_file_failure,
    write_new_file,
)
from pcii_vault.errors import (
    ActConflictError,
    BackendError,
    ConfigError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    ObjectExistsError,
    PolicyDenied,
    PreconditionFailedError,
    VaultError,
)
from pcii_vault.identity import Identity
from pcii_vault.index import (
    TRANSITION_ACTIONS,
    Deadline,
    Index,
    IndexTamperedError,
    IndexWriteError,
    RecordRow,
    signed_final,
)
from pcii_vault.keys.base import KekInfo, KeyLocation, KeyProvider
from pcii_vault.keys.custody import KeyCustody, open_custody
from pcii_vault.keys.local import MIN_SECRET_BYTES, UNSEAL_SECRET_ENV, LocalKeyring, UnsealError
from pcii_vault.keys.providers import LOCAL, log_signer_uri_for, public_uri
from pcii_vault.keys.shares import SHARES_ENV
from pcii_vault.ledger.anchor import CheckpointAnchor
from pcii_vault.ledger.log import (
    CLAIM_PREFIX,
    AppendResult,
    Ledger,
    LogForkedError,
    LogRolledBackError,
    claim_key,
    decode_claim,
    parse_event,
)
from pcii_vault.ledger.note import Checkpoint, NoteVerifier, verifier_key_string
from pcii_vault.ledger.proof import prove
from pcii_vault.ledger.tiles import MAX_ENTRY_BYTES
from pcii_vault.lifecycle import SHREDDED_STATES, IllegalTransitionError, next_state, releasable
from pcii_vault.marking import ReleasePackage, render_release
from pcii_vault.marking_pdf import (
    UnmarkablePdf,
    file_looks_like_pdf,
    looks_like_pdf,
    stamp_pdf,
)
from pcii_vault.models.acts import DECONTROL_BASES, check_params
from pcii_vault.models.event import Event, EventType
from pcii_vault.models.principal import Principal, PrincipalAttributes
from pcii_vault.models.problems import describe
from pcii_vault.models.request import RequestBody, SignedRequest, sign_request, verify_act
from pcii_vault.models.submission import (
    TRACKING_NUMBER_PATTERN,
    ManifestEntry,
    Submission,
    check_manifest,
    same_organisation,
    validate_submission_bytes,
)
from pcii_vault.policy.archive import policy_set_damage, policy_set_key, store_policy_set
from pcii_vault.policy.denial import explain_denial
from pcii_vault.policy.engine import (
    Decision,
    EntityDirectory,
    PolicyEngine,
    PolicyLoadError,
    default_policy_directory,
)
from pcii_vault.receipt import Receipt
from pcii_vault.sequencer import Act, Sequencer, logged_before_interrupt
from pcii_vault.store import open_store
from pcii_vault.store.base import ObjectStore, UnfinishedUploads
from pcii_vault.store.filesystem import FilesystemStore
from pcii_vault.submitter import MAX_DOCUMENT_BYTES, SealedUpload
from pcii_vault.text import printable, unreadable

__all__ = [
    "KeyStatus",
    "Maintenance",
    "Migration",
    "Release",
    "Rewrap",
    "Vault",
    "principal_params",
]

_log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
_DEFAULT_BATCHING = Batching()
# The actor of the vault's own events (notices, policy loads): no principal may take it.
VAULT_ACTOR = "vault"
# progress(attachment name, stored bytes read so far, its plaintext size)
Progress = Callable[[str, int, int], None]


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Release:
    """What a permitted retrieval wrote, and the access event that allowed it."""

    tracking_number: str
    directory: Path
    files: tuple[str, ...]
    access_index: int
    obligations: tuple[str, ...]
    policies: tuple[str, ...]


@dataclass(frozen=True)
class StagedRelease(Release):
    """A permitted release staged by the core: `directory` is scratch space to move from."""


@dataclass(frozen=True)
class HeldRelease:
    """A permitted release the core holds in memory: each file's bytes, in `files` order."""

    tracking_number: str
    files: tuple[str, ...]
    contents: Mapping[str, bytes]
    access_index: int
    obligations: tuple[str, ...]
    policies: tuple[str, ...]


@dataclass(frozen=True)
class _Rendered:
    """A permitted release, logged and rendered once: what holding or staging it needs."""

    tracking: str
    dek: bytes
    access_index: int
    decision: Decision
    released: tuple[dict[str, Any], ...]  # the stored attachments the policy releases
    package: ReleasePackage
    render: Callable[..., ReleasePackage]  # again, e.g. with unmarkable PDFs withheld

    @property
    def stamps_pdfs(self) -> bool:
        """Whether a released PDF gets a marking stamped on its pages (that needs files)."""
        return any(self.package.stamps.get(m["name"]) is not None for m in self.released)


@dataclass(frozen=True)
class KeyStatus:
    """What may be shown about the vault's keys: versions and dates, never key material."""

    current_version: int
    logged_version: int
    min_decryption_version: int
    versions: tuple[KekInfo, ...]
    last_rewrap: dict[str, Any] | None
    locations: tuple[KeyLocation, ...] = ()
    migration: dict[str, Any] | None = None


@dataclass(frozen=True)
class Rewrap:
    """What `rewrap_keys` did: how many wrapped keys it replaced, under which version."""

    count: int
    version: int


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


@dataclass(frozen=True)
class Migration:
    """What `migrate_keys` did: records re-wrapped into the target provider."""

    count: int
    source: str
    target: str


_REWRAP_ATTEMPTS = 3
_ROTATION_PENDING = "rotation-pending"  # in the vault directory: a rotation this vault logs
_KEY_LOCK_NAME = "keys.lock"


class Vault:
    """One vault: its configuration, store, keyring, log, index and policies."""

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

    # ----- creation ------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        root: Path,
        *,
        store_url: str,
        secret: bytes,
        admin_name: str,
        admin_key_out: Path,
        admin_organisation: str = "PCII Program Office",
        clock: Clock = _utcnow,
        kdf_params: ScryptParams = DEFAULT_SCRYPT,
        kek_uri: str = LOCAL,
        unseal_threshold: int | None = None,
    ) -> tuple[Vault, Identity]:
        """Create a vault: config, sealed keyring, store layout, log, and the first admin.

        `kek_uri` names where the KEKs live (`local`, `pkcs11:`, `openbao:`, `awskms:`):
        the key is created there when missing (generated inside, never exported) and used
        when present; the log key goes into the provider where it can hold one.
        `unseal_threshold` records that the secret was split into shares (see
        `pcii_vault.keys.shares`), so that opening asks for shares, not a passphrase.

        Raises:
            ConfigError: the directory already holds a vault, or the store is unusable.
            InputError: the admin key file cannot be created, or `kek_uri` is malformed.
            BackendError: the key provider cannot be reached.
        """
        stored_kek_uri = public_uri(kek_uri)
        paths = VaultPaths(root)
        _check_new_vault_directory(root)
        if len(secret) < MIN_SECRET_BYTES:
            raise InputError(f"unseal secret must be at least {MIN_SECRET_BYTES} bytes")
        created_root = not root.exists()
        _claim_new_vault_directory(root)  # before the clean-up below may remove anything
        claimed = False
        store: ObjectStore | None = None
        custody: KeyCustody | None = None
        try:
            _claim_new_file(admin_key_out)
            claimed = True
            store = open_store(store_url, root_for_file=paths.objects, create=True)
            _check_store_holds_no_log(store)
            vault_id = f"v-{secrets.token_hex(8)}"
            keyring = LocalKeyring.create(paths.keyring, secret, kdf_params=kdf_params, clock=clock)
            custody = open_custody(keyring, kek_uri, log_signer_uri_for(kek_uri), create=True)
            origin = f"pcii-vault.local/{vault_id}"
            signer = custody.log_signer
            config = VaultConfig(
                vault_id=vault_id,
                created=clock(),
                store=store_url,
                log_origin=origin,
                log_key=verifier_key_string(origin, signer.public_key),
                intake_public_key=base64.b64encode(keyring.intake_public_key).decode(),
                kek=stored_kek_uri,
                log_signer=public_uri(log_signer_uri_for(kek_uri)),
                unseal_threshold=unseal_threshold,
            )
            config = config.model_copy(
                update={"seal": keyring.config_authenticator().tag(config.sealed_fields()).hex()}
            )
            admin_key = Ed25519PrivateKey.generate()
            admin = Principal(
                id=admin_name,
                role="admin",
                organisation=admin_organisation,
                level="federal",
                public_key=base64.b64encode(admin_key.public_key.raw).decode(),
            )
            policy = PolicyEngine.load(_copy_default_policies(root))
            ledger = Ledger(
                store,
                origin,
                signer=signer,
                verifier=signer.public_key,
                clock=clock,
                anchor=CheckpointAnchor(paths.anchor),
            )
            # The policy set's text is in the store before the log names it.
            store_policy_set(store, policy)
            now = clock()
            ledger.append(
                [
                    _draft("vault.initialized", now, details={"vault_id": vault_id}),
                    _draft("policy.loaded", now, policy_set=policy.policy_set_hash),
                    _draft(
                        "principal.registered",
                        now,
                        details={"principal": admin.model_dump(mode="json")},
                    ),
                ]
            )
            identity = Identity(vault_id=vault_id, principal=admin_name, key=admin_key)
            _write_claimed(admin_key_out, identity)
            # The config file is written last: a directory without it is not a vault.
            config.save_new(paths.config)
            (root / INIT_MARKER).unlink()
        except BaseException as exc:
            # Nothing half-created survives: a failed init leaves what was there before.
            if claimed:
                admin_key_out.unlink(missing_ok=True)
            if custody is not None:
                custody.close()
            _remove_partial_vault(paths, store, created_root=created_root)
            if isinstance(exc, OSError):  # writing the vault directory (a full disk)
                raise _not_created(root, exc) from exc
            raise
        vault = cls(root, unseal=lambda: secret, clock=clock)
        vault._keyring = custody
        vault._local_keys = custody.local
        # The index is new here (the `index` property warns of one found missing).
        vault._index = vault._open_index(custody.local.index_authenticator())
        vault.sync()
        return vault, identity

    # ----- plumbing ------------------------------------------------------------------

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

    def current_kek_version(self) -> int:
        """The KEK version new records are wrapped under, as the log last recorded it."""
        rotated = self._trusted_index().meta("key.rotated")
        return int(json.loads(rotated)["version"]) if rotated else 1

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
                raise UnsealError(
                    f"{exc}; this vault's secret is split into shares: give "
                    f"{self.config.unseal_threshold} of them with {SHARES_ENV} "
                    f"({UNSEAL_SECRET_ENV}, when set, is tried first: unset it)"
                ) from None
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
            self._ledger = Ledger(
                self.store,
                self.config.log_origin,
                signer=signer,
                verifier=signer.public_key,
                clock=self._clock,
                anchor=self._anchor(),
            )
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
            reader = Ledger(
                self.store,
                self.config.log_origin,
                signer=None,
                verifier=self.log_public_key,
                clock=self._clock,
                anchor=self._anchor(),
            )
            self._reader = reader
        return reader

    def _anchor(self) -> CheckpointAnchor:
        return self._checkpoint_anchor

    @property
    def log_public_key(self) -> Ed25519PublicKey:
        """The log's Ed25519 verifying key, from the vault config."""
        return NoteVerifier.from_key_string(self.config.log_key).public_key

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
                raise IntegrityError(
                    f"{'; '.join(problems)}; run `pcii index rebuild` to rebuild it from "
                    "the verified log"
                ) from None
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

    def _policy_set_unlogged(self) -> bool:
        """Whether the index's last logged policy set is not the one this vault runs."""
        return bool(self.index.size) and self.index.meta("policy_set") != (
            self.policy.policy_set_hash
        )

    def _refresh_policy(self) -> None:
        """Load the policy directory again when its files changed (a long-lived vault).

        Raises:
            PolicyLoadError: the changed set does not load (every act is refused until
                it is fixed; the set loaded before is not used either).
        """
        directory = self._policy_dir()
        stamp = _policy_stamp(directory)
        if stamp != self._policy_stamp:
            self.policy = PolicyEngine.load(directory)
            self._policy_stamp = stamp

    def _note_policy_change(self) -> None:
        """Log a changed policy set (a `policy.loaded` event) before it decides anything.

        A long-lived vault object (a server) reloads the policy directory when its files
        change; a set that does not load refuses every act until it is fixed.
        """
        self._refresh_policy()
        if self._policy_set_unlogged():
            # A changed policy set is itself an event, before it decides anything; its
            # text goes into the store first, so an auditor can re-run its decisions.
            store_policy_set(self.store, self.policy)
            self._policy_text_stored = self.policy.policy_set_hash
            self._append(
                [_draft("policy.loaded", self._clock(), policy_set=self.policy.policy_set_hash)]
            )
        elif self._policy_text_unchecked():
            # Logged before: its text must still be in the store, or no decision it makes
            # could be re-run by `audit verify`. Once per process and set. A text deleted
            # or changed is tampering, refused here (not written over: `maintenance`
            # does that, and says so).
            damage = policy_set_damage(self.store, self.policy)
            if damage is not None:
                raise IntegrityError(
                    f"{damage}: its decisions could not be re-run; `pcii maintenance` "
                    "writes it again from this vault's policies/"
                )
            self._policy_text_stored = self.policy.policy_set_hash

    def _policy_loaded_again(self, position: int) -> list[Event]:
        """`policy.loaded` of this vault's set, when another is the last loaded at `position`.

        Replicas running different sets (a new one copied to them one by one) log theirs
        in turn: one may log its own between another's and that one's decisions, which
        would then be illegal there (decided by a set not the last loaded). The set is
        logged again first, in the same batch; only a set whose stored text this process
        has checked, so that `audit verify` can re-run its decisions.
        """
        policy_set = self.policy.policy_set_hash
        if not self._policy_set_unlogged() or self._policy_text_unchecked():
            return []
        loaded = _draft("policy.loaded", self._clock(), policy_set=policy_set)
        loaded = loaded.model_copy(update={"seq": position})
        _reads_back(loaded)
        if self.index.apply_in_overlay([loaded]) is not None:
            return []
        _log.warning("policy_set_logged_again", policy_set=policy_set[:16])
        return [loaded]

    def _policy_text_unchecked(self) -> bool:
        """Whether this process has not yet seen the running set's text in the store."""
        return self._policy_text_stored != self.policy.policy_set_hash

    def _append(self, drafts: Sequence[Event]) -> list[int]:
        """Append the vault's own events (no request to check); return their indices."""
        try:
            result = self.ledger.append(list(drafts))
        except OSError as exc:
            raise BackendError(f"log append failed: {exc.strerror or exc}") from exc
        self._catch_up(result)
        return list(result.indices)

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

    # ----- requests and decisions -----------------------------------------------------

    def sign(self, identity: Identity, action: str, **fields: Any) -> SignedRequest:  # noqa: ANN401
        """Sign a request as `identity` for this vault, at the vault's clock."""
        if identity.vault_id != self.config.vault_id:
            raise ConfigError(
                f"identity {identity.principal!r} belongs to vault {identity.vault_id}, "
                f"not {self.config.vault_id}"
            )
        return sign_request(
            identity.key,
            vault=self.config.vault_id,
            principal=identity.principal,
            action=action,
            now=self._clock(),
            **fields,
        )

    def check_identity(self, identity: Identity) -> Principal:
        """Refuse early, before any upload, an identity the vault would refuse anyway.

        Raises:
            ConfigError: the identity belongs to another vault.
            PolicyDenied: the principal is not registered.
            IntegrityError: the key is not the registered principal's key.
        """
        return self.identify(self.sign(identity, "identify"))

    def identify(self, request: SignedRequest) -> Principal:
        """The registered principal behind a signed `identify` request (nothing logged).

        Raises:
            IntegrityError: forged, stale, for another vault, or not the principal's key.
            PolicyDenied: the principal is not registered, or not active.
        """
        self.sync()
        principal = self._verify_request(request, "identify")
        # Routes gated by `identify` alone (listing principals and deadlines, tracking
        # numbers) rely on this: a server's own lookup may be a moment behind the log
        # when the change came through another replica.
        if principal.status != "active":
            raise PolicyDenied(f"principal {principal.id} is {principal.status}")
        return principal

    def _verify_request(self, request: SignedRequest, action: str) -> Principal:
        """Check who is asking. Failures here are not attributable, so not logged."""
        body = request.body
        try:
            principal = self.index.principal(body.principal)
        except NotFoundError as exc:
            if body.vault != self.config.vault_id:
                raise IntegrityError("request is for another vault") from None
            raise PolicyDenied(f"{body.principal!r} is not a registered principal") from exc
        verify_act(
            request,
            vault=self.config.vault_id,
            action=action,
            public_key=principal.public_key,
            now=self._clock(),
            window=timedelta(seconds=self.config.request_window_seconds),
        )
        if self.index.nonce_seen(body.nonce):
            raise IntegrityError("replayed request: this request is already in the log")
        check_params(body.action, body.params)  # the action's typed parameters, or exit 2
        _check_stated_text(body)
        return principal

    def _decide(
        self,
        principal: Principal,
        request: SignedRequest,
        record: RecordRow | None,
        directory: EntityDirectory | None = None,
    ) -> _Verdict:
        now = self._clock()
        decision = decide(
            self.policy, principal, request.body, record, now=now, directory=directory
        )
        return _Verdict(decision, now)

    def _decision_event(
        self,
        event_type: EventType,
        request: SignedRequest,
        verdict: _Verdict,
        *,
        details: dict[str, Any] | None = None,
    ) -> Event:
        # The event's time is the decision's: the auditor re-runs the decision at it.
        body = request.body
        decision = verdict.decision
        return Event(
            seq=0,
            time=verdict.at,
            type=event_type,
            actor=body.principal,
            request=request.to_log(),
            record=body.record,
            action=body.action,
            decision=decision.decision,
            policies=tuple(decision.policy_ids),
            policy_set=decision.policy_set_hash,
            purpose=body.purpose,
            use=body.use,
            authority=body.authority,
            obligations=tuple(decision.obligations),
            details=details or {},
        )

    def _act(
        self,
        request: SignedRequest,
        action: str,
        effect: Effect | None,
        *,
        record: str | None = None,
        new_record: bool = False,
        look_first: bool = True,
        decided_again: bool = False,
    ) -> _Done:
        """Verify, decide and log one act, all against the state at its log position.

        `effect(principal, record, verdict)` returns the events of a permitted act, or
        raises (InputError, ConflictError...) when the act is not legal in that state;
        `None` makes a read (nothing is logged on permit). A denial is logged and
        raised as PolicyDenied. If another writer takes the position first, the whole
        act is checked again at the next one: of two conflicting acts, exactly one wins.
        `look_first=False` skips the first look on the current state, for a caller
        that has just looked at the same request (a release): the act is verified and
        decided at its position all the same, and refused there as it would have been.
        `decided_again` marks a read that the caller decides again at its position (a
        release's first look): permitted on the index as it is, it needs no sync.

        Raises:
            IntegrityError: forged, replayed or stale request.
            InputError: the request names another record than `record` (or one at all).
            PolicyDenied: the policies refuse it at its position (the denial is logged).
            NotFoundError: the record does not exist (ConflictError: it does, for a new one).
        """
        if request.body.record != record:
            # The auditor replays each logged decision on the record its request names:
            # a signed record the act is not about would make the replay differ.
            raise InputError(
                f"the {action} request names a record ({request.body.record!r}) it does not act on"
            )
        outcome: list[_Done] = []

        def act() -> list[Event]:
            outcome.clear()
            principal = self._verify_request(request, action)
            row = self._record_at_position(record, new_record=new_record)
            verdict = self._decide(principal, request, row)
            outcome.append(_Done(principal, row, verdict))
            if not verdict.decision.allowed:
                return [self._decision_event("access.decided", request, verdict)]
            return effect(principal, row, verdict) if effect is not None else []

        to_log = True
        if look_first:
            with self._lock:
                to_log = self._first_look(
                    act, read=effect is None and not decided_again, decided_again=decided_again
                )
        indices = self.sequencer.run(act) if to_log else ()
        done = outcome[0]
        done.indices = tuple(indices)
        decision = done.verdict.decision
        if not decision.allowed:
            try:
                context = request_facts(request.body, done.verdict.at)
            except ValueError as exc:  # facts the policies do not know (an unknown use) deny
                raise PolicyDenied(f"{action} denied for {done.principal.id!r}: {exc}") from None
            # Name the reason a person can act on, and the command that replays it.
            raise PolicyDenied(
                explain_denial(
                    self.policy,
                    principal_facts(done.principal),
                    action=action,
                    record=record_facts(done.record) if done.record is not None else None,
                    context=context,
                    decision=decision,
                )
            )
        return done

    def _first_look(self, act: Act, *, read: bool, decided_again: bool = False) -> bool:
        """Look at an act on the current state: refuse early; whether it logs anything.

        A read (nothing logged on permit) is decided by this look, so it looks at the
        latest log: the index is synced first. An act that logs is decided again at its
        position on the latest log, so this look only refuses early: it is made on the
        index as it is (this process's batches keep it caught up); anything but events
        to log there (a refusal: an unknown record or principal, an illegal transition,
        a replay, a tampered index, a policy set not yet logged; or nothing to log) is
        looked at again after a sync, so that nothing is refused or decided here on a
        stale index. Saves every logged act a read of the checkpoint. A release's first
        look (`decided_again`) is made the same way, and a permit there is final for the
        look: the release is decided again at its position before anything is released.

        The caller holds the vault lock.
        """
        if not read:
            # Whatever this look raises, and a look that would log nothing (decided
            # here alone), is made again on the latest log.
            with contextlib.suppress(Exception):
                self._refresh_policy()
                if not self._policy_set_unlogged() and not self._policy_text_unchecked():
                    with self.index.overlay([]):
                        if act():
                            return True
                        if decided_again:
                            return False
        self.sync()
        self._note_policy_change()
        # A first look on the current state: refuse early, and a permitted read logs
        # nothing. What is logged is decided again at its position.
        with self.index.overlay([]):
            return bool(act())

    def _record_at_position(self, tracking: str | None, *, new_record: bool) -> RecordRow | None:
        if tracking is None:
            return None
        if new_record:
            with contextlib.suppress(NotFoundError):
                self.index.record(tracking)
                raise ConflictError(f"tracking number {tracking} is already a record")
            return None
        return self.index.record(tracking)

    @property
    def sequencer(self) -> Sequencer:
        """The group commit of this vault object (started on first use)."""
        started = self._sequencer
        if started is not None:
            # Every requester passes here after its first look: not through the lock.
            return started
        with self._lock:
            if self._sequencer is None:
                self._sequencer = Sequencer(
                    self._run_batch,
                    max_batch=self._batching.max_acts,
                    max_age=self._batching.max_age,
                    max_pending=self._batching.max_pending,
                )
            return self._sequencer

    def _run_batch(self, acts: Sequence[Act]) -> list[tuple[int, ...] | BaseException]:
        """Decide a batch of acts at its log position, in order; append all their events.

        Each act runs on the index as it will be just before its events: the committed
        log, the claims other writers made before the batch's position, and the events
        of the acts before it in the batch (a rolled-back overlay). An act refused there
        is left out; the others are claimed together and committed at once.
        """
        index = self.index
        outcomes: list[tuple[int, ...] | BaseException] = []
        spans: list[tuple[int, int] | None] = []

        def build(position: int, before: Sequence[bytes]) -> list[Event]:
            outcomes.clear()
            spans.clear()
            drafts: list[Event] = []
            # `before` holds the entries from the index's size up to the position.
            start = position - len(before)
            events = [parse_event(entry, start + i) for i, entry in enumerate(before)]
            with self._lock, index.overlay(events):
                if index.size != position:
                    # Another process of this vault (a worker, a replica on this host)
                    # applied events past the log tip this claim read: build again
                    # from the newer tip, never on a state ahead of the position.
                    raise _StalePositionError
                drafts += self._policy_loaded_again(position)
                for act in acts:
                    try:
                        made = act()
                        numbered = [
                            d.model_copy(update={"seq": position + len(drafts) + i})
                            for i, d in enumerate(made)
                        ]
                        for event in numbered:
                            _reads_back(event)
                        illegal = index.apply_in_overlay(numbered) if made else None
                    except IndexWriteError:
                        raise  # the index cannot be written: the batch, not one act, fails
                    except Exception as exc:  # noqa: BLE001 -- the act's refusal, for its requester
                        outcomes.append(exc)
                        spans.append(None)
                        continue
                    if illegal is not None:
                        outcomes.append(ActConflictError(f"refused at its log position: {illegal}"))
                        spans.append(None)
                        continue
                    outcomes.append(())
                    spans.append((len(drafts), len(made)) if made else None)
                    drafts.extend(made)
            if not drafts:
                raise _NothingToLogError
            return drafts

        try:
            result = self._append_built(build)
        except _NothingToLogError:
            return outcomes
        with self._lock:
            self._catch_up(result)
        for i, span in enumerate(spans):
            if span is not None:
                start, count = span
                outcomes[i] = tuple(result.indices[start : start + count])
        return outcomes

    def _append_built(self, build: Callable[[int, Sequence[bytes]], list[Event]]) -> AppendResult:
        """Append what `build` decides on the index's state at the position it gets.

        Raises:
            IntegrityError: the index is ahead of the log (a rollback) or was built
                from another history of it (a fork).
            BackendError: the store failed, or the log kept moving on.
        """
        index = self.index
        for _ in range(_STALE_ATTEMPTS):
            with self._lock:
                known, root = index.size_and_root()
            try:
                return self.ledger.append_at(build, known_size=known, known_root=root)
            except _StalePositionError:
                continue
            except LogRolledBackError as exc:  # the index, authenticated, is ahead
                raise IntegrityError(_rolled_back(exc.seen, exc.size)) from None
            except LogForkedError as exc:  # the index was built from another history
                raise IntegrityError(_forked(exc.seen)) from None
            except OSError as exc:
                raise BackendError(f"log append failed: {exc.strerror or exc}") from exc
        raise BackendError("the log kept moving on while this batch was decided: try again")

    def _catch_up(self, appended: AppendResult) -> None:
        """Bring the index up to the checkpoint that covers this process's append.

        When the index stops exactly where the append begins and the append ends the
        checkpoint, the gap is the appended entries themselves, already checked in the
        signed tree at their positions: they are parsed from those bytes, not read back
        from the store. Otherwise (other writers' events around them) the log is read.
        """
        index = self._trusted_index()
        size, mine = appended.size, appended.indices
        if index.size < size:
            own = (
                mine
                and len(appended.entries) == len(mine)
                and index.size == mine[0]
                and mine[-1] + 1 == size
            )
            events: Iterable[Event] = (
                (parse_event(entry, seq) for seq, entry in zip(mine, appended.entries, strict=True))
                if own
                else self.reader().events(index.size, size)
            )
            index.apply_all(
                events, skip_applied=True, strict=False, root=(size, appended.checkpoint.root)
            )
        illegal = dict(index.illegal_events())
        for position in mine:
            if position in illegal:  # pragma: no cover - acts are checked at their position
                raise ActConflictError(f"another act came first: {illegal[position]}")

    # ----- principals ----------------------------------------------------------------

    def add_principal(
        self,
        request: SignedRequest,
        principal_id: str,
        attributes: PrincipalAttributes,
        public_key: Ed25519PublicKey,
    ) -> Principal:
        """Register a user (an admin's act).

        The request must sign every registered fact: `params` is
        `{"op": "register", "principal": ID, "attributes": {...}, "public_key": B64}`
        (`principal_params` builds it), so the log proves who stated them.
        """
        try:
            principal = Principal(
                id=principal_id,
                public_key=base64.b64encode(public_key.raw).decode(),
                **attributes.model_dump(),
            )
        except ValidationError as exc:
            raise InputError(describe(exc, "invalid principal")) from exc
        if principal_id == VAULT_ACTOR:
            raise InputError(
                f"principal {principal_id!r}: the name is the vault's own in the log (its "
                "events are acted by it); choose another"
            )
        _check_organisation(attributes.organisation)
        _check_sectors(attributes.sectors)
        _check_training(attributes.training_expires, request)
        _check_nda(attributes.nda_signed, request)
        _require_signed_params(
            request, principal_params(principal_id, attributes, public_key), "principal"
        )

        def register(_admin: Principal, _row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            with contextlib.suppress(NotFoundError):
                existing = self.index.principal(principal_id)
                if existing.status == "revoked":
                    raise InputError(
                        f"principal {principal_id!r} already exists, revoked: an id is never "
                        "given to anyone else (the log names who acted by it); choose another"
                    )
                raise InputError(f"principal {principal_id!r} already exists")
            self._check_one_spelling(attributes.organisation, principal_id)
            details = {"principal": principal.model_dump(mode="json")}
            return [self._decision_event("principal.registered", request, verdict, details=details)]

        self._act(request, "manage-principals", register)
        return principal

    def update_principal(
        self, request: SignedRequest, principal_id: str, changes: dict[str, Any]
    ) -> Principal:
        """Change a user's attributes or status (an admin's act).

        The request signs `{"op": "update", "principal": ID, "changes": {...}}`.
        """
        changed = to_jsonable_python(changes)
        _require_signed_params(
            request, {"op": "update", "principal": principal_id, "changes": changed}, "changes"
        )
        if not changes or not set(changes) <= _CHANGEABLE:
            raise InputError(f"principal changes must be among {', '.join(sorted(_CHANGEABLE))}")
        if changes.get("status") == "revoked":
            raise InputError("revoke with `principal revoke`, not an update")
        if isinstance(changes.get("organisation"), str):
            _check_organisation(changes["organisation"])

        def update(_admin: Principal, _row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            current = self._principal_for_change(principal_id, changes)
            merged = {**current.model_dump(mode="json"), **changed}
            try:
                updated = Principal.model_validate(merged)
            except ValidationError as exc:
                raise InputError(describe(exc, "invalid principal update")) from exc
            if "organisation" in changes:
                self._check_one_spelling(updated.organisation, principal_id)
            if "sectors" in changes:
                _check_sectors(updated.sectors)
            if "training_expires" in changes:
                _check_training(updated.training_expires, request)
            if "nda_signed" in changes:
                _check_nda(updated.nda_signed, request)
            details = {"principal": principal_id, "changes": changed}
            return [self._decision_event("principal.updated", request, verdict, details=details)]

        self._act(request, "manage-principals", update)
        return self.index.principal(principal_id)

    def _check_one_spelling(self, organisation: str, principal_id: str) -> None:
        """Refuse a second spelling of a registered organisation.

        Intake takes names alike but for case, spacing and Unicode form as one (a document's
        submitter); the policies compare them exactly.

        Raises:
            InputError: another principal's organisation, or a record's submitter, is
                this one spelled otherwise.
        """
        for other in self.index.principals():
            if (
                other.id != principal_id
                and other.organisation != organisation
                and same_organisation(other.organisation, organisation)
            ):
                raise InputError(
                    f"organisation '{printable(organisation)}' is '"
                    f"{printable(other.organisation)}' (of {other.id}) spelled otherwise: give "
                    "it as registered, or the policies would take them for two organisations"
                )
        # A principal alone in its organisation respelling it: its records keep theirs.
        for spelling in self.index.submitter_organisations():
            if spelling != organisation and same_organisation(spelling, organisation):
                raise InputError(
                    f"organisation '{printable(organisation)}' is '{printable(spelling)}' (of "
                    "submitted records) spelled otherwise: give it as registered, or the "
                    "policies would take them for two organisations"
                )

    def revoke_principal(self, request: SignedRequest, principal_id: str) -> Principal:
        """Revoke a user for good (an admin's act); the request signs who."""
        _require_signed_params(request, {"op": "revoke", "principal": principal_id}, "principal")

        def revoke(_admin: Principal, _row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            self._principal_for_change(principal_id)
            details = {"principal": principal_id}
            return [self._decision_event("principal.revoked", request, verdict, details=details)]

        self._act(request, "manage-principals", revoke)
        return self.index.principal(principal_id)

    def _principal_for_change(
        self, principal_id: str, changes: dict[str, Any] | None = None
    ) -> Principal:
        """The principal about to change; refuses to leave the vault without an admin.

        Revoking, suspending or demoting the last active admin would leave nobody able to
        register users or manage keys: refused (register another admin first). Runs on
        the state at the act's log position.
        """
        current = self.index.principal(principal_id)
        if current.status == "revoked":
            raise InputError(f"principal {principal_id!r} is revoked; register a new one")
        stays_admin = changes is not None and {
            "role": changes.get("role", current.role),
            "status": changes.get("status", current.status),
        } == {"role": "admin", "status": "active"}
        is_active_admin = current.role == "admin" and current.status == "active"
        other_admins = [
            p
            for p in self.index.principals()
            if p.id != principal_id and p.role == "admin" and p.status == "active"
        ]
        if is_active_admin and not stays_admin and not other_admins:
            raise InputError(
                f"{principal_id!r} is the last active admin: register another admin first"
            )
        return current

    # ----- submission ----------------------------------------------------------------

    def new_tracking_number(self) -> str:
        """A fresh, unused tracking number."""
        from pcii_vault.models.submission import format_tracking_number  # noqa: PLC0415

        self.sync()
        year = self._clock().year
        while True:
            candidate = format_tracking_number(year, secrets.randbelow(10**8))
            try:
                self.index.record(candidate)
            except NotFoundError:
                # Nor one with uploads in progress: its objects are another submission's.
                if next(iter(self.store.list(f"records/{candidate}/")), None) is None:
                    return candidate

    def upload_ticket(self, principal_id: str, tracking: str) -> str:
        """The ticket that binds the uploads of `tracking` to the principal it was issued to.

        A server hands it out with the tracking number; uploads, discards and the submit
        of that tracking number must carry it (`check_upload_ticket`), so no other owner
        can pre-empt, delete or fail a submission in progress. An HMAC under a key derived
        from the keyring, so every replica of the vault issues and checks the same ticket;
        bound to the principal, it is useless to anyone else (no secret).
        """
        tag = self._local().upload_authenticator().tag(_ticket_data(principal_id, tracking))
        return base64.urlsafe_b64encode(tag[:_TICKET_BYTES]).decode().rstrip("=")

    def check_upload_ticket(self, principal_id: str, tracking: str, ticket: str | None) -> None:
        """Refuse uploads, discards or a submit of `tracking` without its owner's ticket.

        Raises:
            PolicyDenied: no ticket, or not the one issued to `principal_id` for `tracking`.
        """
        if not ticket:
            raise PolicyDenied(
                f"no upload ticket for {printable(tracking)}: a server binds each tracking "
                "number to the owner it issued it to (pcii submit asks for both)"
            )
        expected = self.upload_ticket(principal_id, tracking)
        if not hmac.compare_digest(expected.encode(), ticket.encode("utf-8", "replace")):
            raise PolicyDenied(
                f"the upload ticket does not match {printable(tracking)} for {principal_id}: "
                "only the owner a tracking number was issued to uploads, discards or "
                "submits under it, with the ticket issued with it"
            )

    def intake_key(self) -> bytes:
        """The X25519 public key owners seal data keys to."""
        return base64.b64decode(self.config.intake_public_key)

    def receive(
        self,
        request: SignedRequest,
        sealed: SealedUpload,
        *,
        check_ticket: bool = False,
        ticket: str | None = None,
    ) -> Receipt:
        """Accept an owner's sealed submission: check it, re-wrap its key, log it.

        With `check_ticket` (a server), `ticket` must be the one issued to the request's
        principal with the tracking number (`check_upload_ticket`), or nothing is done.
        The ciphertext is already in the store under `records/<tracking>/`; until the
        `submission.received` event is appended it is not a record, and a failure before
        the append removes it again. A failed append leaves it: the append's claim may
        still be committed by the next writer.
        """
        tracking = sealed.tracking_number
        if not re.fullmatch(TRACKING_NUMBER_PATTERN, tracking):
            raise InputError(f"{printable(tracking)!r} is not a tracking number")
        if check_ticket:
            # Service mode: only the principal the tracking number was issued to submits
            # it. Anyone else's request (a malformed one too) must not reach the refusals
            # below: they remove the upload with them.
            self.check_upload_ticket(request.body.principal, tracking, ticket)
        if request.body.record != tracking:
            raise IntegrityError("request names another tracking number than the upload")
        if request.body.params.get("files") != list(sealed.files):
            raise IntegrityError("request does not sign the uploaded files' hashes")
        # A tracking number that is already a record is not this upload's: its objects are
        # another submission's and must survive whatever goes wrong here.
        try:
            # Refuse (and log the denial) before the intake key opens anything.
            self._act(request, "submit", None, record=tracking, new_record=True)
            # A permitted owner's upload: a manifest refused here is removed with it.
            self._check_uploaded(tracking, check_manifest(sealed.files))
        except ConflictError:
            raise  # the tracking number is another record's: its objects stay
        except PolicyDenied:
            # Someone who may not submit (an analyst) names an owner's upload in progress:
            # its objects are not theirs to remove (unclaimed, maintenance removes them).
            raise
        except BaseException:
            self._discard_unless_recorded(tracking)
            raise
        try:
            details = self._accept(sealed)
        except ActConflictError:
            raise  # another submission of this tracking number holds its key: its objects stay
        except BaseException:
            self._discard_unless_recorded(tracking)
            raise

        def receive(owner: Principal, _row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            # Decided again if another writer takes the position first: `details` stays.
            _check_submitter(details["declared_org"], owner)
            self._check_supplemented(details["related"], owner)
            self._check_still_receivable(tracking, details["kek_version"])
            facts = {k: v for k, v in details.items() if k not in {"declared_org", "related"}}
            facts["submitter_org"] = owner.organisation
            return [self._decision_event("submission.received", request, verdict, details=facts)]

        try:
            done = self._act(request, "submit", receive, record=tracking, new_record=True)
        except (PolicyDenied, InputError, IntegrityError, NotFoundError, ActConflictError):
            # Refused at its position (nothing of it was logged but a denial).
            self._discard_unless_recorded(tracking)
            raise
        # From here on the objects are never discarded: even when the append fails, its
        # claim may already be in the store, and the next append would commit it; the
        # record must then find its ciphertext and wrapped key in place.
        [index] = done.indices
        return Receipt(
            tracking_number=tracking,
            files=tuple(sealed.files),
            log_index=index,
            proof=prove(self.reader(), index),
        )

    def _check_still_receivable(self, tracking: str, kek_version: int) -> None:
        """At its log position: what the submission's key and objects became meanwhile.

        Between the upload's check and this position, other acts ran: `keys retire` of
        the version its data key was wrapped under (rewrap saw only logged records), or
        `pcii maintenance --grace-hours 0` removing its objects as an upload nobody
        logged. Logged anyway, the record would be unreadable for good (a retired KEK, a
        false tampering alarm at each release). The retirement or the removal came first.

        Raises:
            ActConflictError: the KEK version was retired, or the wrapped key is gone.
        """
        if kek_version in self.index.retired_versions():
            raise ActConflictError(
                f"KEK version {kek_version}, which this submission's key is wrapped "
                f"under, was retired meanwhile: nothing was logged; submit again"
            )
        try:
            self.store.head(f"wrapped/{tracking}")
        except NotFoundError:
            raise ActConflictError(
                f"the uploaded objects of {tracking} were removed meanwhile (pcii "
                "maintenance with a short grace period?): nothing was logged; submit again"
            ) from None

    def _check_uploaded(self, tracking: str, entries: Sequence[ManifestEntry]) -> None:
        """Refuse a manifest naming an attachment that is not in the store.

        Logged, it would read as a record's object removed outside the vault (a false
        tampering alarm at every review). The document is read and checked later.

        Raises:
            InputError: naming the first attachment missing.
        """
        for entry in entries[1:]:
            try:
                self.store.head(f"records/{tracking}/{entry.object}")
            except NotFoundError:
                raise InputError(
                    f"attachment {printable(entry.name)!r} ({entry.object}) was not uploaded"
                ) from None

    def _accept(self, sealed: SealedUpload) -> dict[str, Any]:
        """Check an upload and re-wrap its key; return the facts its event records."""
        self._require_logged_kek()
        keyring = self.keyring
        dek = keyring.open_intake(sealed.sealed_dek)
        submission = self._open_submission_document(dek, sealed)
        self._check_attachments_uploaded(dek, sealed)
        record_ctx = RecordContext(self.config.vault_id, sealed.tracking_number)
        wrapped = keyring.wrap(dek, record_ctx.to_bytes())
        try:
            self.store.put_if_absent(f"wrapped/{sealed.tracking_number}", wrapped)
        except ObjectExistsError:
            # The same tracking number submitted twice at once (a retry from another
            # terminal): the first to store its key goes on; this one must not remove
            # what belongs to it.
            raise ActConflictError(
                f"{sealed.tracking_number} is being submitted by another request: "
                "nothing of this one was logged"
            ) from None
        return {
            "sector": submission.sector,
            "tlp": submission.tlp,
            "files": list(sealed.files),
            # The version it was wrapped under (a rotation may have come in between).
            "kek_version": keyring.wrapped_version(wrapped),
            "declared_org": submission.submitter.organisation,
            "related": submission.related_tracking_number,
        }

    def _check_supplemented(self, related: str | None, owner: Principal) -> None:
        """A supplement names an earlier submission of its own organisation.

        The same answer for a record that does not exist and for another organisation's:
        a submission tells nothing of records its owner may not see.

        Raises:
            InputError: `related` is no record of the owner's organisation.
        """
        if related is None:
            return
        row = self.index.find_record(related)
        if row is None or not same_organisation(row.submitter_org, owner.organisation):
            raise InputError(
                f"related_tracking_number: {related} is no submission of your organisation "
                "(a supplement names an earlier submission of its own submitter)"
            )

    def _open_submission_document(self, dek: bytes, sealed: SealedUpload) -> Submission:
        ctx = ObjectContext(self.config.vault_id, sealed.tracking_number, "document")
        document = _read_document(self.store, dek, ctx, sealed.files)
        _check_uploaded_as_signed(
            "the document", sealed.files[0], hashlib.sha256(document).hexdigest(), None
        )
        names = [f["name"] for f in sealed.files if f["object"] != "document"]
        return validate_submission_bytes(document, attachment_names=names)

    def _check_attachments_uploaded(self, dek: bytes, sealed: SealedUpload) -> None:
        """Each attachment decrypts, whole, to the SHA-256 and size its request signed.

        The log and the receipt state them as the submission's: an owner's client that
        signed others would make a false record of what was submitted, and a release
        of it a false tampering alarm.

        Raises:
            IntegrityError: naming the first attachment that differs or fails to open.
        """
        tracking = sealed.tracking_number
        for entry in sealed.files[1:]:
            what = f"attachment {printable(str(entry['name']))!r}"
            ctx = ObjectContext(self.config.vault_id, tracking, entry["object"])
            opened = open_object(dek, ctx, self.store.open_stream(_doc_key(ctx)))
            for _chunk in _named_failures(opened, what):
                pass  # decrypted to the end: authenticated, hashed and counted as it goes
            _check_uploaded_as_signed(what, entry, opened.plaintext_sha256, opened.plaintext_size)

    def _discard_unless_recorded(self, tracking: str) -> None:
        """Remove a failed submission's objects, unless the log made them a record.

        Once `submission.received` is in the log (the failure came after the append, e.g.
        while building the receipt's proof) the objects are a record and must stay;
        before it, they are nobody's and are removed (best effort).
        """
        with contextlib.suppress(VaultError, OSError):
            self.sync()
            with contextlib.suppress(NotFoundError):
                self.index.record(tracking)
                return
            self.store.delete(f"wrapped/{tracking}")
            for info in list(self.store.list(f"records/{tracking}/")):
                self.store.delete(info.key)
            self.remove_empty_record_folder(tracking)

    def remove_empty_record_folder(self, tracking: str) -> None:
        """Remove the record's empty folder, in a store that keeps folders (filesystem)."""
        if isinstance(self.store, FilesystemStore):
            with contextlib.suppress(VaultError, OSError):
                self.store.remove_empty_folder(f"records/{tracking}/")

    # ----- lifecycle decisions -------------------------------------------------------

    def transition(
        self,
        request: SignedRequest,
        event_type: EventType,
        *,
        details: dict[str, Any] | None = None,
    ) -> RecordRow:
        """Validate, reject, mark deficient, withdraw or decontrol a record.

        The request must have been signed for the action that `event_type` stands for
        (a signed `review` or `status` request never validates or withdraws anything),
        and the transition must be legal from the record's current state: an event the
        legal-history check would refuse is never appended (it would break the log's
        audit and stop every later sync of the index).

        The event's details are the request's signed parameters (reason, ground,
        categorical inclusion...), never anything unsigned; `details`, when given, must
        equal them.

        Raises:
            ValueError: `event_type` is not a lifecycle transition, or `details` differ
                from the signed parameters (programming errors).
            IntegrityError: the request was signed for another action (or is forged,
                replayed, stale, for another vault).
            InputError: the record's state does not allow this transition.
            PolicyDenied: the policies refuse it (the denial is logged).
        """
        if event_type not in TRANSITION_ACTIONS or event_type == "record.destroyed":
            raise ValueError(f"{event_type} is not a lifecycle transition")
        signed = _signed_params(request)
        if details is not None and to_jsonable_python(details) != signed:
            raise ValueError("details must be the request's signed parameters")
        if TRANSITION_ACTIONS[event_type] == "reject" and signed_final(signed) != (
            event_type == "submission.final-not-pcii"
        ):
            which = "a final" if signed_final(signed) else "an initial"
            raise IntegrityError(f"the request signed {which} finding, not {event_type}")
        if event_type == "record.decontrolled" and signed.get("basis") not in DECONTROL_BASES:
            # Accepted in the log's history (decontrols logged before it was signed), never
            # for a new act: 6 CFR 29 allows a decontrol on two grounds only.
            raise InputError(
                f"a decontrol names its basis: {' or '.join(DECONTROL_BASES)} "
                "(the submitter's written request, or a customarily-public finding)"
            )
        tracking = _require_record_id(request)

        def change(_actor: Principal, row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            assert row is not None  # noqa: S101 -- the act names a record
            _check_transition(row, event_type, signed)
            events = [self._decision_event(event_type, request, verdict, details=signed)]
            if event_type == "record.decontrolled":
                # 6 CFR 29: a status change is sent to every earlier recipient.
                events.extend(
                    self._notice(verdict, tracking, recipient, "decontrolled")
                    for recipient in self.index.notice_recipients(tracking)
                )
            return events

        self._act(request, TRANSITION_ACTIONS[event_type], change, record=tracking)
        if event_type == "submission.withdrawn":
            self._shred(tracking)
        return self.index.record(tracking)

    def destroy(self, request: SignedRequest) -> RecordRow:
        """Destroy a record by crypto-shredding: log first, then delete its wrapped key."""
        tracking = _require_record_id(request)

        def destroy(_actor: Principal, row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            assert row is not None  # noqa: S101 -- the act names a record
            _check_transition(row, "record.destroyed")
            details = _signed_params(request)
            return [self._decision_event("record.destroyed", request, verdict, details=details)]

        self._act(request, "destroy", destroy, record=tracking)
        self._shred(tracking)
        return self.index.record(tracking)

    def _shred(self, tracking: str) -> None:
        # Deleting the wrapped DEK makes every copy of the ciphertext noise; the ciphertext
        # itself is removed too where the store allows (object lock may keep it).
        self.store.delete(f"wrapped/{tracking}")
        with contextlib.suppress(VaultError):
            for info in list(self.store.list(f"records/{tracking}/")):
                self.store.delete(info.key)
        self.remove_empty_record_folder(tracking)

    def _notice(self, verdict: _Verdict, tracking: str, recipient: str, what: str) -> Event:
        # Notices are the vault's own acts, caused by the event just before them.
        return Event(
            seq=0,
            time=verdict.at,
            type="notice.sent",
            actor=VAULT_ACTOR,
            record=tracking,
            action="notify",
            policy_set=verdict.decision.policy_set_hash,
            details={"recipient": recipient, "notice": what},
        )

    # ----- release -------------------------------------------------------------------

    def release(
        self, request: SignedRequest, out_dir: Path, *, progress: Progress | None = None
    ) -> Release:
        """Retrieve (analyst) or review (office) a record into `out_dir/<tracking>/`.

        The embedded composition of `open_release` (the core) and the client's writing:
        the release is staged in a hidden directory under `out_dir` and renamed into
        place; `progress(name, done, total)` is told the bytes of each attachment.
        """
        from pcii_vault.client import write_release  # noqa: PLC0415 -- client side

        return write_release(
            out_dir,
            request,
            lambda spool: self.open_release(request, spool, progress=progress),
            self.release_failed,
        )

    @contextlib.contextmanager
    def open_release(
        self, request: SignedRequest, spool: Path, *, progress: Progress | None = None
    ) -> Iterator[StagedRelease]:
        """Decide and log a release; stage its files in a new directory under `spool`.

        The access event is in the log before any byte is staged; on permit the
        obligations (marking, redaction, cover sheet) are applied to what is staged. The
        core never writes into a caller's directory: `spool` is the caller's choice of
        scratch space (a hidden directory next to an embedded caller's `--out`), and the
        staged files are fsynced, to be renamed into place. What the caller has not
        moved away by the end of the `with` block is removed.

        Raises:
            PolicyDenied: the policies refuse it (the denial is logged).
            IntegrityError: a wrapped key, the document or an attachment fails.
            InputError / BackendError: the spool cannot be written (logged as
                `release.failed`).
        """
        with self._release(request, spool, progress, durable=True, in_memory=0) as staged:
            assert isinstance(staged, StagedRelease)  # noqa: S101 -- nothing held in memory
            yield staged

    def serve_release(
        self, request: SignedRequest, spool: Path, *, in_memory: int
    ) -> contextlib.AbstractContextManager[StagedRelease | HeldRelease]:
        """`open_release` for a server streaming the release to its client.

        A release whose attachments hold at most `in_memory` bytes and need no PDF
        stamping is held in memory (`HeldRelease`): nothing touches the disk. A larger
        one is staged under `spool` without fsyncs (scratch space a crash may lose; the
        client writes its own copy durably). Raises as `open_release`.
        """
        return self._release(request, spool, None, durable=False, in_memory=in_memory)

    @contextlib.contextmanager
    def _release(
        self,
        request: SignedRequest,
        spool: Path,
        progress: Progress | None,
        *,
        durable: bool,
        in_memory: int,
    ) -> Iterator[StagedRelease | HeldRelease]:
        record = self._decide_release(request)
        staged = self._stage_release(
            request, record, spool, progress, durable=durable, in_memory=in_memory
        )
        try:
            yield staged
        finally:
            if isinstance(staged, StagedRelease):
                shutil.rmtree(staged.directory, ignore_errors=True)

    def _decide_release(self, request: SignedRequest) -> RecordRow:
        """The first look at a release: refused (and a denial logged) before any unwrap."""
        tracking = _require_record_id(request)
        action = request.body.action
        if action not in {"retrieve", "review"}:
            raise ValueError(f"release is for retrieve or review, not {action}")
        record = self._act(request, action, None, record=tracking, decided_again=True).record
        assert record is not None  # noqa: S101 -- the act names a record
        return record

    def _permit_logged(
        self, request: SignedRequest, tracking: str, exc: BaseException
    ) -> int | None:
        """The access event of a release whose permit the log holds, else None.

        A requester interrupted while its batch committed learns the outcome from the
        sequencer; one interrupted just after (the signal lands between two bytecodes)
        finds its request's nonce logged as a release to a recipient. A denial, or an
        act refused at its position, is no permit.
        """
        logged = logged_before_interrupt(exc)
        if logged:
            return logged[0]
        return self.index.released_at(tracking, request.body.nonce)

    def _stage_release(
        self,
        request: SignedRequest,
        record: RecordRow,
        spool: Path,
        progress: Progress | None = None,
        *,
        durable: bool = True,
        in_memory: int = 0,
    ) -> StagedRelease | HeldRelease:
        tracking = record.tracking
        action = request.body.action
        try:
            wrapped = self.store.get(f"wrapped/{tracking}")
        except NotFoundError as exc:
            raise self._missing_key(tracking) from exc
        # Unwrap the key and authenticate the document in memory before logging the
        # release, so a tampered key or document fails before a permit is on record;
        # nothing touches the disk until the access event is in the log.
        dek = self._unwrap(wrapped, RecordContext(self.config.vault_id, tracking).to_bytes())
        doc_ctx = ObjectContext(self.config.vault_id, tracking, "document")
        try:
            document = _read_document(self.store, dek, doc_ctx, record.files)
        except NotFoundError as exc:
            raise self._missing_object(tracking, "document") from exc

        def access(_actor: Principal, row: RecordRow | None, verdict: _Verdict) -> list[Event]:
            assert row is not None  # noqa: S101 -- the act names a record
            if not releasable(action, row.state):
                raise ActConflictError(f"record {tracking} is {row.state} now: nothing released")
            events = [self._decision_event("access.decided", request, verdict)]
            if "notify:program-office" in verdict.decision.obligations:
                # 6 CFR 29.8(f): a contemporaneous written notice to the program office.
                notice = f"disclosed under {request.body.authority}"
                events.append(self._notice(verdict, tracking, "program-office", notice))
            return events

        try:
            # The read above was this request's first look: the access is decided at its
            # position only (the unwrap and the document read happened in between).
            done = self._act(request, action, access, record=tracking, look_first=False)
            index = done.indices[0]
            decision = done.verdict.decision
            assert done.record is not None  # noqa: S101 -- the act names a record
            record = done.record
            rendered = self._render(dek, document, record, request, decision, access_index=index)
            if (in_hand := self._hold_release(rendered, record, limit=in_memory)) is not None:
                return in_hand
        except BaseException as exc:
            # Logged as permitted, released to nobody: interrupted (Ctrl-C, SIGTERM) while
            # the permit was committed or just after, or an attachment that fails its
            # check. The log says so, as for a full disk.
            logged = self._permit_logged(request, tracking, exc)
            if logged is not None:
                self._log_release_failed(tracking, logged, _failure_reason(exc))
            raise
        # Staged durably: next to an embedded caller's --out, so a failure there is the
        # caller's destination (exit 2); else the server's own spool (exit 5 for a full disk).
        server_side = not durable
        try:
            staging = Path(
                tempfile.mkdtemp(prefix=staging_prefix(tracking), suffix=".partial", dir=spool)
            )
        except OSError as exc:
            raise self.release_failed(
                tracking, index, exc, server_side=server_side, place=spool
            ) from exc
        try:
            files = self._write_release(
                rendered, staging=staging, progress=progress, durable=durable
            )
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            raise self.release_failed(
                tracking, index, exc, server_side=server_side, place=spool
            ) from exc
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            self._log_release_failed(tracking, index, _failure_reason(exc))
            raise
        return StagedRelease(
            tracking, staging, files, index, tuple(decision.obligations), tuple(decision.policy_ids)
        )

    def _unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Unwrap a record's DEK, under a KEK version rotated in by another process too.

        A long-lived vault (a server) unsealed its keyring before `keys rotate` ran in
        another process on this vault directory (embedded, or another server): a key
        rewrapped or wrapped since names a version this copy lacks. The keyring file is
        read again first, as a rotation through this process would have done.

        Raises:
            BackendError: the keyring file does not hold that version either (the keys
                were rotated by a replica with its own copy of the keyring).
            IntegrityError: as `KeyCustody.unwrap`; or the version is one the log never
                made current (the wrapped key's version bytes were changed).
        """
        keyring = self.keyring
        if keyring.owns(wrapped):
            # Whatever this keyring's current version: one put back from before a rotation
            # holds a version the log has retired since as its current one.
            self._refuse_retired_by_log(keyring.wrapped_version(wrapped))
        if keyring.owns(wrapped) and keyring.wrapped_version(wrapped) > keyring.current_version:
            with self._key_lock() as fresh_keyring:
                keyring = fresh_keyring()
            version = keyring.wrapped_version(wrapped)
            if version > keyring.current_version:
                with self._lock:
                    self.sync()
                    logged = self._logged_kek_version(keyring)
                if version > logged:
                    raise IntegrityError(
                        f"a wrapped data key names KEK version {version}, which the log never "
                        f"made current (it is at {logged}): the key was changed outside the "
                        "vault"
                    )
                raise BackendError(
                    f"this record's key is wrapped under KEK version {version}, which this "
                    f"vault's keyring does not hold (it has {keyring.current_version}): the "
                    "keys were rotated by another replica; copy its keyring.sealed here and "
                    "restart"
                )
        return keyring.unwrap(wrapped, context)

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

    def _missing_key(self, tracking: str) -> VaultError:
        """Why a record's wrapped key is gone (see `_gone`)."""
        return self._gone(tracking, f"record {tracking} has no data key (destroyed?)")

    def _missing_object(self, tracking: str, name: str) -> VaultError:
        """Why a stored object of a record is gone (see `_gone`)."""
        return self._gone(
            tracking, f"record {tracking}: its stored {name} is missing (removed outside the vault)"
        )

    def _gone(self, tracking: str, tampered: str) -> VaultError:
        """A conflict, or tampering: what a record's missing key or object means.

        Shredded by an act logged meanwhile (another process or replica withdrew or
        destroyed it: exit 3); otherwise the verified log says the record exists, so it
        was removed outside the vault (exit 4, `tampered`).
        """
        with self._lock:
            self.sync()
            row = self.index.find_record(tracking)
        if row is not None and row.state in SHREDDED_STATES:
            return ActConflictError(f"record {tracking} is {row.state} now: nothing released")
        return IntegrityError(tampered)

    def log_unsealed(self, attempts: Sequence[Mapping[str, str]]) -> int:
        """Log the remote unseal that just succeeded: every custodian's attempt.

        A sealed server cannot write its log; the attempts made while it was sealed are
        logged here, first thing once it can (`vault.unsealed`, the vault's own act).
        """
        details = {"attempts": [dict(a) for a in attempts]}
        [index] = self._append([_draft("vault.unsealed", self._clock(), details=details)])
        return index

    def release_failed(
        self,
        tracking: str,
        access: int,
        exc: OSError,
        *,
        server_side: bool = False,
        place: Path | None = None,
    ) -> VaultError:
        """Log that a permitted release was not written; the error to raise.

        Where the caller writes (`--out`, or the staging beside it) the destination is
        the caller's to change: exit 2 whatever the cause, a full disk included. A
        server's own spool that fills up or fails is the server's trouble (exit 5).
        `place` is named when the error itself names no file (a full disk).
        """
        reason = _failure_reason(exc)
        self._log_release_failed(tracking, access, reason)
        named = exc.filename or place
        where = f" ({named})" if named else ""
        message = (
            f"the release of {tracking} (access event {access}) could not be written: "
            f"{reason}{where}; nothing was released, and the log records the failure"
        )
        if server_side:  # the server's own spool: nothing the caller can change
            return BackendError(message)
        return InputError(message)

    def _log_release_failed(self, tracking: str, access: int, reason: str) -> None:
        """Log that the release of access event `access` reached nobody (best effort)."""
        with contextlib.suppress(VaultError, OSError):
            self._append(
                [
                    _draft(
                        "release.failed",
                        self._clock(),
                        record=tracking,
                        details={"access": access, "reason": reason},
                    )
                ]
            )

    def _render(
        self,
        dek: bytes,
        document: bytes,
        record: RecordRow,
        request: SignedRequest,
        decision: Decision,
        *,
        access_index: int,
    ) -> _Rendered:
        """The marked package of a logged release, and the attachments it releases."""
        attachments = [f for f in record.files if f["object"] != "document"]
        submission = validate_submission_bytes(
            document, attachment_names=[f["name"] for f in attachments], stored=True
        )
        # Each file under the name the document describes: a record received before intake
        # required the two to match in case too holds them differing in case only.
        described = {a.name.casefold(): a.name for a in submission.attachments}
        attachments = [f | {"name": described[str(f["name"]).casefold()]} for f in attachments]
        render = functools.partial(
            render_release,
            submission,
            attachments,
            decision.obligations,
            tracking_number=record.tracking,
            recipient=request.body.principal,
            access_index=access_index,
            released_at=self._clock(),
            purpose=request.body.purpose or "",
            authority=request.body.authority,
        )
        package = render()
        released = tuple(m for m in attachments if m["name"] in package.attachments)
        return _Rendered(record.tracking, dek, access_index, decision, released, package, render)

    def _hold_release(
        self, rendered: _Rendered, record: RecordRow, *, limit: int
    ) -> HeldRelease | None:
        """The release in memory; None when it is to be staged instead.

        Staged: attachments over `limit` bytes, a PDF to stamp (that needs files), or an
        attachment that turns out to be a PDF under another name.
        """
        if not limit or _attachment_bytes(record.files) > limit or rendered.stamps_pdfs:
            return None
        package = rendered.package
        contents = dict(package.files)
        for meta in rendered.released:
            ctx = ObjectContext(self.config.vault_id, rendered.tracking, meta["object"])
            try:
                data = _read_bounded(self.store, rendered.dek, ctx, meta.get("size"), limit)
            except NotFoundError as exc:
                raise self._missing_object(rendered.tracking, meta["object"]) from exc
            if hashlib.sha256(data).hexdigest() != meta["sha256"]:
                raise IntegrityError(f"attachment {meta['name']} does not match its logged hash")
            if looks_like_pdf(data):
                return None
            contents[f"attachments/{package.file_names[meta['name']]}"] = data
        decision = rendered.decision
        return HeldRelease(
            rendered.tracking,
            tuple(contents),
            contents,
            rendered.access_index,
            tuple(decision.obligations),
            tuple(decision.policy_ids),
        )

    def _write_release(
        self,
        rendered: _Rendered,
        *,
        staging: Path,
        progress: Progress | None,
        durable: bool,
    ) -> tuple[str, ...]:
        vault_id = self.config.vault_id
        tracking = rendered.tracking
        package = rendered.package
        # The package names the attachments the policy releases; PDFs among them (by
        # name, or by their first bytes) are stamped page by page, and one that cannot be
        # stamped is withheld (the cover sheet, rendered again, says why). Plaintext stays
        # inside the staging directory.
        released = rendered.released
        files_dir = staging / "attachments"
        if released:
            files_dir.mkdir(mode=0o700)  # as the staging directory above it
        unmarkable: dict[str, str] = {}
        sniffed: set[str] = set()
        for number, meta in enumerate(released):
            stamp = package.stamps.get(meta["name"])
            dest = files_dir / package.file_names[meta["name"]]
            plain = dest if stamp is None else staging / f".attachment-{number}.plain"
            ctx = ObjectContext(vault_id, tracking, meta["object"])
            try:
                stored = self.store.open_stream(f"records/{tracking}/{meta['object']}")
            except NotFoundError as exc:
                raise self._missing_object(tracking, meta["object"]) from exc
            digest, _ = decrypt_to_file(
                rendered.dek,
                ctx,
                _reporting(stored, meta, progress),
                plain,
                durable=durable,
            )
            if digest != meta["sha256"]:
                raise IntegrityError(f"attachment {meta['name']} does not match its logged hash")
            if stamp is None and file_looks_like_pdf(dest):
                # A PDF under another name opens as one all the same: it is stamped too.
                sniffed.add(meta["name"])
                stamp = rendered.render(pdfs=frozenset({meta["name"]})).stamps[meta["name"]]
                plain = staging / f".attachment-{number}.plain"
                dest.rename(plain)
            if stamp is not None:
                try:
                    stamp_pdf(plain, dest, stamp)
                except UnmarkablePdf as exc:
                    unmarkable[meta["name"]] = str(exc)
                finally:
                    plain.unlink()
        if unmarkable or sniffed:
            package = rendered.render(unmarkable=unmarkable, pdfs=frozenset(sniffed))
        written: list[str] = []
        for name, data in package.files.items():
            write_new_file(staging / name, data, mode=0o600, sync_directory=False, durable=durable)
            written.append(name)
        if durable:
            fsync_directory(staging)  # the names of all of them, at once
        written += [f"attachments/{package.file_names[n]}" for n in package.attachments]
        if released and not package.attachments:
            files_dir.rmdir()
        return tuple(written)

    # ----- keys ----------------------------------------------------------------------
    #
    # Key management is the administrator's (policy action `rotate-keys`, no record). Every
    # act takes the vault's key lock (a file lock in the vault directory) so rotations,
    # rewraps and retirements by several processes on one vault run one at a time, and
    # reads the keyring fresh under that lock.

    def key_status(self, request: SignedRequest) -> KeyStatus:
        """The keyring's KEK versions and what the log says about them (no key material).

        Who may ask: an admin (a signed `rotate-keys` request with op `status`), and only
        where the keyring can be unsealed (the versions are sealed with the keys). It is
        a read of key metadata, not a change, so a permitted request is not logged (like
        `status`); a denied one is.

        Raises:
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: the request is forged, replayed, stale or for another op.
        """
        self._authorize_key_op(request, "status")
        # Another process may have rotated meanwhile: the file again, without waiting for
        # the key lock (a rotation holds it while it is logged, and `keys rotate` reads
        # this status first: two rotations at once must both see the version before).
        keyring = self._reread_keyring()
        rewrapped = self.index.meta("key.rewrapped")
        migrated = self.index.meta("key.migrated")
        with self._lock:
            retired = self.index.retired_versions()
        versions = tuple(keyring.versions)
        if unmarked := [v.version for v in versions if v.version in retired and not v.retired]:
            # An older keyring.sealed put back (or a retirement whose keyring write was cut
            # short): the log decides, as it does when a data key is unwrapped.
            _log.warning("keyring_holds_retired_versions_usable", versions=unmarked)
            versions = tuple(
                dataclasses.replace(v, retired=v.retired or v.version in retired) for v in versions
            )
        return KeyStatus(
            current_version=keyring.current_version,
            logged_version=self._logged_kek_version(keyring),
            min_decryption_version=keyring.min_decryption_version,
            versions=versions,
            last_rewrap=json.loads(rewrapped) if rewrapped else None,
            locations=keyring.locations(),
            migration=self._migration_progress(keyring, json.loads(migrated)) if migrated else None,
        )

    def _require_logged_kek(self) -> None:
        """Wrap only under the KEK version the log says is current.

        A keyring behind the log was rotated elsewhere (another replica of the vault with
        its own copy of a local keyring): wrapping under the old version, or making a
        second, different version, would strand records. Another process on this host
        may have rotated the same file: read it again first.

        Raises:
            BackendError: this keyring does not hold the logged current version.
        """
        keyring = self.keyring
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

    def rotate_keys(self, request: SignedRequest) -> int:
        """Add a KEK version and make it current: the log says so first, then the keyring.

        Order and re-runs (a decision): the `key.rotated` event (details: the new version
        and the previous one; never key material) is appended before the keyring changes,
        so the log never misses a rotation. If the keyring change then fails, the log is
        one version ahead of the keyring; a re-run sees exactly that (logged version ==
        keyring version + 1) and completes the logged rotation without a second event,
        so the log holds one `key.rotated` per version. Any other disagreement (the
        keyring ahead of the log, or behind by more than one) means the keyring was
        changed outside the vault: refused, for a person to look at.

        Returns:
            The new current KEK version.

        Raises:
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: forged/replayed request, or keyring and log disagree.
            BackendError: the log or the keyring file could not be written.
        """
        with self._key_lock() as fresh_keyring:
            # The version it makes, when signed (see `_require_next_version`).
            signed = request.body.params.get("version")
            self._authorize_key_op(
                request, "rotate", **({} if signed is None else {"version": signed})
            )
            keyring = fresh_keyring()
            logged, held = self._logged_kek_version(keyring), keyring.current_version
            pending = self.paths.root / _ROTATION_PENDING
            if logged == held + 1 and _pending_version(pending) == logged:
                # This vault logged the rotation and died before its keyring changed:
                # then no data key was wrapped under that version yet. One was: the key
                # existed, and this keyring.sealed is an older copy (the note, put back
                # with it, does not make a new key of that version).
                self._refuse_if_version_used(logged)
                _log.warning("completing_logged_rotation", version=logged)
                version = self._rotate_keyring(keyring, expected=logged)
                pending.unlink(missing_ok=True)
                return version
            if logged > held and keyring.key_id == LOCAL:
                raise _keyring_not_the_logs(logged, held, pending=None)  # not this vault's own
            if logged == held + 1:
                # Not this vault's own rotation (it noted none): the key holder lost the
                # version (a key deleted there), or another replica logged it and failed
                # to make it. Making a new key of that version would orphan every record
                # wrapped under the lost one: refused, for a person to look at.
                raise BackendError(_kek_missing_in_holder(keyring.key_id, logged))
            if logged != held:
                raise IntegrityError(
                    f"the keyring's current KEK version is {held} but the log says {logged}: "
                    "the keyring was changed outside the vault"
                )
            _require_next_version(request, held)
            # A rotation of this vault interrupted after its claim (killed): its event
            # may be committed by this very attempt, which then loses to it.
            interrupted = _pending_rotation(pending)

            def rotate(_admin: Principal, _row: RecordRow | None, verdict: _Verdict) -> list[Event]:
                if self._logged_kek_version(keyring) != held:
                    raise ActConflictError(
                        "another key rotation was logged first: nothing was rotated (see "
                        "`pcii keys status`)"
                    )
                details: dict[str, Any] = {"version": held + 1, "previous": held}
                if keyring.key_id != LOCAL:
                    details["kek"] = keyring.key_id
                return [self._decision_event("key.rotated", request, verdict, details=details)]

            # Noted before the event is logged: a re-run after a crash between the two
            # completes this vault's own rotation, never another replica's.
            try:
                pending.unlink(missing_ok=True)
                write_new_file(pending, f"{held + 1} {request.body.nonce}".encode(), mode=0o600)
            except OSError as exc:  # a full disk, say: nothing was logged
                raise vault_file_failure(pending, exc) from exc
            try:
                self._act(request, "rotate-keys", rotate)
            except ActConflictError:
                if not self._own_rotation_logged(interrupted, keyring, held + 1):
                    pending.unlink(missing_ok=True)  # refused: nothing was logged
                    raise
                # The rotation that came first is this vault's own, interrupted after
                # its claim: complete it (one event, as a re-run after a commit does).
                _log.warning("completing_logged_rotation", version=held + 1)
            except (PolicyDenied, InputError, IntegrityError, ConflictError):
                pending.unlink(missing_ok=True)  # refused: nothing was logged
                raise
            version = self._rotate_keyring(keyring, expected=held + 1)
            pending.unlink(missing_ok=True)
            return version

    def _refuse_if_version_used(self, version: int) -> None:
        """Raise if the verified log shows a data key wrapped under KEK `version`.

        Raises:
            IntegrityError: a logged submission or rewrap used that version.
        """
        reader = self.reader()
        checkpoint = reader.checkpoint()
        size = checkpoint.size if checkpoint is not None else 0
        for event in reader.events(0, size, size):
            used = event.details.get("kek_version") if event.type == "submission.received" else None
            if event.type == "key.rewrapped":
                used = event.details.get("version")
            if used == version:
                raise IntegrityError(
                    f"the log has data keys wrapped under KEK version {version} (event "
                    f"{event.seq}), which this keyring.sealed lacks: it is an older copy; "
                    "put the newest keyring.sealed back"
                )

    def _own_rotation_logged(
        self, interrupted: tuple[int, str | None] | None, keyring: KeyProvider, version: int
    ) -> bool:
        """Whether the logged rotation to `version` is the one this vault noted, interrupted.

        It is when its signed request's nonce, noted before it was logged, is in the log.
        """
        if interrupted is None or interrupted[0] != version or interrupted[1] is None:
            return False
        self.ledger.commit_claimed()
        self.sync()
        return (
            self.index.nonce_seen(interrupted[1]) and self._logged_kek_version(keyring) == version
        )

    def _rotate_keyring(self, keyring: KeyProvider, *, expected: int) -> int:
        try:
            version = keyring.rotate()
        except OSError as exc:
            raise BackendError(
                f"the keyring file could not be written ({exc.strerror or exc}); "
                "`pcii keys rotate` again completes the logged rotation"
            ) from exc
        if version != expected:
            raise IntegrityError(
                f"the keyring made KEK version {version}, the log says {expected}: "
                "the keyring was changed outside the vault"
            )
        return version

    def rewrap_keys(self, request: SignedRequest) -> Rewrap:
        """Re-wrap every live record's data key under the current KEK; payloads untouched.

        Each `wrapped/<id>` is replaced with put_if_match on the etag it was read with, so
        a concurrent writer (a destroy deleting it, another rewrap) is never overwritten:
        a changed object is read again, a deleted one is left deleted. Records already
        under the current version are skipped, so a re-run is cheap and idempotent. Then
        `key.rewrapped` (details: count, version) is logged: re-wrapping changes no
        access and no state, so the event reports work done rather than announcing it.

        Raises:
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: forged/replayed request; a rotation is logged but not done
                (run `pcii keys rotate` again); or a record's wrapped key does not
                unwrap (tampered, or its KEK version retired): named, after the others
                are done and logged.
            BackendError: the store or the log is unavailable.
        """
        with self._key_lock() as fresh_keyring:
            self._authorize_key_op(request, "rewrap")
            keyring = fresh_keyring()
            version = keyring.current_version
            logged = self._logged_kek_version(keyring)
            if logged != version:
                pending = _pending_version(self.paths.root / _ROTATION_PENDING)
                raise _keyring_not_the_logs(logged, version, pending=pending)
            count, failed = self._rewrap_live(keyring)
            details = {"count": count, "version": version}

            def rewrapped(
                _admin: Principal, _row: RecordRow | None, verdict: _Verdict
            ) -> list[Event]:
                if self._logged_kek_version(keyring) != version:
                    raise ActConflictError("a key rotation was logged meanwhile: rewrap again")
                return [self._decision_event("key.rewrapped", request, verdict, details=details)]

            self._act(request, "rotate-keys", rewrapped)
        if failed:
            raise IntegrityError(
                f"{len(failed)} wrapped keys did not unwrap (tampered, or KEK retired): "
                f"{', '.join(failed[:5])}"
            )
        return Rewrap(count=count, version=version)

    def _rewrap_one(self, keyring: KeyCustody, tracking: str) -> int:
        key = f"wrapped/{tracking}"
        context = RecordContext(self.config.vault_id, tracking).to_bytes()
        for _ in range(_REWRAP_ATTEMPTS):
            try:
                blob, etag = self.store.get_with_etag(key)
            except NotFoundError:
                return 0  # shredded meanwhile: stays shredded
            if keyring.is_current(blob):
                return 0
            if keyring.owns(blob):
                self._refuse_retired_by_log(keyring.wrapped_version(blob))
            rewrapped = keyring.rewrap(blob, context)
            try:
                self.store.put_if_match(key, rewrapped, etag)
            except PreconditionFailedError:
                continue  # changed or deleted since read: look again
            return 1
        raise ConflictError(f"{key} keeps changing; run `pcii keys rewrap` again")

    def migrate_keys(self, request: SignedRequest, target_uri: str) -> Migration:
        """Move every live record's data key from the current KEK provider to another.

        Order (a decision): `key.migrated` with phase `started` (from, to, the target's
        KEK version) is logged first; from then on new records are wrapped by the target
        and the source only unwraps. Each live record's `wrapped/<id>` is re-wrapped by
        compare-and-swap (a destroy meanwhile stays destroyed; withdrawn and destroyed
        records are never re-wrapped); then phase `finished` (count) is logged. A blob
        already under the target is skipped, so an interrupted migration is finished by
        running the same command again, and no key is wrapped twice.

        Raises:
            InputError: the KEKs already live at `target_uri`, or another migration is
                unfinished.
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: a record's wrapped key does not unwrap (named, after the
                others are done; the migration then stays unfinished).
            BackendError: a provider, the store or the log is unavailable.
        """
        target = public_uri(target_uri)
        with self._key_lock() as fresh_keyring:
            self._authorize_key_op(request, "migrate", to=target)
            keyring = fresh_keyring()
            migrated = self.index.meta("key.migrated")
            last = json.loads(migrated) if migrated else None
            resumed = last is not None and last["phase"] == "started"
            if last is not None and resumed:
                if last["to"] != target:
                    raise InputError(
                        f"the migration to {last['to']} is unfinished: run `pcii keys migrate "
                        f"--to {last['to']}` first"
                    )
                source = str(last["from"])
            else:
                source = self.current_kek_uri()
                if target == source:
                    raise InputError(f"the KEKs already live at {target}")
                # Create (or find) the target key before anything is logged.
                probe = open_custody(keyring.local, target_uri, LOCAL, create=True)
                version = probe.current_version
                probe.close()
                details = {"phase": "started", "from": source, "to": target, "version": version}
                adopted: list[dict[str, Any]] = []

                def started(
                    _admin: Principal, _row: RecordRow | None, verdict: _Verdict
                ) -> list[Event]:
                    adopted.clear()
                    current = self.index.meta("key.migrated")
                    if current != migrated:
                        logged = json.loads(current) if current else {}
                        if logged.get("phase") == "started" and logged.get("to") == target:
                            # A run killed after claiming its `started` (not yet
                            # committed, so the index did not show it): resume that one.
                            adopted.append(logged)
                            return []
                        raise ActConflictError(
                            "another key migration was logged first: run it again"
                        )
                    return [self._decision_event("key.migrated", request, verdict, details=details)]

                self._act(request, "rotate-keys", started)
                if adopted:
                    source, resumed = str(adopted[0]["from"]), True
                keyring.close()
                self._ledger = None  # it held the closed custody's signer
                # The source is named, not read back from the index: a `started` adopted
                # from another run's claim is not in the index until that claim commits.
                self._keyring = self._open_keys(target_uri, readers=(source,))
                keyring = self._keyring
            count, failed = self._rewrap_live(keyring)
            if failed:
                raise IntegrityError(
                    f"{len(failed)} wrapped keys did not unwrap (tampered, or KEK retired): "
                    f"{', '.join(failed[:5])}; the migration stays unfinished"
                )
            details = {
                "phase": "finished",
                "from": source,
                "to": target,
                "count": count,
                "version": keyring.current_version,
            }
            # A request's nonce is logged once: the run that logged `started` with the
            # admin's request finishes as the vault (an act of its closed list); a
            # resuming run logs its own request.
            if resumed:

                def finished(
                    _admin: Principal, _row: RecordRow | None, verdict: _Verdict
                ) -> list[Event]:
                    return [self._decision_event("key.migrated", request, verdict, details=details)]

                self._act(request, "rotate-keys", finished)
            else:
                self._append([_draft("key.migrated", self._clock(), details=details)])
        return Migration(count=count, source=source, target=target)

    def _rewrap_live(self, keyring: KeyCustody) -> tuple[int, list[str]]:
        count = 0
        failed: list[str] = []
        for record in self.index.records():
            if record.state in SHREDDED_STATES:
                continue
            try:
                count += self._rewrap_one(keyring, record.tracking)
            except IntegrityError:
                failed.append(record.tracking)
        return count, failed

    def _migration_progress(self, keyring: KeyCustody, last: dict[str, Any]) -> dict[str, Any]:
        """The last migration and, while unfinished, how many live records have moved."""
        progress = dict(last)
        if last["phase"] == "started":
            live = [r for r in self.index.records() if r.state not in SHREDDED_STATES]
            moved = 0
            for record in live:
                try:
                    moved += keyring.owns(self.store.get(f"wrapped/{record.tracking}"))
                except NotFoundError:
                    continue
            progress.update(moved=moved, live=len(live))
        return progress

    def retire_key(self, request: SignedRequest, version: int) -> None:
        """Retire a KEK version (it no longer unwraps): logged first, then the keyring.

        Refused while a live record's data key is still wrapped under it (rewrap first),
        so retiring never strands a record.

        Raises:
            InputError: the version is current, unknown, already retired, or in use.
            PolicyDenied: the caller is not an admin (logged).
            IntegrityError: forged/replayed request, or a wrapped key is not readable.
        """
        with self._key_lock() as fresh_keyring:
            self._authorize_key_op(request, "retire", version=version)
            keyring = fresh_keyring()
            logged = self._logged_kek_version(keyring)
            if logged > keyring.current_version:
                # Rotated through another replica: this keyring's "current" is not the
                # log's, and its advice (rotate here) would be refused too.
                if keyring.key_id != LOCAL:
                    raise BackendError(_kek_missing_in_holder(keyring.key_id, logged))
                raise _keyring_not_the_logs(logged, keyring.current_version, pending=None)
            info = {v.version: v for v in keyring.versions}
            if version not in info:
                known = ", ".join(str(v) for v in sorted(info))
                raise InputError(f"KEK version {version} is not in the keyring (it has {known})")
            if version == keyring.current_version:
                raise InputError(
                    f"KEK version {version} is the current one: rotate (`pcii keys rotate`) "
                    "and rewrap before retiring it"
                )
            if info[version].retired:
                raise InputError(f"KEK version {version} is already retired")
            in_use = [
                record.tracking
                for record in self.index.records()
                if record.state not in SHREDDED_STATES
                and self._wrapped_under(keyring, record.tracking, version)
            ]
            if in_use:
                raise InputError(
                    f"{len(in_use)} records are still wrapped under KEK version {version} "
                    f"(e.g. {in_use[0]}): run `pcii keys rewrap` first"
                )
            keyring.check_retire(version)  # what the key holder would refuse, before logging
            details = {"version": version}

            def retired(
                _admin: Principal, _row: RecordRow | None, verdict: _Verdict
            ) -> list[Event]:
                return [self._decision_event("key.retired", request, verdict, details=details)]

            self._act(request, "rotate-keys", retired)
            keyring.retire(version)

    def _wrapped_under(self, keyring: KeyCustody, tracking: str, version: int) -> bool:
        try:
            blob = self.store.get(f"wrapped/{tracking}")
        except NotFoundError:
            return False
        # A blob of another provider (an unfinished migration) is not under this version.
        return keyring.owns(blob) and keyring.wrapped_version(blob) == version

    def _authorize_key_op(self, request: SignedRequest, op: str, **params: Any) -> None:  # noqa: ANN401
        """Check the request names this op, then verify and decide (`rotate-keys`)."""
        expected = {"op": op, **params}
        if request.body.params != expected:
            raise IntegrityError(
                f"request was signed for key operation {request.body.params!r}, not {expected!r}"
            )
        self._act(request, "rotate-keys", None)

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

    # ----- maintenance ------------------------------------------------------------------

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
        """
        try:
            self._refresh_policy()
        except PolicyLoadError:
            return ()  # every act refuses until the policies load; nothing to restore from
        if self._policy_set_unlogged():
            return ()
        damage = policy_set_damage(self.store, self.policy)
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

    # ----- reads that are not releases --------------------------------------------------

    def status(self, request: SignedRequest) -> RecordRow:
        """A record's state, for its submitter or the office (metadata, not content)."""
        tracking = _require_record_id(request)
        record = self._act(request, "status", None, record=tracking).record
        assert record is not None  # noqa: S101 -- the act names a record
        return record

    def search(
        self, request: SignedRequest, *, sector: str | None, state: str | None
    ) -> list[RecordRow]:
        """Records the caller may act on; never content, and never what they may not see."""
        self.sync()
        principal = self._verify_request(request, "search")
        if principal.status != "active":
            # Refused outright, as a server refuses the caller: not an empty listing.
            raise PolicyDenied(f"principal {principal.id} is {principal.status}")
        self._note_policy_change()
        visible: list[RecordRow] = []
        candidates = self.index.records(sector=sector, state=state)
        # One decision per record and action: parse every entity once, not per decision.
        directory = self.policy.entity_directory(
            [principal_facts(principal)], [record_facts(r) for r in candidates]
        )
        for record in candidates:
            # Analysts see what the `search` policies allow; owners their own submissions
            # (`status`); the office what it may review.
            for action in ("search", "status", "review"):
                probe = request.model_copy(
                    update={"body": request.body.model_copy(update={"action": action})}
                )
                decision = self._decide(principal, probe, record, directory).decision
                if decision.allowed:
                    visible.append(_redact_listing(record, decision.obligations))
                    break
        return visible


# ----- small pieces ------------------------------------------------------------------------


def _redact_listing(record: RecordRow, obligations: Sequence[str]) -> RecordRow:
    """Apply a listing's redactions: who submitted, and file names that may say so."""
    if "redact:submitter" not in obligations:
        return record
    hidden = "[REDACTED: submitter]"
    return dataclasses.replace(record, submitter=hidden, submitter_org=hidden, files=())


def _check_submitter(declared: str, owner: Principal) -> None:
    """The organisation a submission names as its submitter is the submitting owner's.

    The record's submitter of record is the owner's organisation (its owners follow and
    withdraw it); a document naming another would release under a name the log does not
    hold. Compared without regard to case, spacing and Unicode form.

    Raises:
        InputError: the submission names another organisation.
    """
    if not same_organisation(declared, owner.organisation):
        raise InputError(
            f"submitter.organisation '{printable(declared)}' is not your organisation "
            f"('{printable(owner.organisation)}'): submit as an owner of the organisation "
            "that submits"
        )


def _check_training(expires: date | None, request: SignedRequest) -> None:
    """Refuse a training expiry more than a year and a day after the act.

    PCII training is renewed yearly: an expiry further out would keep a user current
    without renewing it (the extra day for a leap year).

    Raises:
        InputError: `expires` is more than `_TRAINING_RENEWED_WITHIN` after the act's date.
    """
    # The day after the act's UTC date: the admin's own date may be ahead of UTC's.
    latest = request.body.time.astimezone(UTC).date() + _TRAINING_RENEWED_WITHIN + _A_DAY
    if expires is not None and expires > latest:
        raise InputError(
            f"training expiry {expires.isoformat()} is more than a year away: PCII training "
            f"is renewed yearly (at most {latest.isoformat()})"
        )


def _manifest_keys(record: RecordRow) -> set[str]:
    """The store keys of a record's logged objects."""
    return {f"records/{record.tracking}/{entry['object']}" for entry in record.files}


def _reads_back(event: Event) -> None:
    """Refuse an event the log could not read back: it would make the log unreadable.

    What a request carries goes into its events (a denial records the signed request):
    an entry that parses no more (nesting past the JSON reader's limit) would be signed
    into the log for good, and every command after it would fail.

    Raises:
        InputError: the entry does not parse back, or is too large for the log.
    """
    try:
        entry = event.entry_bytes()
        parse_event(entry, event.seq)
    except (IntegrityError, ValueError) as exc:  # no JSON form, or none that parses back
        reason = exc.__cause__ if isinstance(exc, IntegrityError) else exc
        raise InputError(
            f"the request cannot be logged as it is ({reason}); nothing logged"
        ) from None
    if len(entry) > MAX_ENTRY_BYTES:
        # Refused here, for its requester alone: the log would refuse the whole batch.
        raise InputError(
            f"the request would make a log entry of {len(entry)} bytes (at most "
            f"{MAX_ENTRY_BYTES}); nothing logged"
        )


def _check_sectors(sectors: Sequence[str]) -> None:
    """Refuse a sector the reference list does not name: need to know never matches it.

    The CLI checks it too, but a request over the wire is built by any client.

    Raises:
        InputError: naming the first unknown sector.
    """
    from pcii_vault.models.reference import reference_data  # noqa: PLC0415

    known = set(reference_data().sector_names)
    for sector in sectors:
        if sector not in known:
            raise InputError(f"sector {printable(sector)!r} is not a sector of the reference list")


def _check_nda(signed: date | None, request: SignedRequest) -> None:
    """Refuse an NDA signed after the act that records it (a typo in the year, mostly).

    Raises:
        InputError: `signed` is later than the act's date.
    """
    # The admin's own date may be a day ahead of the act's UTC date (east of UTC).
    today = request.body.time.astimezone(UTC).date() + _A_DAY
    if signed is not None and signed > today:
        raise InputError(
            f"NDA signed {signed.isoformat()} is in the future: record an NDA once it is "
            f"signed (on or before {today.isoformat()})"
        )


def _check_organisation(organisation: str) -> None:
    """An organisation is shown in listings, denials and the auditor's report: one line.

    Raises:
        InputError: it holds control, format (bidi override, zero-width) or line
            separator characters.
    """
    if printable(organisation) != organisation:
        raise InputError(
            f"organisation '{printable(organisation)}' must be one line of printable text "
            "(no control, bidi or zero-width characters)"
        )


def _check_stated_text(body: RequestBody) -> None:
    """Refuse a purpose or reason that would not read as it is logged (exit 2).

    A blank one is left to the policies (`no-stated-purpose` denies, and the denial is
    logged); one of zero-width or bidi characters would pass for stated.

    Raises:
        InputError: the purpose or reason holds control, invisible or bidi characters only
            or among its text.
    """
    reason = body.params.get("reason")
    for what, text, lines in (("purpose", body.purpose, False), ("reason", reason, True)):
        if isinstance(text, str) and text.strip() and (why := unreadable(text, lines=lines)):
            raise InputError(f"the request's {what} {why}: state it in plain text")


def _check_transition(
    record: RecordRow, event_type: EventType, details: Mapping[str, Any] | None = None
) -> None:
    """Refuse, before it is logged, a transition the lifecycle forbids (exit 3).

    The record's state decides, as a denial would: nothing of the act is logged.
    """
    categorical = bool(details and details.get("categorical") is True)
    try:
        next_state(record.state, event_type, categorical=categorical)
    except IllegalTransitionError as exc:
        raise ActConflictError(f"record {record.tracking}: {exc}") from exc


@dataclass(frozen=True)
class _Verdict:
    """A decision and the moment it was made (the time of the event that records it)."""

    decision: Decision
    at: datetime


@dataclass
class _Done:
    """An act as decided at its log position: who, on which record, and where it landed."""

    principal: Principal
    record: RecordRow | None
    verdict: _Verdict
    indices: tuple[int, ...] = ()


# What a permitted act logs, decided on the state at its position (or raises).
Effect = Callable[[Principal, RecordRow | None, _Verdict], list[Event]]


class _NothingToLogError(Exception):
    """A read that the policies permit at its position: nothing to append."""


class _StalePositionError(Exception):
    """Another process of this vault applied events past the position being built."""


_STALE_ATTEMPTS = 1000  # each one means another process appended: progress, not a spin


_TRAINING_RENEWED_WITHIN = timedelta(days=366)
_A_DAY = timedelta(days=1)
_CHANGEABLE = frozenset(
    {"role", "organisation", "level", "sectors", "training_expires", "nda_signed", "status"}
)


def principal_params(
    principal_id: str, attributes: PrincipalAttributes, public_key: Ed25519PublicKey
) -> dict[str, Any]:
    """The parameters an admin signs to register a principal: every registered fact."""
    return {
        "op": "register",
        "principal": principal_id,
        "attributes": attributes.model_dump(mode="json"),
        "public_key": base64.b64encode(public_key.raw).decode(),
    }


def _signed_params(request: SignedRequest) -> dict[str, Any]:
    """The request's parameters exactly as signed (JSON values)."""
    params: dict[str, Any] = request.to_log()["body"]["params"]
    return params


def _require_signed_params(request: SignedRequest, expected: dict[str, Any], what: str) -> None:
    if _signed_params(request) != to_jsonable_python(expected):
        raise IntegrityError(f"request does not sign the {what} it asks for")


def _draft(event_type: EventType, now: datetime, **fields: Any) -> Event:  # noqa: ANN401
    return Event(seq=0, time=now, type=event_type, actor=VAULT_ACTOR, **fields)


def _reporting(
    chunks: Iterable[bytes], meta: Mapping[str, Any], progress: Progress | None
) -> Iterable[bytes]:
    """`chunks`, telling `progress` how far a release's attachment has been read."""
    if progress is None:
        yield from chunks
        return
    done = 0
    for chunk in chunks:
        done += len(chunk)
        progress(str(meta["name"]), done, int(meta.get("size") or 0))
        yield chunk


def _doc_key(ctx: ObjectContext) -> str:
    return f"records/{ctx.record_id}/{ctx.object_name}"


# Stored bytes per plaintext byte are bounded: 16 KiB chunks, each with a small tag; 64
# bytes per chunk plus a header is a generous bound for the size check before decrypting.
_MAX_DOCUMENT_STORED = MAX_DOCUMENT_BYTES + (MAX_DOCUMENT_BYTES // 16384 + 2) * 64 + 4096


def _read_document(
    store: ObjectStore, dek: bytes, ctx: ObjectContext, files: Iterable[Mapping[str, Any]]
) -> bytes:
    """Decrypt a record's document into memory, never past its declared size.

    A document is JSON of at most `MAX_DOCUMENT_BYTES` (the owner's client refuses larger
    ones). The declared plaintext size is checked before decrypting, and both the stored
    bytes and the plaintext are counted while they stream (no extra request to ask the
    object's size first), so a forged 256 MiB "document" is refused at its first excess
    chunk instead of filling memory.

    Raises:
        IntegrityError: the declared size is missing, over the limit, or not the size
            the stored object decrypts to.
    """
    declared = next((f.get("size") for f in files if f.get("object") == ctx.object_name), None)
    return _read_bounded(
        store, dek, ctx, declared, MAX_DOCUMENT_BYTES, stored_limit=_MAX_DOCUMENT_STORED
    )


def _read_bounded(
    store: ObjectStore,
    dek: bytes,
    ctx: ObjectContext,
    declared: object,
    limit: int,
    *,
    stored_limit: int | None = None,
) -> bytes:
    """Decrypt a stored object of a record into memory: exactly its declared size.

    Raises:
        IntegrityError: the declared size is missing or over `limit`, the stored object
            is longer than `stored_limit`, or it decrypts to more or fewer bytes (both
            counted while they stream).
    """
    what = f"{ctx.object_name} of {ctx.record_id}"
    if not isinstance(declared, int) or not 0 <= declared <= limit:
        raise IntegrityError(f"{what}: declared size is not within limits")
    stored = store.open_stream(_doc_key(ctx))
    if stored_limit is not None:
        stored = _capped(stored, stored_limit)
    parts: list[bytes] = []
    total = 0
    for chunk in _named_failures(open_object(dek, ctx, stored), what):
        total += len(chunk)
        if total > declared:
            raise IntegrityError(f"{what}: larger than its declared size")
        parts.append(chunk)
    if total != declared:
        raise IntegrityError(f"{what}: smaller than its declared size")
    return b"".join(parts)


def _check_uploaded_as_signed(
    what: str, entry: Mapping[str, Any], sha256: str, size: int | None
) -> None:
    """The uploaded plaintext (`sha256`, and `size` unless checked already) is the entry's.

    Raises:
        IntegrityError: they differ (nothing is logged; the upload is removed).
    """
    if sha256 != entry["sha256"] or (size is not None and size != entry["size"]):
        raise IntegrityError(
            f"{what} uploaded is not the one its request signed (SHA-256 or size differ): "
            "nothing was logged"
        )


def _named_failures(chunks: Iterable[bytes], what: str) -> Iterator[bytes]:
    """`chunks`; a failure to read or authenticate them names the object (`what`)."""
    try:
        yield from chunks
    except IntegrityError as exc:
        raise IntegrityError(f"{what}: {exc}") from exc


def _capped(chunks: Iterable[bytes], limit: int) -> Iterator[bytes]:
    """`chunks`, refused once more than `limit` bytes have come."""
    seen = 0
    for chunk in chunks:
        seen += len(chunk)
        if seen > limit:
            raise IntegrityError("stored object is too large")
        yield chunk


def _failure_reason(exc: BaseException) -> str:
    """Why a logged release reached nobody, in the words of its `release.failed` event."""
    if isinstance(exc, KeyboardInterrupt):
        return "interrupted"
    if isinstance(exc, IntegrityError):
        return "a stored object failed its integrity check"
    if isinstance(exc, OSError):
        return exc.strerror or type(exc).__name__
    return type(exc).__name__


def _attachment_bytes(files: Iterable[Mapping[str, Any]]) -> int:
    """The declared plaintext bytes of a record's attachments (unknown: unbounded)."""
    total = 0
    for meta in files:
        if meta.get("object") != "document":
            size = meta.get("size")
            if not isinstance(size, int) or size < 0:
                return 1 << 62
            total += size
    return total


def _require_record_id(request: SignedRequest) -> str:
    if not request.body.record:
        raise InputError("the request names no record")
    return request.body.record


_MAX_PENDING_NOTE = 256  # a version number, a space and a request's nonce


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


def _pending_version(path: Path) -> int | None:
    noted = _pending_rotation(path)
    return noted[0] if noted is not None else None


def _pending_rotation(path: Path) -> tuple[int, str | None] | None:
    """The version a rotation of this vault noted before logging it, and its nonce.

    The nonce of its signed request is None in a note written before nonces were.
    """
    try:
        noted = read_regular(path, _MAX_PENDING_NOTE)
    except FileNotFoundError:
        return None
    except (OSError, IntegrityError):
        # A directory, FIFO or device in its place: never waited on, nor read to the end.
        raise IntegrityError(
            f"{path.name} in the vault directory is not the note a rotation writes; remove it"
        ) from None
    try:
        fields = noted.decode("ascii").split()
    except UnicodeDecodeError:
        return None
    if len(noted) > _MAX_PENDING_NOTE or not 1 <= len(fields) <= 2:
        return None
    if not fields[0].isdigit() or len(fields[0]) > 9:
        return None
    return int(fields[0]), (fields[1] if len(fields) == 2 else None)


def _require_next_version(request: SignedRequest, held: int) -> None:
    """Refuse a rotation signed for another version than the next one.

    `pcii keys rotate` signs the version it makes (the current one + 1, as `keys status`
    gave it): of two rotations asked at once, the first makes it and the other is
    refused, not a second version nobody asked for. A request naming no version (as
    before) rotates whatever is current.

    Raises:
        ActConflictError: another rotation made that version (or the one signed for).
    """
    requested = request.body.params.get("version")
    if requested is not None and requested != held + 1:
        raise ActConflictError(
            f"this rotation was for KEK version {requested}, but version {held} is current "
            "now: another rotation came first, and nothing was rotated (see `pcii keys "
            "status`)"
        )


_TICKET_BYTES = 24  # of the HMAC-SHA256 tag: 192 bits, 32 base64url characters


def _ticket_data(principal_id: str, tracking: str) -> bytes:
    return b"\0".join([b"pcii-upload-ticket/v1", principal_id.encode(), tracking.encode()])


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


def _kek_missing_in_holder(key_id: str, version: int) -> str:
    return (
        f"the log says KEK version {version} is current but {key_id} does not hold it: "
        "the key was deleted there (records wrapped under it cannot be read), or the "
        "rotation was logged and the key not made (`pcii keys rotate` on the vault "
        "directory that logged it completes it); nothing is wrapped until it is there"
    )


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
    how = "authenticated by this vault" if authentic else "its tag failing"
    return (
        f"the index holds {indexed} events ({how}) but the log only {logged}: the log was "
        "rolled back (its store, with this vault's log-checkpoint); restore the store from "
        "a copy holding the newer history, or accept the loss with "
        "`pcii index rebuild --accept-rollback`"
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


# Claims a new vault directory for the `init` that makes it (removed when it is done).


def _check_new_vault_directory(root: Path) -> None:
    if (root / CONFIG_NAME).exists():
        raise ConfigError(f"{root} already holds a vault")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a directory")
    if (root / INIT_MARKER).exists():
        raise ConfigError(_init_under_way(root))
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} is not empty: a new vault needs an empty or new directory")


def _init_under_way(root: Path) -> str:
    return (
        f"an `init` of {root} is under way, or was cut short (it holds {INIT_MARKER} and "
        "no vault.json): if no `init` is running, remove the directory (and the admin key "
        "file that init was writing) and run `pcii init` again"
    )


def _claim_new_vault_directory(root: Path) -> None:
    """Make `root` (0700: it holds the sealed keyring) and claim it for this `init`.

    Two `init` of one directory at once: the second is refused here, before its clean-up
    on failure could remove what the first is writing.

    Raises:
        ConfigError: another `init` claimed it, or it cannot be made.
    """
    try:
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(root / INIT_MARKER, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise ConfigError(_init_under_way(root)) from None
    except OSError as exc:
        raise ConfigError(f"cannot create the vault directory {root}: {exc.strerror}") from None
    os.close(fd)


def _check_store_holds_no_log(store: ObjectStore) -> None:
    # Probing the store first also makes an unreachable or misconfigured one fail here,
    # before anything is written.
    if any(True for _ in store.list("log/")):
        raise ConfigError(f"{store.url} already holds a log: give each vault its own store")


def _remove_partial_vault(
    paths: VaultPaths, store: ObjectStore | None, *, created_root: bool
) -> None:
    """Undo a failed `create`: the directory was new or empty, so all of it goes."""
    with contextlib.suppress(VaultError, OSError):
        if store is not None:
            for prefix in ("log/", "policysets/"):
                for info in list(store.list(prefix)):
                    store.delete(info.key)
    if paths.root.is_dir():
        for child in paths.root.iterdir():
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
        if created_root:
            with contextlib.suppress(OSError):
                paths.root.rmdir()


def _claim_new_file(path: Path) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as exc:
        raise InputError(f"{path} already exists: refusing to overwrite a key file") from exc
    except OSError as exc:
        raise InputError(f"cannot create {path}: {exc.strerror}") from exc
    os.close(fd)


def _not_created(root: Path, exc: OSError) -> VaultError:
    """Why `init` could not write the vault directory: the disk's (exit 5) or the user's."""
    reason = f"cannot create the vault in {root}: {exc.strerror or exc}"
    if exc.errno in {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO}:
        return BackendError(f"{reason} (nothing of it was kept)")
    return InputError(reason)


def _write_claimed(path: Path, identity: Identity) -> None:
    path.unlink()
    identity.save_new(path)


def _copy_default_policies(root: Path) -> Path:
    """Copy the shipped policies into the new vault; an OS error as it is (not a list)."""
    source, target = default_policy_directory(), root / "policies"
    for directory, _subdirectories, files in os.walk(source):
        into = target / Path(directory).relative_to(source)
        into.mkdir()
        for name in files:
            shutil.copyfile(Path(directory) / name, into / name)
    return target
