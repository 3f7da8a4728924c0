"""Releases: a permitted retrieval, logged before a byte of plaintext leaves the core.

Invariants:
- no plaintext is released unless its access event is durably in the log;
- the core hands a release back as data (held in memory) or as a staging directory of
  its own; it never writes into a caller's directory;
- a release that fails after its permit was logged is logged as failed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pcii_vault.core.acting import _draft, _require_record_id, _Verdict
from pcii_vault.core.keying import Keying
from pcii_vault.core.objects import _read_bounded, _read_document
from pcii_vault.crypto.envelope import ObjectContext, RecordContext, decrypt_to_file
from pcii_vault.durable import fsync_directory, staging_prefix, write_new_file
from pcii_vault.errors import (
    ActConflictError,
    BackendError,
    InputError,
    IntegrityError,
    NotFoundError,
    VaultError,
)
from pcii_vault.index import RecordRow
from pcii_vault.lifecycle import SHREDDED_STATES, releasable
from pcii_vault.marking import ReleasePackage, render_release
from pcii_vault.marking_pdf import UnmarkablePdf, file_looks_like_pdf, looks_like_pdf, stamp_pdf
from pcii_vault.models.event import Event
from pcii_vault.models.principal import Principal
from pcii_vault.models.request import SignedRequest
from pcii_vault.models.submission import validate_submission_bytes
from pcii_vault.policy.engine import Decision
from pcii_vault.sequencer import logged_before_interrupt

# progress(attachment name, stored bytes read so far, its plaintext size)
Progress = Callable[[str, int, int], None]


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


class Releases(Keying):
    """The core's releases of record content."""

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
        keyring = self._follow_migration()
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

    def _missing_key(self, tracking: str) -> VaultError:
        """Why a record's wrapped key is gone (see `_gone`)."""
        return self._missing_object(tracking, "wrapped data key")

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

    def _decrypt_attachment(
        self,
        rendered: _Rendered,
        meta: Mapping[str, Any],
        plain: Path,
        *,
        progress: Progress | None,
        durable: bool,
    ) -> None:
        """Decrypt one released attachment into `plain`, checked against its logged hash.

        Raises:
            IntegrityError: the stored object fails authentication (named) or its hash.
            NotFoundError: the object is missing.
        """
        tracking = rendered.tracking
        ctx = ObjectContext(self.config.vault_id, tracking, meta["object"])
        try:
            stored = self.store.open_stream(f"records/{tracking}/{meta['object']}")
        except NotFoundError as exc:
            raise self._missing_object(tracking, meta["object"]) from exc
        try:
            digest, _ = decrypt_to_file(
                rendered.dek, ctx, _reporting(stored, meta, progress), plain, durable=durable
            )
        except IntegrityError as exc:  # named, as a held release names it
            raise IntegrityError(f"{meta['object']} of {tracking}: {exc}") from exc
        if digest != meta["sha256"]:
            raise IntegrityError(f"attachment {meta['name']} does not match its logged hash")

    def _write_release(
        self,
        rendered: _Rendered,
        *,
        staging: Path,
        progress: Progress | None,
        durable: bool,
    ) -> tuple[str, ...]:
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
            self._decrypt_attachment(rendered, meta, plain, progress=progress, durable=durable)
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
