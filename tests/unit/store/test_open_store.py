"""open_store turns a configured store URL into the right store, or refuses it."""

from __future__ import annotations

from pathlib import Path

import pytest

from pcii_vault.errors import BackendError, ConfigError
from pcii_vault.store import open_store
from pcii_vault.store.filesystem import FilesystemStore
from pcii_vault.store.s3 import S3Store


def test_bare_file_uses_the_vault_objects_directory(tmp_path: Path) -> None:
    store = open_store("file", root_for_file=tmp_path / "objects")
    assert isinstance(store, FilesystemStore)
    assert store.root == (tmp_path / "objects").resolve()


def test_file_url_with_absolute_path(tmp_path: Path) -> None:
    (tmp_path / "elsewhere").mkdir()
    store = open_store((tmp_path / "elsewhere").as_uri(), root_for_file=tmp_path / "objects")
    assert isinstance(store, FilesystemStore)
    assert store.root == (tmp_path / "elsewhere").resolve()


def test_a_missing_file_store_is_refused_not_replaced_by_an_empty_one(tmp_path: Path) -> None:
    """A moved or unmounted store directory: backend unavailable, nothing created there."""
    url = (tmp_path / "unmounted").as_uri()
    with pytest.raises(BackendError, match="not mounted"):
        open_store(url, root_for_file=tmp_path / "objects")
    assert not (tmp_path / "unmounted").exists()
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(BackendError, match="no directory"):
        open_store((tmp_path / "file").as_uri(), root_for_file=tmp_path / "objects")


def test_a_new_vault_creates_its_file_store(tmp_path: Path) -> None:
    url = (tmp_path / "new").as_uri()
    store = open_store(url, root_for_file=tmp_path / "objects", create=True)
    assert store.root == (tmp_path / "new").resolve()
    assert (tmp_path / "new").is_dir()


def test_s3_url_names_bucket_and_prefix(tmp_path: Path) -> None:
    store = open_store("s3://my-bucket/vaults/one/", root_for_file=tmp_path)
    assert isinstance(store, S3Store)
    assert store.bucket == "my-bucket"
    assert store.url == "s3://my-bucket/vaults/one"
    assert open_store("s3://my-bucket", root_for_file=tmp_path).url == "s3://my-bucket"


BAD_URLS = {
    "relative-file": "file:relative/path",
    "file-host": "file://otherhost/srv",
    "no-bucket": "s3:///prefix",
    "bad-bucket": "s3://Bad_Bucket/x",
    "bad-prefix": "s3://bucket/../x",
    "query": "s3://bucket/x?versionId=1",
    "scheme": "https://example.com/bucket",
    "empty": "",
    "nul": "file:///tmp/objects%00x",
}


@pytest.mark.parametrize("url", BAD_URLS.values(), ids=BAD_URLS.keys())
def test_malformed_urls_are_config_errors(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError):
        open_store(url, root_for_file=tmp_path)
