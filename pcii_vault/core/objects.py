"""Reading a record's stored objects: bounded, and every failure named as tampering."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from pcii_vault.crypto.envelope import ObjectContext, open_object
from pcii_vault.errors import IntegrityError
from pcii_vault.store.base import ObjectStore
from pcii_vault.submitter import MAX_DOCUMENT_BYTES


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
