"""The ObjectStore protocol: the only way the vault touches storage.

Invariants every implementation keeps (the conformance suite in
tests/unit/store/test_conformance.py checks each one on every store):
- keys are validated before use (`validate_key`); no key can name anything outside the store;
- a reader never sees a half-written object: an object is absent or complete;
- put_if_absent has exactly one winner among concurrent creators of one key;
- put_if_match replaces only the version named by its etag;
- every write carries an integrity check of its bytes (SHA-256), refused on mismatch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable

from pcii_vault.errors import InputError, IntegrityError, NotFoundError

__all__ = [
    "MAX_KEY_BYTES",
    "MAX_WHOLE_OBJECT_BYTES",
    "FolderMarkers",
    "ObjectInfo",
    "ObjectStore",
    "ObjectTooLargeError",
    "UnfinishedUploads",
    "remove_planted_under",
    "too_large_to_read_whole",
    "validate_key",
]

MAX_KEY_BYTES = 512
# The largest object the vault reads whole (`get`, `get_with_etag`): log entry bundles
# (at most 256 entries under 64 KiB each), tiles, checkpoints, claims, wrapped keys and
# policy sets are all far smaller; records are streamed. A larger object was not written
# by the vault (a sparse file costs an attacker nothing) and is refused before it is read
# into memory.
MAX_WHOLE_OBJECT_BYTES = 64 << 20
_SEGMENT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a store knows about one stored object."""

    key: str
    size: int
    etag: str
    modified: datetime | None = None  # when listed: the last write, if the store says


def validate_key(key: str) -> str:
    """Check that `key` is a safe, relative, slash-separated object name.

    Segments start with a letter or digit and use only ``[A-Za-z0-9._-]``, so ``..``,
    absolute paths, empty segments, NUL and control characters are all refused.

    Raises:
        InputError: the key could escape the store root or is not portable.
    """
    if not isinstance(key, str) or not key:
        raise InputError("object key is empty")
    if len(key.encode("utf-8", "surrogatepass")) > MAX_KEY_BYTES:
        raise InputError(f"object key longer than {MAX_KEY_BYTES} bytes")
    for segment in key.split("/"):
        if not _SEGMENT.fullmatch(segment):
            raise InputError(f"object key {key!r} has an unsafe segment {segment!r}")
    return key


def listed_key(key: str) -> str:
    """A key a listing found, refused when the vault could never have written it.

    Every key the vault writes passes `validate_key`: another name in the store (a space,
    ``<``, a letter outside ASCII) was planted there by someone with access to it.

    Raises:
        IntegrityError: not a name the vault writes.
    """
    try:
        return validate_key(key)
    except InputError:
        raise IntegrityError(
            f"the store holds an object named {key!r}, a name the vault never writes "
            "(planted); remove it"
        ) from None


class ObjectTooLargeError(IntegrityError):
    """An object asked for whole is larger than `MAX_WHOLE_OBJECT_BYTES`: never the vault's.

    Tampering (exit 4) where the object must be the vault's; junk to replace where a
    writer finds it at a key it is about to write (the log's next tiles and history).
    """


def too_large_to_read_whole(key: str, size: int) -> ObjectTooLargeError:
    """The error for an object larger than `MAX_WHOLE_OBJECT_BYTES` asked for whole."""
    return ObjectTooLargeError(
        f"object {key} is {size} bytes, more than any object the vault reads whole "
        f"({MAX_WHOLE_OBJECT_BYTES >> 20} MiB): not what the vault wrote"
    )


@runtime_checkable
class ObjectStore(Protocol):
    """Write-once-friendly object storage with conditional writes."""

    @property
    def url(self) -> str:
        """Where the store lives, e.g. ``file:///srv/vault/objects`` or ``s3://bucket/prefix``."""
        ...

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        """Create `key` with `data` unless it exists.

        Raises:
            ObjectExistsError: the key already exists (another writer won).
            BackendError: the store is unavailable or refused the write.
        """
        ...

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> ObjectInfo:
        """Replace `key` only if its current etag is `etag` (``None``: only if absent).

        Raises:
            PreconditionFailedError: the object changed (or exists, for ``None``).
            BackendError: the store is unavailable or refused the write.
        """
        ...

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Create `key` from a stream of chunks, with bounded memory, unless it exists.

        The object becomes visible only once complete; on any failure nothing is left.

        Raises:
            ObjectExistsError: the key already exists.
            BackendError: the store is unavailable or refused the write.
        """
        ...

    def get(self, key: str) -> bytes:
        """Return the whole object.

        Raises:
            NotFoundError: no such object.
            IntegrityError: larger than `MAX_WHOLE_OBJECT_BYTES` (never read into memory).
        """
        ...

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """Return the whole object and its etag, read consistently (for compare-and-swap).

        Raises:
            NotFoundError: no such object.
            IntegrityError: larger than `MAX_WHOLE_OBJECT_BYTES` (never read into memory).
        """
        ...

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to `length` bytes from offset `start`."""
        ...

    def open_stream(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the object in chunks, with bounded memory."""
        ...

    def head(self, key: str) -> ObjectInfo:
        """Return size and etag without reading the object.

        Raises:
            NotFoundError: no such object.
        """
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with `prefix`, in lexicographic key order."""
        ...

    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error."""
        ...


@runtime_checkable
class FolderMarkers(Protocol):
    """A store where a name can stand as a folder with no object of its own in it.

    Anyone who can write an S3 bucket can put `key/` (a "directory marker"): on SeaweedFS
    `key` then exists as a folder, so the vault's conditional write of `key` is refused
    while nothing can be read there (listings skip markers). In a filesystem store a
    symlink at `key` to a folder does the same, and what is under it is another folder's.
    """

    def remove_folder_marker(self, key: str) -> bool:
        """Remove the marker (or link) at `key`, never an object; whether there was one."""
        ...


@runtime_checkable
class UnfinishedUploads(Protocol):
    """A store whose streamed writes can outlive a crash unseen (S3 multipart uploads).

    A writer killed mid-upload never completes or aborts it: no object appears, yet the
    parts stay stored (and billed) until someone aborts the upload.
    """

    def unfinished_uploads(self, before: datetime) -> list[tuple[str, str]]:
        """Uploads begun before `before` and never completed or aborted: (key, upload id)."""
        ...

    def abort_unfinished(self, key: str, upload_id: str) -> None:
        """Abort one of them; its parts are removed (one already gone is not an error)."""
        ...


def remove_planted_under(store: ObjectStore, key: str) -> list[str]:
    """Remove the objects under `key`/ of a key the vault writes as an object; their keys.

    No object of the vault has objects under it: in a store with directories (a
    filesystem, SeaweedFS) `key/x` makes `key` a directory that exists but holds no
    object, so writing `key` could neither succeed nor find what is there. The
    directories left behind (SeaweedFS keeps them) are removed too, deepest first: no
    object is at `key` or between it and what was planted, so deleting those keys
    removes only directories. (A filesystem store removes empty directories where it
    creates an object instead.)
    """
    marked = isinstance(store, FolderMarkers) and store.remove_folder_marker(key)
    planted = [info.key for info in store.list(f"{key}/")]
    for found in planted:
        store.delete(found)
    folders = {
        "/".join(found.split("/")[:depth])
        for found in planted
        for depth in range(key.count("/") + 1, found.count("/") + 1)
    }
    for folder in sorted(folders, key=lambda f: f.count("/"), reverse=True):
        try:
            store.delete(folder)
        except (NotFoundError, IntegrityError):  # a directory: a filesystem store's own
            continue
    if marked:
        planted.append(f"{key}/")  # the folder marker (or link) itself
    return planted
