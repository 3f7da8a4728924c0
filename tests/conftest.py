"""Shared fixtures: stores on a temp directory and on a real SeaweedFS server.

- `fs_store`: a FilesystemStore in the test's tmp_path.
- `seaweed`: one SeaweedFS server (S3 gateway on 127.0.0.1) for the whole session,
  started on first use and stopped by PID at the end; exposes `endpoint_url`,
  `access_key`, `secret_key`, `region` and `client()`.
- `s3_bucket` / `s3_store`: a fresh bucket per test, and an S3Store on it
  (`seaweed.s3_store(bucket, prefix, **options)` builds more; `seaweed.client()` gives
  a raw boto3 client; `new_bucket_name()` from tests/seaweed.py a unique one).
- `any_store`: the same test on both stores; the S3 case carries the `s3` marker.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from seaweed import SeaweedServer, new_bucket_name, start_seaweed

from pcii_vault.store.filesystem import FilesystemStore
from pcii_vault.store.s3 import S3Store

# SoftHSM2, OpenBao and the KMS emulator for the key-provider tests.
pytest_plugins = ["key_fixtures"]


@pytest.fixture
def fs_store(tmp_path: Path) -> FilesystemStore:
    """A FilesystemStore rooted in the test's temporary directory."""
    return FilesystemStore(tmp_path / "objects")


@pytest.fixture(scope="session")
def seaweed() -> Iterator[SeaweedServer]:
    """A running SeaweedFS server for the session (started lazily, stopped by PID)."""
    server = start_seaweed()
    try:
        yield server
    finally:
        server.stop()


def _drop_bucket(client: Any, bucket: str) -> None:
    """Best-effort removal of a test bucket (SeaweedFS deletes non-empty buckets)."""
    with contextlib.suppress(Exception):
        client.delete_bucket(Bucket=bucket)


@pytest.fixture
def s3_bucket(seaweed: SeaweedServer) -> Iterator[str]:
    """A fresh, empty bucket on the session's SeaweedFS server, removed afterwards."""
    client = seaweed.client()
    bucket = new_bucket_name()
    client.create_bucket(Bucket=bucket)
    yield bucket
    _drop_bucket(client, bucket)


@pytest.fixture
def s3_store(seaweed: SeaweedServer, s3_bucket: str) -> S3Store:
    """An S3Store on a fresh bucket of the session's SeaweedFS server."""
    return seaweed.s3_store(s3_bucket)


@pytest.fixture(params=["fs", pytest.param("s3", marks=pytest.mark.s3)])
def any_store(request: pytest.FixtureRequest) -> FilesystemStore | S3Store:
    """Each store implementation in turn: the conformance suite runs on both."""
    if request.param == "fs":
        store: FilesystemStore | S3Store = request.getfixturevalue("fs_store")
    else:
        store = request.getfixturevalue("s3_store")
    return store
