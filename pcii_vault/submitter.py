"""The owner's side of a submission: check locally, encrypt, upload, seal the data key.

Runs where the owner is (the CLI): nothing leaves in plaintext. The owner makes a fresh
data key, encrypts the assessment and each attachment with it straight into the store,
hashes the plaintext while streaming (for the receipt), and seals the data key to the
vault's X25519 intake public key; only the vault can open it and re-wrap it under a KEK.

Invariants: every input problem is found before the first byte is sent; an upload that
fails part-way removes what it wrote, so no half-written record is ever visible.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

from pcii_vault.crypto.envelope import ObjectContext, new_data_key, seal_object
from pcii_vault.crypto.intake import seal_to_intake
from pcii_vault.durable import read_named_file
from pcii_vault.errors import InputError, VaultError
from pcii_vault.models.submission import validate_submission_bytes

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "SealedUpload",
    "UploadSink",
    "check_attachments",
    "read_document",
    "upload",
]

MAX_DOCUMENT_BYTES = 4 << 20
_PIECE = 1 << 20

Progress = Callable[[str, int], None]


class SealedUpload:
    """What the owner hands the vault: the tracking number, file manifest and sealed DEK."""

    def __init__(
        self, tracking_number: str, sealed_dek: bytes, files: tuple[dict[str, Any], ...]
    ) -> None:
        self.tracking_number = tracking_number
        self.sealed_dek = sealed_dek
        self.files = files


def read_document(path: Path) -> bytes:
    """Read the assessment JSON file, with one clear error for each way it can fail.

    At most `MAX_DOCUMENT_BYTES` are read, whatever the file is (a pipe or a device such
    as /dev/zero has no size to check beforehand).
    """
    return read_named_file(path, MAX_DOCUMENT_BYTES, "assessment file")


def check_attachments(paths: Sequence[Path]) -> list[Path]:
    """Check every attachment exists, is a readable regular file and has a unique name.

    Raises:
        InputError: naming the first bad attachment.
    """
    seen: set[str] = set()
    for path in paths:
        if not path.exists():
            raise InputError(f"attachment {path} not found")
        if path.is_dir():
            raise InputError(f"attachment {path} is a directory")
        if not path.is_file():
            raise InputError(f"attachment {path} is not a regular file")
        if not os.access(path, os.R_OK):
            raise InputError(f"attachment {path} is not readable")
        if path.name in seen:
            raise InputError(f"two attachments are named {path.name!r}; names must be unique")
        seen.add(path.name)
    return list(paths)


class UploadSink(Protocol):
    """Where an owner puts a submission's ciphertext objects before submitting it."""

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> object:
        """Store a new object from its chunks (refused if it exists)."""

    def delete(self, key: str) -> None:
        """Remove an object this upload created (a failed submission)."""


def upload(
    store: UploadSink,
    *,
    vault_id: str,
    tracking_number: str,
    intake_public_key: bytes,
    kek_version: int,
    document: bytes,
    attachments: Sequence[Path],
    progress: Progress | None = None,
) -> SealedUpload:
    """Validate, encrypt and upload a submission; return what the vault needs to accept it.

    Raises:
        InputError: the submission or an attachment is invalid (nothing was uploaded).
        BackendError: the store failed (what was uploaded has been removed).
    """
    check_attachments(attachments)
    validate_submission_bytes(document, attachment_names=[p.name for p in attachments])
    dek = new_data_key()
    files: list[dict[str, Any]] = []
    sources = [("document", "submission.json", iter([document]))] + [
        (f"files/{n}", path.name, _read_pieces(path, progress))
        for n, path in enumerate(attachments)
    ]
    written: list[str] = []
    sending: str | None = None
    try:
        for object_name, name, pieces in sources:
            ctx = ObjectContext(vault_id, tracking_number, object_name)
            sending = _object_key(ctx)
            files.append(_put(store, ctx, name, pieces, dek, kek_version=kek_version))
            written.append(sending)
            sending = None
    except BaseException as exc:
        # Remove only what this upload created: on a tracking-number collision the
        # objects already there are another submission's. A failed put_stream leaves
        # nothing of its own (the store guarantees it); but an interrupt may come while
        # a server finishes storing the object whose bytes were all sent: removed too.
        interrupted = isinstance(exc, KeyboardInterrupt) and sending is not None
        with contextlib.suppress(VaultError, OSError):
            for key in [*written, *([sending] if interrupted and sending else [])]:
                store.delete(key)
        raise
    return SealedUpload(tracking_number, seal_to_intake(intake_public_key, dek), tuple(files))


def _put(
    store: UploadSink,
    ctx: ObjectContext,
    name: str,
    pieces: Iterator[bytes],
    dek: bytes,
    *,
    kek_version: int,
) -> dict[str, Any]:
    sealed = seal_object(dek, ctx, pieces, kek_version=kek_version)
    store.put_stream(_object_key(ctx), sealed)
    return {
        "object": ctx.object_name,
        "name": name,
        "sha256": sealed.plaintext_sha256,
        "size": sealed.plaintext_size,
    }


def _object_key(ctx: ObjectContext) -> str:
    return f"records/{ctx.record_id}/{ctx.object_name}"


def _read_pieces(path: Path, progress: Progress | None) -> Iterator[bytes]:
    try:
        with path.open("rb") as handle:
            while piece := handle.read(_PIECE):
                if progress is not None:
                    progress(path.name, len(piece))
                yield piece
    except OSError as exc:
        raise InputError(f"cannot read attachment {path}: {exc.strerror}") from exc
