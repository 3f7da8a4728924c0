"""S3Store against a real SeaweedFS: checksums, credentials, reachability, Object Lock."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from seaweed import SeaweedServer, new_bucket_name

from pcii_vault.errors import (
    BackendError,
    ConfigError,
    IntegrityError,
    NotFoundError,
    ObjectExistsError,
)
from pcii_vault.store import open_store
from pcii_vault.store.s3 import S3Store

pytestmark = pytest.mark.s3
MiB = 1 << 20


def _corrupt_body_after_checksum(request: Any, **_: Any) -> None:
    """Flip the first byte on the wire, after our checksum header was computed."""
    body = request.body
    data = body if isinstance(body, bytes) else body.read()
    request.data = bytes([data[0] ^ 1]) + data[1:]


def test_bytes_changed_in_transit_are_refused(s3_store: S3Store) -> None:
    s3_store.client.meta.events.register("before-sign.s3.PutObject", _corrupt_body_after_checksum)
    try:
        with pytest.raises(IntegrityError):
            s3_store.put_if_absent("records/r/document", b"the real bytes")
    finally:
        s3_store.client.meta.events.unregister(
            "before-sign.s3.PutObject", _corrupt_body_after_checksum
        )
    with pytest.raises(NotFoundError):
        s3_store.head("records/r/document")


def test_multipart_part_changed_in_transit_is_refused_and_aborted(s3_store: S3Store) -> None:
    s3_store.client.meta.events.register("before-sign.s3.UploadPart", _corrupt_body_after_checksum)
    try:
        with pytest.raises(IntegrityError):
            s3_store.put_stream("records/r/files/0", [b"x" * (17 * MiB)])
    finally:
        s3_store.client.meta.events.unregister(
            "before-sign.s3.UploadPart", _corrupt_body_after_checksum
        )
    with pytest.raises(NotFoundError):
        s3_store.head("records/r/files/0")
    uploads = s3_store.client.list_multipart_uploads(Bucket=s3_store.bucket)
    assert uploads.get("Uploads", []) == []


def test_server_refuses_a_wrong_checksum(s3_store: S3Store) -> None:
    s3_store.check_checksum_enforcement("probe/x")
    with pytest.raises(NotFoundError):
        s3_store.head("probe/x")


def test_losing_multipart_upload_never_overwrites_the_winner(
    s3_store: S3Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Completion is conditional: a writer that passed the early check still loses."""
    s3_store.put_if_absent("records/r/files/0", b"winner")

    def looks_absent(key: str) -> None:
        raise NotFoundError(key)

    monkeypatch.setattr(s3_store, "head", looks_absent)
    with pytest.raises(ObjectExistsError):
        s3_store.put_stream("records/r/files/0", [b"l" * (17 * MiB)])
    monkeypatch.undo()
    assert s3_store.get("records/r/files/0") == b"winner"
    uploads = s3_store.client.list_multipart_uploads(Bucket=s3_store.bucket)
    assert uploads.get("Uploads", []) == []


def test_wrong_credentials_are_a_one_line_config_error(
    seaweed: SeaweedServer, s3_bucket: str
) -> None:
    store = S3Store(
        s3_bucket,
        endpoint_url=seaweed.endpoint_url,
        region_name=seaweed.region,
        access_key_id=seaweed.access_key,
        secret_access_key="not-the-secret",  # noqa: S106 -- a deliberately wrong secret
    )
    with pytest.raises(ConfigError) as caught:
        store.put_if_absent("log/x", b"x")
    message = caught.value.diagnostics()
    assert seaweed.endpoint_url in message
    assert "\n" not in str(caught.value)
    assert "not-the-secret" not in message


def test_missing_bucket_is_a_config_error(seaweed: SeaweedServer) -> None:
    store = seaweed.s3_store(new_bucket_name())
    with pytest.raises(ConfigError, match="does not exist"):
        store.put_if_absent("log/x", b"x")


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_endpoint_is_a_backend_error_naming_it() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    store = S3Store(
        "some-bucket",
        endpoint_url=endpoint,
        region_name="us-east-1",
        access_key_id="AKIDEXAMPLE",
        secret_access_key="secret",  # noqa: S106 -- never reaches a server
        max_attempts=2,
        connect_timeout=1,
    )
    with pytest.raises(BackendError) as caught:
        store.get("log/checkpoint")
    assert endpoint in str(caught.value)
    assert "unreachable" in str(caught.value)


def test_standard_configuration_and_prefix(
    seaweed: SeaweedServer, s3_bucket: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_store("s3://...") honours AWS_ENDPOINT_URL_S3 and keeps keys under the prefix."""
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", seaweed.endpoint_url)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed.secret_key)
    monkeypatch.setenv("AWS_DEFAULT_REGION", seaweed.region)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    store = open_store(f"s3://{s3_bucket}/vaults/one", root_for_file=tmp_path)
    store.put_if_absent("log/checkpoint", b"c")
    raw = seaweed.client().list_objects_v2(Bucket=s3_bucket)
    assert [item["Key"] for item in raw["Contents"]] == ["vaults/one/log/checkpoint"]
    assert [info.key for info in store.list()] == ["log/checkpoint"]


@pytest.fixture
def lock_bucket(seaweed: SeaweedServer) -> str:
    bucket = new_bucket_name()
    seaweed.client().create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=True)
    return bucket


def _retention(seaweed: SeaweedServer, bucket: str, key: str) -> dict[str, Any] | None:
    client = seaweed.client()
    try:
        answer = client.get_object_retention(Bucket=bucket, Key=key)
    except client.exceptions.ClientError as exc:
        if exc.response["ResponseMetadata"]["HTTPStatusCode"] in {400, 404}:
            return None
        raise
    retention = answer.get("Retention")
    return dict(retention) if retention else None


def test_object_lock_retains_log_and_records_but_not_wrapped_or_claims(
    seaweed: SeaweedServer, lock_bucket: str
) -> None:
    # The server refuses a retention date in the past: a clock at the real time (whole
    # seconds, as the server stores them), not a fixed date that the calendar overtakes.
    now = datetime.now(UTC).replace(microsecond=0)
    store = seaweed.s3_store(
        lock_bucket, retention_mode="GOVERNANCE", retention_days=2, clock=lambda: now
    )
    assert store.object_lock_enabled()
    store.put_if_absent("log/tile/0/000", b"tile")
    store.put_if_absent("records/r1/document", b"doc")
    store.put_stream("records/r1/files/0", [b"f" * (9 * MiB)])
    store.put_if_absent("wrapped/r1", b"wrapped key")
    store.put_if_absent("log/claims/0", b"claim")
    for key in ("log/tile/0/000", "records/r1/document", "records/r1/files/0"):
        retention = _retention(seaweed, lock_bucket, key)
        assert retention is not None, key
        assert retention["Mode"] == "GOVERNANCE"
        assert retention["RetainUntilDate"] == now + timedelta(days=2)
    for key in ("wrapped/r1", "log/claims/0"):
        assert _retention(seaweed, lock_bucket, key) is None, key


def test_deleting_a_wrapped_key_on_a_versioned_bucket_leaves_no_version(
    seaweed: SeaweedServer, lock_bucket: str
) -> None:
    """Crypto-shredding: no older version of a wrapped key survives its deletion."""
    store = seaweed.s3_store(lock_bucket, retention_days=1)
    first = store.put_if_absent("wrapped/r1", b"wrapped under KEK 1")
    store.put_if_match("wrapped/r1", b"wrapped under KEK 2", first.etag)
    store.delete("wrapped/r1")
    versions = seaweed.client().list_object_versions(Bucket=lock_bucket, Prefix="wrapped/")
    assert versions.get("Versions", []) == []
    assert versions.get("DeleteMarkers", []) == []
    with pytest.raises(NotFoundError):
        store.get("wrapped/r1")


def test_bucket_default_retention_is_refused(seaweed: SeaweedServer, lock_bucket: str) -> None:
    seaweed.client().put_object_lock_configuration(
        Bucket=lock_bucket,
        ObjectLockConfiguration={
            "ObjectLockEnabled": "Enabled",
            "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}},
        },
    )
    store = seaweed.s3_store(lock_bucket)
    with pytest.raises(ConfigError, match="default Object Lock retention"):
        store.put_if_absent("records/r1/document", b"doc")
