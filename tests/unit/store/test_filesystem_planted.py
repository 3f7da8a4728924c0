"""Filesystem store: an object too large to be the vault's is refused before it is read.

Objects the vault reads whole (log tiles, checkpoints, claims, wrapped keys, policy sets)
are small; a planted sparse file of gigabytes costs an attacker nothing and used to be
read into memory (MemoryError, exit 1, or the OOM killer).
"""

from __future__ import annotations

import os
import tracemalloc

import pytest

from pcii_vault.errors import IntegrityError
from pcii_vault.store.filesystem import FilesystemStore

MAX_WHOLE_OBJECT_BYTES = 64 << 20  # store.base.MAX_WHOLE_OBJECT_BYTES
HUGE = 4 * MAX_WHOLE_OBJECT_BYTES  # sparse: no disk space, 256 MiB if read


def _plant_sparse(store: FilesystemStore, key: str, size: int) -> None:
    path = store.root / key
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        stream.truncate(size)


@pytest.mark.parametrize("key", ["log/checkpoint", "wrapped/PCII-2026-00000001"])
def test_a_huge_planted_object_is_integrity_error_and_never_read(
    fs_store: FilesystemStore, key: str
) -> None:
    _plant_sparse(fs_store, key, HUGE)
    tracemalloc.start()
    try:
        with pytest.raises(IntegrityError, match="more than any object"):
            fs_store.get(key)
        with pytest.raises(IntegrityError):
            fs_store.get_with_etag(key)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MAX_WHOLE_OBJECT_BYTES // 4


def test_the_limit_itself_is_accepted_and_large_records_still_stream(
    fs_store: FilesystemStore,
) -> None:
    data = os.urandom(1024)
    fs_store.put_if_absent("log/checkpoint", data)
    assert fs_store.get("log/checkpoint") == data
    _plant_sparse(fs_store, "records/PCII-2026-00000001/document", MAX_WHOLE_OBJECT_BYTES + 1)
    streamed = sum(
        len(chunk) for chunk in fs_store.open_stream("records/PCII-2026-00000001/document")
    )
    assert streamed == MAX_WHOLE_OBJECT_BYTES + 1


def test_the_documented_limit() -> None:
    from pcii_vault.store import base

    assert base.MAX_WHOLE_OBJECT_BYTES == MAX_WHOLE_OBJECT_BYTES
    assert issubclass(base.ObjectTooLargeError, IntegrityError)


def test_a_huge_planted_object_is_listed_without_being_read(fs_store: FilesystemStore) -> None:
    """A tester's finding: a 6 GiB sparse file at the newest entries tile made `audit
    verify` hash all of it (3 minutes) before refusing it; a terabyte, for hours."""
    _plant_sparse(fs_store, "log/tile/entries/000.p/29", 1 << 40)
    [info] = fs_store.list("log/")
    assert info.size == 1 << 40 and info.etag.startswith("unhashed-")
    assert fs_store.head("log/tile/entries/000.p/29").etag == info.etag
    fs_store.put_if_absent("log/checkpoint", b"small")
    assert len(fs_store.head("log/checkpoint").etag) == 64  # a hash, as before
