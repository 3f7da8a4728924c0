"""The client side: a user's identity, signed requests, owner-side encryption, releases on disk.

A `Client` never holds the vault's keys. It signs each request with its user's identity
key, encrypts a submission to the vault's intake key before anything leaves the machine,
and writes what a release returns into the user's `--out` directory. It reaches the core
through a `Transport`: `LocalTransport` calls a `Vault` in this process (embedded mode,
the default), `HttpTransport` (in `pcii_vault.service.client`) a `pcii serve` process over
HTTPS. Both raise the same errors, so every command behaves the same in both modes.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pcii_vault.durable import left_by_a_dead_process, path_exists
from pcii_vault.errors import (
    ActConflictError,
    BackendError,
    ConfigError,
    InputError,
    IntegrityError,
    PolicyDenied,
    VaultError,
)
from pcii_vault.models.acts import (
    ActParams,
    KeyParams,
    ReasonParams,
    RevokeParams,
    SubmitParams,
    UpdateParams,
    params_of,
)
from pcii_vault.models.principal import (
    DEADLINE_READERS,
    PRINCIPAL_READERS,
    UPLOADERS,
    require_role,
)
from pcii_vault.models.request import SignedRequest, sign_request
from pcii_vault.submitter import UploadSink

if TYPE_CHECKING:
    from pcii_vault.identity import Identity
    from pcii_vault.index import Deadline, RecordRow
    from pcii_vault.models.event import EventType
    from pcii_vault.models.principal import Principal, PrincipalAttributes
    from pcii_vault.receipt import Receipt
    from pcii_vault.submitter import SealedUpload
    from pcii_vault.vault import (
        KeyStatus,
        Migration,
        Release,
        Rewrap,
        StagedRelease,
        Vault,
    )

__all__ = [
    "Client",
    "LocalTransport",
    "Progress",
    "Transport",
    "UploadSink",
    "VaultInfo",
    "write_release",
]

# What `pcii unseal` says on a vault directory: embedded commands unseal for themselves.
EMBEDDED_UNSEAL = (
    "`pcii unseal` is for a sealed `pcii serve` (--vault https://...); embedded commands "
    "unseal for themselves, from the share files named in PCII_UNSEAL_SHARES or from "
    "PCII_UNSEAL_SECRET"
)

# progress(name, done, total): bytes of one attachment as they arrive.
Progress = Callable[[str, int, int], None]
Stage = Callable[[Path], AbstractContextManager["StagedRelease"]]
Failed = Callable[[str, int, OSError], VaultError]


@dataclass(frozen=True)
class VaultInfo:
    """What a client needs to know about a vault (public facts only)."""

    vault_id: str
    intake_public_key: bytes
    kek_version: int | None  # None while a server is sealed
    log_key: str
    log_origin: str


class Transport(Protocol):
    """The core's operations, as a client reaches them; each takes a signed request."""

    def info(self) -> VaultInfo:
        """The vault's public facts."""

    def identify(self, request: SignedRequest) -> Principal:
        """The registered principal behind a signed `identify` request."""

    def new_tracking_number(self, request: SignedRequest) -> str:
        """A tracking number no record has (for a signed `identify` request)."""

    def uploads(self, request: SignedRequest) -> UploadSink:
        """Where the owner of a signed `identify` request uploads ciphertext."""

    def receive(self, request: SignedRequest, sealed: SealedUpload) -> Receipt:
        """Submit an uploaded, sealed submission."""

    def status(self, request: SignedRequest) -> RecordRow:
        """A record's state."""

    def search(
        self, request: SignedRequest, *, sector: str | None, state: str | None
    ) -> list[RecordRow]:
        """The records the caller may see."""

    def transition(self, request: SignedRequest, event_type: EventType) -> RecordRow:
        """Validate, reject, mark deficient, withdraw or decontrol a record."""

    def destroy(self, request: SignedRequest) -> RecordRow:
        """Destroy a record (crypto-shredding)."""

    def release(
        self, request: SignedRequest, spool: Path, progress: Progress | None
    ) -> AbstractContextManager[StagedRelease]:
        """Decide and log a release; its files staged in a new directory under `spool`."""

    def release_failed(self, tracking: str, access: int, exc: OSError) -> VaultError:
        """A permitted release could not be written: logged where possible; the error."""

    def add_principal(
        self,
        request: SignedRequest,
        principal_id: str,
        attributes: PrincipalAttributes,
        public_key: bytes,
    ) -> Principal:
        """Register a user."""

    def update_principal(
        self, request: SignedRequest, principal_id: str, changes: dict[str, Any]
    ) -> Principal:
        """Change a user's attributes."""

    def revoke_principal(self, request: SignedRequest, principal_id: str) -> Principal:
        """Revoke a user."""

    def principals(self, request: SignedRequest | None) -> list[Principal]:
        """Every registered principal."""

    def deadlines(self, request: SignedRequest | None, until: datetime) -> list[Deadline]:
        """30-day deadlines falling due before `until`."""

    def key_status(self, request: SignedRequest) -> KeyStatus:
        """The keys' versions and locations."""

    def rotate_keys(self, request: SignedRequest) -> int:
        """A new KEK version; returns it."""

    def rewrap_keys(self, request: SignedRequest) -> Rewrap:
        """Re-wrap every live data key under the current KEK."""

    def retire_key(self, request: SignedRequest, version: int) -> None:
        """Retire a KEK version."""

    def migrate_keys(self, request: SignedRequest, target: str) -> Migration:
        """Move the KEKs to another provider."""

    def unseal(self, request: SignedRequest, share: str) -> dict[str, Any]:
        """Offer one custodian's share to a sealed server."""

    def close(self) -> None:
        """Release what the transport holds."""


class _EmbeddedUploads:
    """The store, as an owner's upload sees it: a discarded upload leaves no record folder."""

    def __init__(self, vault: Vault) -> None:
        self._vault = vault

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> object:
        return self._vault.store.put_stream(key, chunks)

    def delete(self, key: str) -> None:
        self._vault.store.delete(key)
        parts = key.split("/")
        if parts[0] == "records" and len(parts) > 2:
            self._vault.remove_empty_record_folder(parts[1])


class LocalTransport:
    """The core in this process: embedded mode (the caller holds the unseal secret)."""

    def __init__(self, vault: Vault) -> None:
        self.vault = vault

    def info(self) -> VaultInfo:
        config = self.vault.config
        return VaultInfo(
            vault_id=config.vault_id,
            intake_public_key=self.vault.intake_key(),
            kek_version=self.vault.current_kek_version(),
            log_key=config.log_key,
            log_origin=config.log_origin,
        )

    def identify(self, request: SignedRequest) -> Principal:
        return self.vault.identify(request)

    def new_tracking_number(self, request: SignedRequest) -> str:
        # As a server refuses it: the same line in both modes.
        require_role(self.vault.identify(request), UPLOADERS, "ask for a tracking number")
        return self.vault.new_tracking_number()

    def uploads(self, request: SignedRequest) -> UploadSink:
        owner = self.vault.identify(request)
        # As a server refuses the upload itself: nothing is stored, nothing logged.
        require_role(owner, UPLOADERS, "upload a submission's objects")
        return _EmbeddedUploads(self.vault)

    def receive(self, request: SignedRequest, sealed: SealedUpload) -> Receipt:
        return self.vault.receive(request, sealed)

    def status(self, request: SignedRequest) -> RecordRow:
        return self.vault.status(request)

    def search(
        self, request: SignedRequest, *, sector: str | None, state: str | None
    ) -> list[RecordRow]:
        return self.vault.search(request, sector=sector, state=state)

    def transition(self, request: SignedRequest, event_type: EventType) -> RecordRow:
        return self.vault.transition(request, event_type)

    def destroy(self, request: SignedRequest) -> RecordRow:
        return self.vault.destroy(request)

    def release(
        self, request: SignedRequest, spool: Path, progress: Progress | None
    ) -> AbstractContextManager[StagedRelease]:
        return self.vault.open_release(request, spool, progress=progress)

    def release_failed(self, tracking: str, access: int, exc: OSError) -> VaultError:
        return self.vault.release_failed(tracking, access, exc)

    def add_principal(
        self,
        request: SignedRequest,
        principal_id: str,
        attributes: PrincipalAttributes,
        public_key: bytes,
    ) -> Principal:
        from pcii_vault.crypto.signing import Ed25519PublicKey  # noqa: PLC0415

        key = Ed25519PublicKey(public_key)
        return self.vault.add_principal(request, principal_id, attributes, key)

    def update_principal(
        self, request: SignedRequest, principal_id: str, changes: dict[str, Any]
    ) -> Principal:
        return self.vault.update_principal(request, principal_id, changes)

    def revoke_principal(self, request: SignedRequest, principal_id: str) -> Principal:
        return self.vault.revoke_principal(request, principal_id)

    def principals(self, request: SignedRequest | None) -> list[Principal]:
        # Embedded: the caller unsealed the vault; one who signs is held to their role,
        # as a server holds them.
        if request is not None:
            caller = self.vault.identify(request)
            require_role(caller, PRINCIPAL_READERS, "list principals")
        self.vault.sync()
        return self.vault.principals()

    def deadlines(self, request: SignedRequest | None, until: datetime) -> list[Deadline]:
        if request is not None:
            caller = self.vault.identify(request)
            require_role(caller, DEADLINE_READERS, "list deadlines")
        self.vault.sync()
        return self.vault.deadlines(until)

    def key_status(self, request: SignedRequest) -> KeyStatus:
        return self.vault.key_status(request)

    def rotate_keys(self, request: SignedRequest) -> int:
        return self.vault.rotate_keys(request)

    def rewrap_keys(self, request: SignedRequest) -> Rewrap:
        return self.vault.rewrap_keys(request)

    def retire_key(self, request: SignedRequest, version: int) -> None:
        self.vault.retire_key(request, version)

    def migrate_keys(self, request: SignedRequest, target: str) -> Migration:
        return self.vault.migrate_keys(request, target)

    def unseal(self, request: SignedRequest, share: str) -> dict[str, Any]:
        del request, share
        raise ConfigError(EMBEDDED_UNSEAL)

    def close(self) -> None:
        self.vault.close()


class Client:
    """One user acting on one vault: signs, encrypts, writes releases."""

    def __init__(
        self,
        transport: Transport,
        identity: Identity | None,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.transport = transport
        self.identity = identity
        self._clock = clock
        self._info: VaultInfo | None = None

    @property
    def info(self) -> VaultInfo:
        """The vault's public facts (asked once)."""
        if self._info is None:
            self._info = self.transport.info()
        return self._info

    def sign(self, action: str, **fields: Any) -> SignedRequest:  # noqa: ANN401
        """A request for `action`, signed with this user's key for this vault.

        Raises:
            ConfigError: the identity belongs to another vault.
        """
        if self.identity is None:
            raise ConfigError("no identity given: pass --as KEYFILE or set PCII_IDENTITY")
        vault_id = self.info.vault_id
        if self.identity.vault_id != vault_id:
            raise ConfigError(
                f"identity {self.identity.principal!r} belongs to vault "
                f"{self.identity.vault_id}, not {vault_id}"
            )
        return sign_request(
            self.identity.key,
            vault=vault_id,
            principal=self.identity.principal,
            action=action,
            now=self._clock(),
            **fields,
        )

    def identify(self) -> Principal:
        """Who the vault takes this user for (refused early when it would refuse anyway)."""
        return self.transport.identify(self.sign("identify"))

    def submit(
        self,
        document: bytes,
        attachments: Sequence[Path],
        *,
        progress: Callable[[str, int], None] | None = None,
    ) -> Receipt:
        """Validate and encrypt here, upload the ciphertext, submit; returns the receipt.

        Every problem of the document or the attachments is found before the vault is
        asked anything.
        """
        from pcii_vault.models.submission import validate_submission_bytes  # noqa: PLC0415
        from pcii_vault.submitter import check_attachments, upload  # noqa: PLC0415

        check_attachments(attachments)
        validate_submission_bytes(document, attachment_names=[p.name for p in attachments])
        self.identify()
        kek_version = self.info.kek_version
        if kek_version is None:  # pragma: no cover - identify() already refused a sealed one
            raise BackendError("the vault server is sealed")
        tracking = self.transport.new_tracking_number(self.sign("identify"))
        sealed = upload(
            self.transport.uploads(self.sign("identify", record=tracking)),
            vault_id=self.info.vault_id,
            tracking_number=tracking,
            intake_public_key=self.info.intake_public_key,
            kek_version=kek_version,
            document=document,
            attachments=attachments,
            progress=progress,
        )
        params = params_of(SubmitParams(files=list(sealed.files)))
        request = self.sign("submit", record=tracking, params=params)
        try:
            return self.transport.receive(request, sealed)
        except (InputError, PolicyDenied, ActConflictError, IntegrityError):
            raise  # refused: nothing of it was logged
        except BaseException as exc:
            # Handed to the vault, interrupted or failing (a full disk as its event was
            # committed, a server gone): it may log the submission all the same, unless
            # the vault says it refused before that. The owner needs the tracking number
            # to find out, not to submit it twice.
            if getattr(exc, "handed_to_log", None) is not False:
                exc.add_note(
                    f"(after handing {tracking} to the vault, which may record it all the "
                    f"same: check `pcii status {tracking}` before submitting it again)"
                )
            raise

    def status(self, tracking: str) -> RecordRow:
        """A record's state."""
        return self.transport.status(self.sign("status", record=tracking))

    def search(
        self, *, purpose: str, use: str, sector: str | None, state: str | None
    ) -> list[RecordRow]:
        """The records this user may act on."""
        request = self.sign("search", purpose=purpose, use=use)
        return self.transport.search(request, sector=sector, state=state)

    def transition(
        self, tracking: str, action: str, event_type: EventType, params: ActParams
    ) -> RecordRow:
        """A lifecycle act on a record, its typed parameters signed."""
        request = self.sign(action, record=tracking, params=params_of(params))
        with _noting_an_act_in_flight(action, tracking):
            return self.transport.transition(request, event_type)

    def destroy(self, tracking: str, reason: str) -> RecordRow:
        """Destroy a record (logged first, then its data key is deleted)."""
        params = params_of(ReasonParams.of(reason=reason))
        request = self.sign("destroy", record=tracking, params=params)
        with _noting_an_act_in_flight("destroy", tracking):
            return self.transport.destroy(request)

    def release(
        self,
        out_dir: Path,
        *,
        action: str,
        tracking: str,
        purpose: str,
        use: str | None = None,
        authority: str | None = None,
        progress: Progress | None = None,
    ) -> Release:
        """Retrieve or review a record into `out_dir/<tracking>/`."""
        request = self.sign(action, record=tracking, purpose=purpose, use=use, authority=authority)
        return write_release(
            out_dir,
            request,
            lambda spool: self.transport.release(request, spool, progress),
            self.transport.release_failed,
        )

    def add_principal(
        self, principal_id: str, attributes: PrincipalAttributes, public_key: bytes
    ) -> Principal:
        """Register a user with every registered fact signed (an admin's act)."""
        from pcii_vault.crypto.signing import Ed25519PublicKey  # noqa: PLC0415
        from pcii_vault.vault import principal_params  # noqa: PLC0415

        params = principal_params(principal_id, attributes, Ed25519PublicKey(public_key))
        request = self.sign("manage-principals", params=params)
        return self.transport.add_principal(request, principal_id, attributes, public_key)

    def update_principal(self, principal_id: str, changes: dict[str, Any]) -> Principal:
        """Change a user's attributes (an admin's act)."""
        update = UpdateParams.of(op="update", principal=principal_id, changes=changes)
        request = self.sign("manage-principals", params=params_of(update))
        return self.transport.update_principal(request, principal_id, changes)

    def revoke_principal(self, principal_id: str) -> Principal:
        """Revoke a user for good (an admin's act)."""
        revoke = RevokeParams.of(op="revoke", principal=principal_id)
        request = self.sign("manage-principals", params=params_of(revoke))
        return self.transport.revoke_principal(request, principal_id)

    def principals(self) -> list[Principal]:
        """Every registered user (signed when this client has an identity)."""
        return self.transport.principals(self._maybe_signed())

    def deadlines(self, until: datetime) -> list[Deadline]:
        """30-day deadlines falling due before `until`, overdue ones included."""
        return self.transport.deadlines(self._maybe_signed(), until)

    def _maybe_signed(self) -> SignedRequest | None:
        # Embedded listings need no identity (the caller holds the unseal secret).
        return self.sign("identify") if self.identity is not None else None

    def key_status(self) -> KeyStatus:
        """The keys' versions and locations (an admin's or auditor's question)."""
        return self.transport.key_status(self._key_act(KeyParams(op="status")))

    def rotate_keys(self) -> int:
        """A new KEK version (an admin's act): the next one after the logged current one.

        The request signs the version it makes, so of two rotations at once only one
        happens; the other is refused (exit 3).
        """
        logged = self.key_status().logged_version
        return self.transport.rotate_keys(
            self._key_act(KeyParams.of(op="rotate", version=logged + 1))
        )

    def rewrap_keys(self) -> Rewrap:
        """Re-wrap every live data key under the current KEK (an admin's act)."""
        return self.transport.rewrap_keys(self._key_act(KeyParams(op="rewrap")))

    def retire_key(self, version: int) -> None:
        """Retire a KEK version (an admin's act)."""
        request = self._key_act(KeyParams.of(op="retire", version=version))
        self.transport.retire_key(request, version)

    def migrate_keys(self, target: str, *, public_target: str) -> Migration:
        """Move the KEKs to `target` (the signed request names its public form)."""
        request = self._key_act(KeyParams.of(op="migrate", to=public_target))
        return self.transport.migrate_keys(request, target)

    def unseal(self, share: str) -> dict[str, Any]:
        """Offer one custodian's share to a sealed server (signed as this user)."""
        return self.transport.unseal(self.sign("unseal"), share)

    def _key_act(self, params: KeyParams) -> SignedRequest:
        return self.sign("rotate-keys", params=params_of(params))

    def close(self) -> None:
        """Close the transport."""
        self.transport.close()


def write_release(out_dir: Path, request: SignedRequest, stage: Stage, failed: Failed) -> Release:
    """Stage a release under `out_dir` and rename it to `out_dir/<tracking>/`.

    `--out` is created up front, so an unusable one is refused before an access is
    logged, and removed again if nothing gets released into it.

    Raises:
        InputError: `out_dir/<tracking>` exists, or `out_dir` cannot be created.
    """
    tracking = request.body.record
    if tracking is None:
        raise InputError("a release names a record")
    target = out_dir / tracking
    if path_exists(target, "--out"):
        raise InputError(f"{target} already exists; choose another --out")
    created = _missing_ancestors(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        # Held open: a staging directory left in `--out` is found there, and removed,
        # even after `--out` was moved away or replaced by a symlink meanwhile.
        pinned = os.open(out_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        if out_dir.is_symlink() and not out_dir.exists():
            raise InputError(f"--out {out_dir} is a symlink to nothing: give a directory") from exc
        raise InputError(f"cannot create {out_dir}: {exc.strerror}") from exc
    try:
        _remove_dead_stagings(pinned, out_dir)
        return _stage_and_rename(target, stage, failed, pinned, created)
    finally:
        os.close(pinned)


def _stage_and_rename(
    target: Path,
    stage: Stage,
    failed: Failed,
    pinned: int,
    created: list[Path],
) -> Release:
    from pcii_vault.vault import Release  # noqa: PLC0415

    out_dir, tracking = target.parent, target.name
    before = set(os.listdir(pinned))
    try:
        with stage(out_dir) as staged:
            try:
                staged.directory.rename(target)
            except OSError as exc:
                if exc.errno in {errno.ENOTEMPTY, errno.EEXIST}:
                    # Another release to the same place won the rename: name the target,
                    # not our staging directory.
                    exc = OSError(exc.errno, "it appeared meanwhile", str(target))
                raise failed(tracking, staged.access_index, exc) from exc
            return Release(
                tracking,
                target,
                staged.files,
                staged.access_index,
                staged.obligations,
                staged.policies,
            )
    except BaseException:
        if not _still_there(out_dir, pinned):
            _remove_staging_left(pinned, tracking, before)
        for directory in created:
            with contextlib.suppress(OSError):
                directory.rmdir()  # only if still empty
        raise


def _remove_dead_stagings(pinned: int, out_dir: Path) -> None:
    """Remove what releases killed part-way left in `--out` (decrypted, unmarked files).

    A release killed while it wrote (SIGKILL, a power cut) cannot remove its staging
    directory; the next release into the same folder does, once that process is gone.
    """
    with contextlib.suppress(OSError):
        for name in os.listdir(pinned):
            if left_by_a_dead_process(name):
                shutil.rmtree(name, dir_fd=pinned, ignore_errors=True)
                import structlog  # noqa: PLC0415 -- rare; the CLI's import stays light

                structlog.get_logger("pcii_vault").warning(
                    "dead_release_staging_removed", path=str(out_dir / name)
                )


def _still_there(out_dir: Path, pinned: int) -> bool:
    """Whether `out_dir` still leads to the directory held open as `pinned`."""
    try:
        now, held = out_dir.stat(), os.fstat(pinned)
    except OSError:
        return False
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


def _remove_staging_left(pinned: int, tracking: str, before: set[str]) -> None:
    """Remove the staging directories of this release still in the pinned `--out`.

    The stage removes its own by path; once `--out` was moved or swapped for a symlink,
    that path leads elsewhere, and the (decrypted) files would stay where they were. Only
    then is this needed: by path, a stage never removes another release's staging (one of
    the same record into the same `--out` at the same moment), which a sweep could.
    """
    with contextlib.suppress(OSError):
        for name in set(os.listdir(pinned)) - before:
            if name.startswith(f".{tracking}.") and name.endswith(".partial"):
                shutil.rmtree(name, dir_fd=pinned, ignore_errors=True)


def _missing_ancestors(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing: list[Path] = []
    current = path
    while not path_exists(current, "--out") and current != current.parent:
        missing.append(current)
        current = current.parent
    return missing


@contextlib.contextmanager
def _noting_an_act_in_flight(action: str, tracking: str) -> Iterator[None]:
    """A connection that broke after the act was sent: the server may have logged it."""
    try:
        yield
    except BackendError as exc:
        if getattr(exc, "in_flight", False):
            exc.add_note(
                f"(the server may have logged the {action} before the connection broke: "
                f"check `pcii status {tracking}` before acting again)"
            )
        raise
