"""The vault checks a document's declared and actual size before holding it in memory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pcii_vault.core.objects import _read_document
from pcii_vault.crypto.envelope import ObjectContext, seal_object
from pcii_vault.errors import IntegrityError
from pcii_vault.store.filesystem import FilesystemStore
from pcii_vault.submitter import MAX_DOCUMENT_BYTES

DEK = bytes(range(32))
CTX = ObjectContext("vault-1", "PCII-2026-00000001", "document")
KEY = "records/PCII-2026-00000001/document"


def _store(tmp_path: Path, plaintext: bytes) -> FilesystemStore:
    store = FilesystemStore(tmp_path)
    chunks = (plaintext[i : i + 65536] for i in range(0, len(plaintext), 65536))
    store.put_stream(KEY, seal_object(DEK, CTX, chunks, kek_version=1))
    return store


def _files(size: object) -> list[dict[str, object]]:
    return [{"object": "document", "name": "document.json", "size": size}]


def test_a_document_of_its_declared_size_is_read(tmp_path: Path) -> None:
    store = _store(tmp_path, b"{}")
    assert _read_document(store, DEK, CTX, _files(2)) == b"{}"


@pytest.mark.parametrize("declared", [None, -1, "2", MAX_DOCUMENT_BYTES + 1])
def test_a_declared_size_out_of_bounds_is_refused_before_decrypting(
    tmp_path: Path, declared: object
) -> None:
    store = _store(tmp_path, b"{}")
    with pytest.raises(IntegrityError, match="declared size"):
        _read_document(store, DEK, CTX, _files(declared))


def test_a_stored_object_over_the_limit_is_refused_while_it_streams(tmp_path: Path) -> None:
    store = _store(tmp_path, os.urandom(MAX_DOCUMENT_BYTES + 256 * 1024))
    with pytest.raises(IntegrityError, match=r"too large|larger than its declared size"):
        _read_document(store, DEK, CTX, _files(100))
    # Declared at the limit, the stored bytes are the first to run over it.
    with pytest.raises(IntegrityError, match="too large"):
        _read_document(store, DEK, CTX, _files(MAX_DOCUMENT_BYTES))


def test_a_document_larger_than_declared_stops_at_the_first_excess(tmp_path: Path) -> None:
    store = _store(tmp_path, b"x" * 100_000)
    with pytest.raises(IntegrityError, match="larger than its declared size"):
        _read_document(store, DEK, CTX, _files(10))


def test_a_document_smaller_than_declared_is_refused(tmp_path: Path) -> None:
    store = _store(tmp_path, b"{}")
    with pytest.raises(IntegrityError, match="smaller than its declared size"):
        _read_document(store, DEK, CTX, _files(3))
