"""Intake: tracking numbers, upload tickets, and receiving a sealed submission.

Invariants:
- the uploaded objects become a record only through their `submission.received` event;
  when that fails they are removed;
- every uploaded object is opened and checked against what the owner signed (document
  and attachments, their SHA-256 and size) before anything is logged.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping, Sequence
from typing import Any

from pcii_vault.core.acting import _Verdict
from pcii_vault.core.keying import Keying
from pcii_vault.core.objects import _doc_key, _named_failures, _read_document
from pcii_vault.crypto.envelope import ObjectContext, RecordContext, open_object
from pcii_vault.errors import (
    ActConflictError,
    ConflictError,
    InputError,
    IntegrityError,
    NotFoundError,
    ObjectExistsError,
    PolicyDenied,
    VaultError,
)
from pcii_vault.index import RecordRow
from pcii_vault.ledger.proof import prove
from pcii_vault.models.event import Event
from pcii_vault.models.principal import Principal
from pcii_vault.models.request import SignedRequest
from pcii_vault.models.submission import (
    TRACKING_NUMBER_PATTERN,
    ManifestEntry,
    Submission,
    check_manifest,
    same_organisation,
    validate_submission_bytes,
)
from pcii_vault.receipt import Receipt
from pcii_vault.submitter import SealedUpload
from pcii_vault.text import printable

# What a discard stores in place of a data key (`Intake.discard_upload`): no wrapped key
# looks like it (those are 65 bytes of a fixed format).
_DISCARDED = b"pcii-vault: upload discarded by its owner\n"


class Intake(Keying):
    """The owner's side of the core: receiving submissions."""

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
            raise InputError(f"'{printable(tracking)}' is not a tracking number")
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
        except ConflictError as exc:
            exc.handed_to_log = False
            raise  # the tracking number is another record's: its objects stay
        except PolicyDenied:
            # Someone who may not submit (an analyst) names an owner's upload in progress:
            # its objects are not theirs to remove (unclaimed, maintenance removes them).
            raise
        except BaseException as exc:
            self._discard_unless_recorded(tracking)
            if isinstance(exc, VaultError):
                exc.handed_to_log = False
            raise
        try:
            details = self._accept(sealed)
        except ActConflictError:
            raise  # another submission of this tracking number holds its key: its objects stay
        except BaseException as exc:
            self._discard_unless_recorded(tracking)
            if isinstance(exc, VaultError):
                exc.handed_to_log = False  # the owner may submit it again at once
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
                    f"attachment '{printable(entry.name)}' ({entry.object}) was not uploaded"
                ) from None

    def _accept(self, sealed: SealedUpload) -> dict[str, Any]:
        """Check an upload and re-wrap its key; return the facts its event records."""
        self._require_logged_kek()
        keyring = self.keyring
        dek = keyring.open_intake(sealed.sealed_dek)
        record_ctx = RecordContext(self.config.vault_id, sealed.tracking_number)
        wrapped = keyring.wrap(dek, record_ctx.to_bytes())
        key = f"wrapped/{sealed.tracking_number}"
        # The key is stored first, before the objects are read: it claims them against a
        # discard by their owner (`discard_upload`), which claims the same key first.
        try:
            self.store.put_if_absent(key, wrapped)
        except ObjectExistsError:
            if self._discarded(sealed.tracking_number):
                raise InputError(
                    f"the upload of {sealed.tracking_number} was discarded meanwhile by its "
                    "owner: nothing was logged; submit again"
                ) from None
            if planted := next(iter(self.store.list(f"{key}/")), None):
                # Not removed and written over: a store that drops a folder emptied of its
                # objects later (SeaweedFS) would drop the record's only key with it.
                raise IntegrityError(
                    f"an object was planted under {key} outside the vault "
                    f"('{printable(planted.key)}'): nothing of this submission was logged; "
                    "remove it and submit again"
                ) from None
            # The same tracking number submitted twice at once (a retry from another
            # terminal): the first to store its key goes on; this one must not remove
            # what belongs to it.
            raise ActConflictError(
                f"{sealed.tracking_number} is being submitted by another request: "
                "nothing of this one was logged"
            ) from None
        submission = self._open_submission_document(dek, sealed)
        self._check_attachments_uploaded(dek, sealed)
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
            what = f"attachment '{printable(str(entry['name']))}'"
            ctx = ObjectContext(self.config.vault_id, tracking, entry["object"])
            opened = open_object(dek, ctx, self.store.open_stream(_doc_key(ctx)))
            for _chunk in _named_failures(opened, what):
                pass  # decrypted to the end: authenticated, hashed and counted as it goes
            _check_uploaded_as_signed(what, entry, opened.plaintext_sha256, opened.plaintext_size)

    def discard_upload(self, tracking: str, key: str) -> None:
        """Remove one uploaded object of a submission that is not a record, for its owner.

        A discard racing the submit of the same tracking number: exactly one wins. Both
        first claim `wrapped/<tracking>` by a conditional write (the submit with the data
        key, a discard with a marker); a discard that finds the submit's key refuses, a
        submit that finds a discard's marker refuses, and no record is logged whose
        objects are gone. The caller checked the owner's ticket.

        Raises:
            InputError: the tracking number is a record (its objects stay).
            NotFoundError: no such object was uploaded.
            ActConflictError: a submission of it is under way (its objects stay).
        """
        self.sync()
        with contextlib.suppress(NotFoundError):
            self.index.record(tracking)
            raise InputError(f"{tracking} is a record: its objects stay")
        try:
            self.store.head(key)
        except NotFoundError:
            raise NotFoundError(f"no uploaded object {key}: nothing to discard") from None
        with contextlib.suppress(ObjectExistsError):
            self.store.put_if_absent(f"wrapped/{tracking}", _DISCARDED)
        if not self._discarded(tracking):
            raise ActConflictError(f"{tracking} is being submitted: its objects stay")
        self.store.delete(key)
        self.remove_empty_record_folder(tracking)
        if next(iter(self.store.list(f"records/{tracking}/")), None) is None:
            # Nothing left to submit: the marker goes too (a submit claiming the key now
            # finds no objects, and refuses).
            with contextlib.suppress(NotFoundError):
                self.store.delete(f"wrapped/{tracking}")

    def _discarded(self, tracking: str) -> bool:
        """Whether `wrapped/<tracking>` holds a discard's marker (not a data key)."""
        try:
            return self.store.get(f"wrapped/{tracking}") == _DISCARDED
        except NotFoundError:
            return False

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
            for info in list(self.store.list(f"records/{tracking}/")):
                self.store.delete(info.key)
            self.remove_empty_record_folder(tracking)
            # Last: a key planted under it makes its deletion fail (tampering, named).
            self.store.delete(f"wrapped/{tracking}")


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


_TICKET_BYTES = 24  # of the HMAC-SHA256 tag: 192 bits, 32 base64url characters


def _ticket_data(principal_id: str, tracking: str) -> bytes:
    return b"\0".join([b"pcii-upload-ticket/v1", principal_id.encode(), tracking.encode()])
