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
- the index is a projection of the log, caught up before every decision.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import fcntl
import functools
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from pcii_vault.config import CONFIG_NAME, VaultConfig, VaultPaths
from pcii_vault.crypto.envelope import (
    ObjectContext,
    RecordContext,
    decrypt_to_file,
    open_object,
)
from pcii_vault.crypto.keywrap import parse_unverified_wrapped_kek_version
from pcii_vault.crypto.seal import DEFAULT_SCRYPT, ScryptParams
from pcii_vault.crypto.signing import Ed25519PrivateKey, Ed25519PublicKey
from pcii_vault.durable import write_new_file
from pcii_vault.errors import (
    BackendError,
    ConfigError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    PolicyDenied,
    PreconditionFailedError,
    VaultError,
)
from pcii_vault.identity import Identity
from pcii_vault.index import LIFECYCLE_TRANSITIONS, Index, RecordRow
from pcii_vault.keys.local import MIN_SECRET_BYTES, KekInfo, LocalKeyring
from pcii_vault.ledger.log import Ledger
from pcii_vault.ledger.note import NoteVerifier, verifier_key_string
from pcii_vault.ledger.proof import prove
from pcii_vault.marking import render_release
from pcii_vault.marking_pdf import UnmarkablePdf, stamp_pdf
from pcii_vault.models.event import Event, EventType
from pcii_vault.models.principal import Principal, PrincipalAttributes
from pcii_vault.models.problems import describe
from pcii_vault.models.request import SignedRequest, sign_request
from pcii_vault.models.submission import Submission, validate_submission_bytes
from pcii_vault.policy.denial import explain_denial
from pcii_vault.policy.engine import (
    Decision,
    EntityDirectory,
    PolicyEngine,
    default_policy_directory,
)
from pcii_vault.policy.entities import PrincipalFacts, RecordFacts, RequestFacts
from pcii_vault.receipt import Receipt
from pcii_vault.store import open_store
from pcii_vault.store.base import ObjectStore
from pcii_vault.submitter import MAX_DOCUMENT_BYTES, SealedUpload

__all__ = ["KeyStatus", "Release", "Rewrap", "Vault"]

_log = structlog.get_logger(__name__)

Clock = Callable[[], datetime]
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
class KeyStatus:
    """What may be shown about the vault's keys: versions and dates, never key material."""

    current_version: int
    logged_version: int
    min_decryption_version: int
    versions: tuple[KekInfo, ...]
    last_rewrap: dict[str, Any] | None


@dataclass(frozen=True)
class Rewrap:
    """What `rewrap_keys` did: how many wrapped keys it replaced, under which version."""

    count: int
    version: int


# Records whose wrapped key is gone (crypto-shredded): never re-wrapped.
_SHREDDED_STATES = frozenset({"withdrawn", "destroyed"})
_REWRAP_ATTEMPTS = 3
_KEY_LOCK_NAME = "keys.lock"


class Vault:
    """One vault: its configuration, store, keyring, log, index and policies."""

    def __init__(
        self,
        root: Path,
        *,
        unseal: Callable[[], bytes],
        clock: Clock = _utcnow,
    ) -> None:
        self.paths = VaultPaths(root)
        self.config = VaultConfig.load(self.paths.config)
        self.store: ObjectStore = open_store(self.config.store, root_for_file=self.paths.objects)
        self._unseal = unseal
        self._clock = clock
        self._keyring: LocalKeyring | None = None
        self._ledger: Ledger | None = None
        self.index = Index.open(self.paths.index)
        self.policy = PolicyEngine.load(self._policy_dir())

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
    ) -> tuple[Vault, Identity]:
        """Create a vault: config, sealed keyring, store layout, log, and the first admin.

        Raises:
            ConfigError: the directory already holds a vault, or the store is unusable.
            InputError: the admin key file cannot be created.
        """
        paths = VaultPaths(root)
        _check_new_vault_directory(root)
        if len(secret) < MIN_SECRET_BYTES:
            raise InputError(f"unseal secret must be at least {MIN_SECRET_BYTES} bytes")
        created_root = not root.exists()
        claimed = False
        store: ObjectStore | None = None
        try:
            # Owner-only: the directory holds the sealed keyring and the index's metadata.
            root.mkdir(mode=0o700, parents=True, exist_ok=True)
            _claim_new_file(admin_key_out)
            claimed = True
            store = open_store(store_url, root_for_file=paths.objects)
            _check_store_holds_no_log(store)
            vault_id = f"v-{secrets.token_hex(8)}"
            keyring = LocalKeyring.create(paths.keyring, secret, kdf_params=kdf_params, clock=clock)
            origin = f"pcii-vault.local/{vault_id}"
            signer = keyring.log_signing_key()
            config = VaultConfig(
                vault_id=vault_id,
                created=clock(),
                store=store_url,
                log_origin=origin,
                log_key=verifier_key_string(origin, signer.public_key),
                intake_public_key=base64.b64encode(keyring.intake_public_key).decode(),
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
            ledger = Ledger(store, origin, signer=signer, verifier=signer.public_key, clock=clock)
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
        except BaseException:
            # Nothing half-created survives: a failed init leaves what was there before.
            if claimed:
                admin_key_out.unlink(missing_ok=True)
            _remove_partial_vault(paths, store, created_root=created_root)
            raise
        vault = cls(root, unseal=lambda: secret, clock=clock)
        vault._keyring = keyring
        vault.sync()
        return vault, identity

    # ----- plumbing ------------------------------------------------------------------

    def close(self) -> None:
        """Release the index."""
        self.index.close()

    def now(self) -> datetime:
        """The vault's clock."""
        return self._clock()

    def current_kek_version(self) -> int:
        """The KEK version new records are wrapped under, as the log last recorded it."""
        rotated = self.index.meta("key.rotated")
        return int(json.loads(rotated)["version"]) if rotated else 1

    def _policy_dir(self) -> Path:
        local = self.paths.root / "policies"
        return local if local.is_dir() else default_policy_directory()

    @property
    def keyring(self) -> LocalKeyring:
        """The unsealed keyring (asks for the unseal secret on first use)."""
        if self._keyring is None:
            self._keyring = LocalKeyring.open(self.paths.keyring, self._unseal())
        return self._keyring

    @property
    def ledger(self) -> Ledger:
        """The log, able to append (needs the keyring's log signing key)."""
        if self._ledger is None:
            signer = self.keyring.log_signing_key()
            self._ledger = Ledger(
                self.store,
                self.config.log_origin,
                signer=signer,
                verifier=signer.public_key,
                clock=self._clock,
            )
        return self._ledger

    def reader(self) -> Ledger:
        """The log, read-only (no unseal secret needed)."""
        if self._ledger is not None:
            return self._ledger
        return Ledger(
            self.store,
            self.config.log_origin,
            signer=None,
            verifier=self.log_public_key,
            clock=self._clock,
        )

    @property
    def log_public_key(self) -> Ed25519PublicKey:
        """The log's Ed25519 verifying key, from the vault config."""
        return NoteVerifier.from_key_string(self.config.log_key).public_key

    def sync(self) -> None:
        """Bring the index up to the log's latest checkpoint."""
        reader = self.reader()
        size = reader.size()
        start = self.index.size
        if start > size:
            raise IntegrityError(
                f"the index has {start} events but the log only {size}: the log was rolled "
                "back; run `pcii audit verify` and `pcii index rebuild`"
            )
        for event in reader.events(start, size):
            self.index.apply(event, skip_applied=True)

    def _note_policy_change(self) -> None:
        """Log a changed policy set (a `policy.loaded` event) before it decides anything."""
        if self.index.size and self.index.meta("policy_set") != self.policy.policy_set_hash:
            # A changed policy set is itself an event, before it decides anything.
            self._append(
                [_draft("policy.loaded", self._clock(), policy_set=self.policy.policy_set_hash)]
            )

    def _append(self, drafts: Sequence[Event]) -> list[int]:
        """Append events; return their log indices after the index caught up."""
        try:
            result = self.ledger.append(list(drafts))
        except VaultError:
            raise
        except OSError as exc:
            raise BackendError(f"log append failed: {exc.strerror or exc}") from exc
        reader = self.reader()
        for event in reader.events(self.index.size, result.size):
            self.index.apply(event, skip_applied=True)
        return list(result.indices)

    def rebuild_index(self) -> int:
        """Throw the index away and replay the whole log; return the event count."""
        self.index.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{self.paths.index}{suffix}").unlink(missing_ok=True)
        self.index = Index.open(self.paths.index)
        for event in self.reader().events(0, self.reader().size()):
            self.index.apply(event, skip_applied=True)
        return self.index.size

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
        self.sync()
        return self._verify_request(self.sign(identity, "identify"), "identify")

    def _verify_request(self, request: SignedRequest, action: str) -> Principal:
        """Check who is asking. Failures here are not attributable, so not logged."""
        body = request.body
        if body.vault != self.config.vault_id:
            raise IntegrityError("request is for another vault")
        if body.action != action:
            raise IntegrityError(f"request was signed for {body.action!r}, not {action!r}")
        try:
            principal = self.index.principal(body.principal)
        except NotFoundError as exc:
            raise PolicyDenied(f"{body.principal!r} is not a registered principal") from exc
        key = Ed25519PublicKey(base64.b64decode(principal.public_key))
        try:
            key.verify(body.signing_bytes(), request.signature_bytes())
        except IntegrityError as exc:
            raise IntegrityError(
                f"request signature of {body.principal!r} does not verify"
            ) from exc
        window = timedelta(seconds=self.config.request_window_seconds)
        now = self._clock()
        if not now - window <= body.time <= now + window:
            raise IntegrityError(
                f"request time {body.time.isoformat()} is outside the "
                f"{self.config.request_window_seconds} s window: check the clock"
            )
        if self.index.nonce_seen(body.nonce):
            raise IntegrityError("replayed request: this request is already in the log")
        return principal

    def _decide(
        self,
        principal: Principal,
        request: SignedRequest,
        record: RecordRow | None,
        directory: EntityDirectory | None = None,
    ) -> Decision:
        return self.policy.decide(
            _principal_facts(principal),
            request.body.action,
            _record_facts(record) if record is not None else None,
            self._request_facts(request),
            directory=directory,
        )

    def _request_facts(self, request: SignedRequest) -> RequestFacts:
        body = request.body
        return RequestFacts(
            purpose=body.purpose or "",
            use=body.use or "",
            authority=body.authority,
            emergency=bool(body.params.get("emergency", False)),
            now=self._clock(),
        )

    def _decision_event(
        self,
        event_type: EventType,
        request: SignedRequest,
        decision: Decision,
        *,
        details: dict[str, Any] | None = None,
    ) -> Event:
        body = request.body
        return Event(
            seq=0,
            time=self._clock(),
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

    def _authorize(
        self, request: SignedRequest, action: str, record: RecordRow | None = None
    ) -> tuple[Principal, Decision]:
        """Verify and decide; a denial is logged and raised as PolicyDenied."""
        self.sync()
        principal = self._verify_request(request, action)
        self._note_policy_change()
        decision = self._decide(principal, request, record)
        if not decision.allowed:
            self._append([self._decision_event("access.decided", request, decision)])
            # Name the reason a person can act on, and the command that replays it.
            raise PolicyDenied(
                explain_denial(
                    self.policy,
                    _principal_facts(principal),
                    action=action,
                    record=_record_facts(record) if record is not None else None,
                    context=self._request_facts(request),
                    decision=decision,
                )
            )
        return principal, decision

    def _record(self, tracking: str) -> RecordRow:
        self.sync()
        return self.index.record(tracking)

    # ----- principals ----------------------------------------------------------------

    def add_principal(
        self,
        request: SignedRequest,
        principal_id: str,
        attributes: PrincipalAttributes,
        public_key: Ed25519PublicKey,
    ) -> Principal:
        """Register a user (an admin's act)."""
        try:
            principal = Principal(
                id=principal_id,
                public_key=base64.b64encode(public_key.raw).decode(),
                **attributes.model_dump(),
            )
        except ValidationError as exc:
            raise InputError(describe(exc, "invalid principal")) from exc
        _, decision = self._authorize(request, "manage-principals")
        with contextlib.suppress(NotFoundError):
            self.index.principal(principal_id)
            raise InputError(f"principal {principal_id!r} already exists")
        self._append(
            [
                self._decision_event(
                    "principal.registered",
                    request,
                    decision,
                    details={"principal": principal.model_dump(mode="json")},
                )
            ]
        )
        return principal

    def update_principal(
        self, request: SignedRequest, principal_id: str, changes: dict[str, Any]
    ) -> Principal:
        """Change a user's attributes or status (an admin's act)."""
        current = self._principal_for_change(principal_id, changes)
        merged = {**current.model_dump(mode="json"), **changes}
        try:
            updated = Principal.model_validate(merged)
        except ValidationError as exc:
            raise InputError(describe(exc, "invalid principal update")) from exc
        _, decision = self._authorize(request, "manage-principals")
        self._append(
            [
                self._decision_event(
                    "principal.updated",
                    request,
                    decision,
                    details={"principal": principal_id, "changes": _json_changes(updated, changes)},
                )
            ]
        )
        return self.index.principal(principal_id)

    def revoke_principal(self, request: SignedRequest, principal_id: str) -> Principal:
        """Revoke a user for good (an admin's act)."""
        self._principal_for_change(principal_id)
        _, decision = self._authorize(request, "manage-principals")
        self._append(
            [
                self._decision_event(
                    "principal.revoked", request, decision, details={"principal": principal_id}
                )
            ]
        )
        return self.index.principal(principal_id)

    def _principal_for_change(
        self, principal_id: str, changes: dict[str, Any] | None = None
    ) -> Principal:
        """The principal about to change; refuses to leave the vault without an admin.

        Revoking, suspending or demoting the last active admin would leave nobody able to
        register users or manage keys: refused (register another admin first).
        """
        self.sync()
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
                return candidate

    def intake_key(self) -> bytes:
        """The X25519 public key owners seal data keys to."""
        return base64.b64decode(self.config.intake_public_key)

    def receive(self, request: SignedRequest, sealed: SealedUpload) -> Receipt:
        """Accept an owner's sealed submission: check it, re-wrap its key, log it.

        The ciphertext is already in the store under `records/<tracking>/`; until the
        `submission.received` event is appended it is not a record, and a failure before
        the append removes it again. A failed append leaves it: the append's claim may
        still be committed by the next writer.
        """
        tracking = sealed.tracking_number
        if request.body.record != tracking:
            raise IntegrityError("request names another tracking number than the upload")
        # A tracking number that is already a record is not this upload's: its objects are
        # another submission's and must survive whatever goes wrong here.
        self.sync()
        with contextlib.suppress(NotFoundError):
            self.index.record(tracking)
            raise ConflictError(f"tracking number {tracking} is already a record")
        try:
            event = self._accept(request, sealed)
        except BaseException:
            self._discard_unless_recorded(tracking)
            raise
        # From here on the objects are never discarded: even when the append fails, its
        # claim may already be in the store, and the next append would commit it; the
        # record must then find its ciphertext and wrapped key in place.
        [index] = self._append([event])
        return Receipt(
            tracking_number=tracking,
            files=tuple(sealed.files),
            log_index=index,
            proof=prove(self.reader(), index),
        )

    def _accept(self, request: SignedRequest, sealed: SealedUpload) -> Event:
        """Check an upload and re-wrap its key; return the event that makes it a record."""
        body = request.body
        if body.params.get("files") != list(sealed.files):
            raise IntegrityError("request does not sign the uploaded files' hashes")
        principal, decision = self._authorize(request, "submit")
        dek = self.keyring.open_intake(sealed.sealed_dek)
        submission = self._open_submission_document(dek, sealed)
        record_ctx = RecordContext(self.config.vault_id, sealed.tracking_number)
        wrapped = self.keyring.wrap(dek, record_ctx.to_bytes())
        self.store.put_if_absent(f"wrapped/{sealed.tracking_number}", wrapped)
        details = {
            "sector": submission.sector,
            "tlp": submission.tlp,
            "submitter_org": principal.organisation,
            "files": list(sealed.files),
            "kek_version": self.keyring.current_version,
        }
        return self._decision_event("submission.received", request, decision, details=details)

    def _open_submission_document(self, dek: bytes, sealed: SealedUpload) -> Submission:
        ctx = ObjectContext(self.config.vault_id, sealed.tracking_number, "document")
        document = _read_document(self.store, dek, ctx, sealed.files)
        names = [f["name"] for f in sealed.files if f["object"] != "document"]
        return validate_submission_bytes(document, attachment_names=names)

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

        Raises:
            ValueError: `event_type` is not a lifecycle transition (a programming error).
            IntegrityError: the request was signed for another action (or is forged,
                replayed, stale, for another vault).
            InputError: the record's state does not allow this transition.
            PolicyDenied: the policies refuse it (the denial is logged).
        """
        if event_type not in _TRANSITION_ACTIONS:
            raise ValueError(f"{event_type} is not a lifecycle transition")
        tracking = _require_record_id(request)
        record = self._record(tracking)
        _, decision = self._authorize(request, _TRANSITION_ACTIONS[event_type], record)
        _check_transition(record, event_type)
        events = [self._decision_event(event_type, request, decision, details=details)]
        if event_type == "record.decontrolled":
            # PCII.md: a status change is sent to every earlier recipient.
            events.extend(
                self._notice(decision, tracking, recipient["principal"], "decontrolled")
                for recipient in _unique_recipients(self.index.recipients(tracking))
            )
        self._append(events)
        if event_type == "submission.withdrawn":
            self._shred(tracking)
        return self.index.record(tracking)

    def destroy(self, request: SignedRequest) -> RecordRow:
        """Destroy a record by crypto-shredding: log first, then delete its wrapped key."""
        tracking = _require_record_id(request)
        record = self._record(tracking)
        _, decision = self._authorize(request, "destroy", record)
        _check_transition(record, "record.destroyed")
        self._append([self._decision_event("record.destroyed", request, decision)])
        self._shred(tracking)
        return self.index.record(tracking)

    def _shred(self, tracking: str) -> None:
        # Deleting the wrapped DEK makes every copy of the ciphertext noise; the ciphertext
        # itself is removed too where the store allows (object lock may keep it).
        self.store.delete(f"wrapped/{tracking}")
        with contextlib.suppress(VaultError):
            for info in list(self.store.list(f"records/{tracking}/")):
                self.store.delete(info.key)

    def _notice(self, decision: Decision, tracking: str, recipient: str, what: str) -> Event:
        # Notices are the vault's own acts, caused by the event just before them.
        return Event(
            seq=0,
            time=self._clock(),
            type="notice.sent",
            actor="vault",
            record=tracking,
            action="notify",
            policy_set=decision.policy_set_hash,
            details={"recipient": recipient, "notice": what},
        )

    # ----- release -------------------------------------------------------------------

    def release(
        self, request: SignedRequest, out_dir: Path, *, progress: Progress | None = None
    ) -> Release:
        """Retrieve (analyst) or review (office) a record into `out_dir/<tracking>/`.

        The access event is in the log before any byte is written; on permit the
        obligations (marking, redaction, cover sheet) are applied to what is written.
        `progress(name, done, total)` is told the bytes of each attachment as it is
        decrypted (for a progress bar; no effect on what is released).
        """
        tracking = _require_record_id(request)
        action = request.body.action
        if action not in {"retrieve", "review"}:
            raise ValueError(f"release is for retrieve or review, not {action}")
        record = self._record(tracking)
        target = out_dir / tracking
        if target.exists():
            raise InputError(f"{target} already exists; choose another --out")
        # --out is created up front, so an unusable one is refused before an access is
        # logged, and removed again if nothing gets released into it.
        created = _missing_ancestors(out_dir)
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InputError(f"cannot create {out_dir}: {exc.strerror}") from exc
        try:
            return self._release(request, record, out_dir, target, progress)
        except BaseException:
            for directory in created:
                with contextlib.suppress(OSError):
                    directory.rmdir()  # only if still empty
            raise

    def _release(
        self,
        request: SignedRequest,
        record: RecordRow,
        out_dir: Path,
        target: Path,
        progress: Progress | None = None,
    ) -> Release:
        tracking = record.tracking
        action = request.body.action
        _, decision = self._authorize(request, action, record)
        try:
            wrapped = self.store.get(f"wrapped/{tracking}")
        except NotFoundError as exc:
            raise IntegrityError(f"record {tracking} has no data key (destroyed?)") from exc
        # Unwrap the key and authenticate the document in memory before logging the
        # release, so a tampered key or document fails before a permit is on record;
        # nothing touches the disk until the access event is in the log.
        dek = self.keyring.unwrap(wrapped, RecordContext(self.config.vault_id, tracking).to_bytes())
        doc_ctx = ObjectContext(self.config.vault_id, tracking, "document")
        document = _read_document(self.store, dek, doc_ctx, record.files)
        events = [self._decision_event("access.decided", request, decision)]
        if "notify:program-office" in decision.obligations:
            # 6 CFR 29.8(f): a contemporaneous written notice to the program office.
            events.append(
                self._notice(
                    decision,
                    tracking,
                    "program-office",
                    f"disclosed under {request.body.authority}",
                )
            )
        index = self._append(events)[0]
        staging = Path(tempfile.mkdtemp(prefix=f".{tracking}.", suffix=".partial", dir=out_dir))
        try:
            files = self._write_release(
                dek=dek,
                document=document,
                record=record,
                request=request,
                decision=decision,
                access_index=index,
                staging=staging,
                progress=progress,
            )
            staging.rename(target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return Release(
            tracking, target, files, index, tuple(decision.obligations), tuple(decision.policy_ids)
        )

    def _write_release(
        self,
        *,
        dek: bytes,
        document: bytes,
        record: RecordRow,
        request: SignedRequest,
        decision: Decision,
        access_index: int,
        staging: Path,
        progress: Progress | None,
    ) -> tuple[str, ...]:
        vault_id = self.config.vault_id
        attachments = [f for f in record.files if f["object"] != "document"]
        submission = validate_submission_bytes(
            document, attachment_names=[f["name"] for f in attachments]
        )
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
        # The package names the attachments the policy releases; PDFs among them are
        # stamped page by page, and one that cannot be stamped is withheld (the cover
        # sheet, rendered again, says why). Plaintext stays inside the staging directory.
        released = [m for m in attachments if m["name"] in package.attachments]
        files_dir = staging / "attachments"
        if released:
            files_dir.mkdir()
        unmarkable: dict[str, str] = {}
        for number, meta in enumerate(released):
            stamp = package.stamps.get(meta["name"])
            dest = files_dir / package.file_names[meta["name"]]
            plain = dest if stamp is None else staging / f".attachment-{number}.plain"
            ctx = ObjectContext(vault_id, record.tracking, meta["object"])
            digest, _ = decrypt_to_file(
                dek,
                ctx,
                _reporting(
                    self.store.open_stream(f"records/{record.tracking}/{meta['object']}"),
                    meta,
                    progress,
                ),
                plain,
            )
            if digest != meta["sha256"]:
                raise IntegrityError(f"attachment {meta['name']} does not match its logged hash")
            if stamp is not None:
                try:
                    stamp_pdf(plain, dest, stamp)
                except UnmarkablePdf as exc:
                    unmarkable[meta["name"]] = str(exc)
                finally:
                    plain.unlink()
        if unmarkable:
            package = render(unmarkable=unmarkable)
        written: list[str] = []
        for name, data in package.files.items():
            write_new_file(staging / name, data, mode=0o600)
            written.append(name)
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
        keyring = self.keyring
        rewrapped = self.index.meta("key.rewrapped")
        return KeyStatus(
            current_version=keyring.current_version,
            logged_version=self.current_kek_version(),
            min_decryption_version=keyring.min_decryption_version,
            versions=keyring.versions,
            last_rewrap=json.loads(rewrapped) if rewrapped else None,
        )

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
            decision = self._authorize_key_op(request, "rotate")
            keyring = fresh_keyring()
            logged, held = self.current_kek_version(), keyring.current_version
            if logged == held + 1:
                _log.warning("completing_logged_rotation", version=logged)
                return self._rotate_keyring(keyring, expected=logged)
            if logged != held:
                raise IntegrityError(
                    f"the keyring's current KEK version is {held} but the log says {logged}: "
                    "the keyring was changed outside the vault"
                )
            details = {"version": held + 1, "previous": held}
            self._append([self._decision_event("key.rotated", request, decision, details=details)])
            return self._rotate_keyring(keyring, expected=held + 1)

    def _rotate_keyring(self, keyring: LocalKeyring, *, expected: int) -> int:
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
            decision = self._authorize_key_op(request, "rewrap")
            keyring = fresh_keyring()
            version = keyring.current_version
            if self.current_kek_version() != version:
                raise IntegrityError(
                    f"the log says KEK version {self.current_kek_version()} but the keyring "
                    f"is at {version}: run `pcii keys rotate` again to complete the rotation"
                )
            count = 0
            failed: list[str] = []
            for record in self.index.records():
                if record.state in _SHREDDED_STATES:
                    continue
                try:
                    count += self._rewrap_one(keyring, record.tracking, version)
                except IntegrityError:
                    failed.append(record.tracking)
            details = {"count": count, "version": version}
            self._append(
                [self._decision_event("key.rewrapped", request, decision, details=details)]
            )
        if failed:
            raise IntegrityError(
                f"{len(failed)} wrapped keys did not unwrap (tampered, or KEK retired): "
                f"{', '.join(failed[:5])}"
            )
        return Rewrap(count=count, version=version)

    def _rewrap_one(self, keyring: LocalKeyring, tracking: str, version: int) -> int:
        key = f"wrapped/{tracking}"
        context = RecordContext(self.config.vault_id, tracking).to_bytes()
        for _ in range(_REWRAP_ATTEMPTS):
            try:
                blob, etag = self.store.get_with_etag(key)
            except NotFoundError:
                return 0  # shredded meanwhile: stays shredded
            if parse_unverified_wrapped_kek_version(blob) == version:
                return 0
            rewrapped = keyring.wrap(keyring.unwrap(blob, context), context)
            try:
                self.store.put_if_match(key, rewrapped, etag)
            except PreconditionFailedError:
                continue  # changed or deleted since read: look again
            return 1
        raise ConflictError(f"{key} keeps changing; run `pcii keys rewrap` again")

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
            decision = self._authorize_key_op(request, "retire", version=version)
            keyring = fresh_keyring()
            info = {v.version: v for v in keyring.versions}
            if version not in info or version == keyring.current_version:
                raise InputError(f"KEK version {version} is current or not in the keyring")
            if info[version].retired:
                raise InputError(f"KEK version {version} is already retired")
            in_use = [
                record.tracking
                for record in self.index.records()
                if record.state not in _SHREDDED_STATES
                and self._wrapped_version(record.tracking) == version
            ]
            if in_use:
                raise InputError(
                    f"{len(in_use)} records are still wrapped under KEK version {version} "
                    f"(e.g. {in_use[0]}): run `pcii keys rewrap` first"
                )
            details = {"version": version}
            self._append([self._decision_event("key.retired", request, decision, details=details)])
            keyring.retire(version)

    def _wrapped_version(self, tracking: str) -> int | None:
        try:
            return parse_unverified_wrapped_kek_version(self.store.get(f"wrapped/{tracking}"))
        except NotFoundError:
            return None

    def _authorize_key_op(self, request: SignedRequest, op: str, **params: Any) -> Decision:  # noqa: ANN401
        """Verify, decide (`rotate-keys`, no record) and check the request names this op."""
        _, decision = self._authorize(request, "rotate-keys")
        expected = {"op": op, **params}
        if request.body.params != expected:
            raise IntegrityError(
                f"request was signed for key operation {request.body.params!r}, not {expected!r}"
            )
        return decision

    @contextlib.contextmanager
    def _key_lock(self) -> Iterator[Callable[[], LocalKeyring]]:
        """Hold the vault's key lock; yield a getter for a keyring read under it."""
        loaded_before = self._keyring is not None
        fd = os.open(self.paths.root / _KEY_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)

            def fresh() -> LocalKeyring:
                # A keyring unsealed before the lock may predate another process's change.
                if loaded_before:
                    self._keyring = LocalKeyring.open(
                        self.paths.keyring, self._unseal(), clock=self._clock
                    )
                return self.keyring

            yield fresh
        finally:
            os.close(fd)  # closing the descriptor releases the lock

    # ----- reads that are not releases --------------------------------------------------

    def status(self, request: SignedRequest) -> RecordRow:
        """A record's state, for its submitter or the office (metadata, not content)."""
        tracking = _require_record_id(request)
        record = self._record(tracking)
        self._authorize(request, "status", record)
        return record

    def search(
        self, request: SignedRequest, *, sector: str | None, state: str | None
    ) -> list[RecordRow]:
        """Records the caller may act on; never content, and never what they may not see."""
        self.sync()
        principal = self._verify_request(request, "search")
        self._note_policy_change()
        visible: list[RecordRow] = []
        candidates = self.index.records(sector=sector, state=state)
        # One decision per record and action: parse every entity once, not per decision.
        directory = self.policy.entity_directory(
            [_principal_facts(principal)], [_record_facts(r) for r in candidates]
        )
        for record in candidates:
            # Analysts see what the `search` policies allow; owners their own submissions
            # (`status`); the office what it may review.
            for action in ("search", "status", "review"):
                probe = request.model_copy(
                    update={"body": request.body.model_copy(update={"action": action})}
                )
                decision = self._decide(principal, probe, record, directory)
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


# The action a lifecycle event must have been requested (and permitted) as.
_TRANSITION_ACTIONS: dict[EventType, str] = {
    "submission.deficient": "mark-deficient",
    "submission.validated": "validate",
    "submission.rejected": "reject",
    "submission.final-not-pcii": "reject",
    "submission.withdrawn": "withdraw",
    "record.decontrolled": "decontrol",
}


def _check_transition(record: RecordRow, event_type: EventType) -> None:
    """Refuse, before it is logged, a transition the index's legal history forbids."""
    allowed, _ = LIFECYCLE_TRANSITIONS[event_type]
    if record.state not in allowed:
        raise InputError(
            f"record {record.tracking} is {record.state}: {event_type} is only allowed from "
            f"{', '.join(sorted(allowed))}"
        )


def _draft(event_type: EventType, now: datetime, **fields: Any) -> Event:  # noqa: ANN401
    return Event(seq=0, time=now, type=event_type, actor="vault", **fields)


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
    ones). The declared plaintext size and the stored object's size are checked before
    decrypting, and the plaintext is counted while it streams, so a forged 256 MiB
    "document" is refused at its first excess chunk instead of filling memory.

    Raises:
        IntegrityError: the declared size is missing, over the limit, or not the size
            the stored object decrypts to.
    """
    declared = next((f.get("size") for f in files if f.get("object") == ctx.object_name), None)
    if not isinstance(declared, int) or not 0 <= declared <= MAX_DOCUMENT_BYTES:
        raise IntegrityError(f"document of {ctx.record_id}: declared size is not within limits")
    key = _doc_key(ctx)
    if store.head(key).size > _MAX_DOCUMENT_STORED:
        raise IntegrityError(f"document of {ctx.record_id}: stored object is too large")
    parts: list[bytes] = []
    total = 0
    for chunk in open_object(dek, ctx, store.open_stream(key)):
        total += len(chunk)
        if total > declared:
            raise IntegrityError(f"document of {ctx.record_id}: larger than its declared size")
        parts.append(chunk)
    if total != declared:
        raise IntegrityError(f"document of {ctx.record_id}: smaller than its declared size")
    return b"".join(parts)


def _require_record_id(request: SignedRequest) -> str:
    if not request.body.record:
        raise InputError("the request names no record")
    return request.body.record


def _principal_facts(principal: Principal) -> PrincipalFacts:
    return PrincipalFacts(
        id=principal.id,
        role=principal.role,
        organisation=principal.organisation,
        level=principal.level,
        sectors=frozenset(principal.sectors),
        training_expires=_start_of_day(principal.training_expires),
        nda_signed=principal.nda_signed,
        contractor=principal.contractor,
        status=principal.status,
    )


def _start_of_day(day: date | None) -> datetime | None:
    # Training "expiring on D" is treated as expired from 00:00 UTC on D: the earlier
    # reading, so a date never grants access for part of a day it might not cover.
    return None if day is None else datetime.combine(day, time.min, UTC)


def _record_facts(record: RecordRow) -> RecordFacts:
    return RecordFacts(
        tracking_number=record.tracking,
        state="categorical" if record.categorical and record.state == "validated" else record.state,
        sector=record.sector,
        tlp=record.tlp,
        submitter=record.submitter,
        submitter_org=record.submitter_org,
    )


def _unique_recipients(rows: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    seen: set[str] = set()
    for row in rows:
        if row["principal"] not in seen:
            seen.add(row["principal"])
            yield row


def _json_changes(updated: Principal, changes: dict[str, Any]) -> dict[str, Any]:
    dumped = updated.model_dump(mode="json")
    return {key: dumped[key] for key in changes}


def _missing_ancestors(path: Path) -> list[Path]:
    """`path` and its ancestors that do not exist yet, deepest first."""
    missing: list[Path] = []
    current = path
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    return missing


def _check_new_vault_directory(root: Path) -> None:
    if (root / CONFIG_NAME).exists():
        raise ConfigError(f"{root} already holds a vault")
    if root.exists() and not root.is_dir():
        raise ConfigError(f"{root} exists and is not a directory")
    if root.exists() and any(root.iterdir()):
        raise ConfigError(f"{root} is not empty: a new vault needs an empty or new directory")


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
            for info in list(store.list("log/")):
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


def _write_claimed(path: Path, identity: Identity) -> None:
    path.unlink()
    identity.save_new(path)


def _copy_default_policies(root: Path) -> Path:
    target = root / "policies"
    shutil.copytree(default_policy_directory(), target)
    return target
