"""The conformance probe passes on conforming stores and refuses broken ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcii_vault.errors import ConfigError
from pcii_vault.store.base import ObjectInfo, ObjectStore
from pcii_vault.store.filesystem import FilesystemStore
from pcii_vault.store.probe import check_store


def test_probe_passes_and_cleans_up(any_store: ObjectStore) -> None:
    any_store.put_if_absent("log/checkpoint", b"existing vault data")
    results = check_store(any_store, nonce="p1")
    assert all(result.passed is not False for result in results)
    assert {result.check for result in results} >= {
        "put_if_absent refuses an existing key",
        "put_if_match refuses a stale etag",
        "wrong checksum refused",
        "ranged get",
        "list by prefix in key order",
        "delete is idempotent",
    }
    assert [info.key for info in any_store.list()] == ["log/checkpoint"]


def test_probe_marks_checksums_not_applicable_on_filesystem(fs_store: FilesystemStore) -> None:
    results = {result.check: result for result in check_store(fs_store)}
    assert results["wrong checksum refused"].passed is None


@pytest.mark.s3
def test_probe_verifies_checksums_on_s3(s3_store: ObjectStore) -> None:
    results = {result.check: result for result in check_store(s3_store)}
    assert results["wrong checksum refused"].passed is True


class _LastWriterWinsStore(FilesystemStore):
    """A store that ignores put_if_absent's condition, like a plain S3 PUT would."""

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        self.delete(key)
        return super().put_if_absent(key, data)


class _BlindSwapStore(FilesystemStore):
    """A store whose put_if_match ignores the etag."""

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> ObjectInfo:
        self.delete(key)
        return super().put_if_absent(key, data)


class _UncheckedStore(FilesystemStore):
    """A store whose server accepts bytes with a wrong checksum."""

    def check_checksum_enforcement(self, key: str) -> None:
        raise ConfigError(f"store {self.url} accepted a put with a wrong SHA-256 checksum")


@pytest.mark.parametrize("store_type", [_LastWriterWinsStore, _BlindSwapStore])
def test_probe_refuses_a_store_without_conditional_writes(
    tmp_path: Path, store_type: type[FilesystemStore]
) -> None:
    store = store_type(tmp_path / "objects")
    with pytest.raises(ConfigError, match="does not honour conditional writes; refusing"):
        check_store(store)
    assert list(store.list()) == []


def test_probe_refuses_a_store_that_accepts_wrong_checksums(tmp_path: Path) -> None:
    store = _UncheckedStore(tmp_path / "objects")
    with pytest.raises(ConfigError, match="wrong checksum refused"):
        check_store(store)
    assert list(store.list()) == []
