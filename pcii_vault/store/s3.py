"""S3Store: the ObjectStore over S3 and S3-compatible servers (boto3).

Invariants:
- every key passes `validate_key`; the store prefix is validated once, so no key can
  name an object outside ``s3://bucket/prefix/``;
- conditional writes are the server's: put_if_absent sends ``If-None-Match: *``,
  put_if_match sends ``If-Match: <etag>``; a multipart upload is completed with
  ``If-None-Match: *``, so a racing loser never overwrites the winner;
- every put carries ``x-amz-checksum-sha256`` of our own SHA-256 of the bytes (each
  multipart part its own), so the server refuses bytes that changed on the way;
- a failed multipart upload is aborted: nothing becomes visible, no parts linger;
- when the bucket has Object Lock, objects under ``log/``, ``records/`` and ``policysets/``
  are written
  with retention; ``wrapped/`` (crypto-shredding must be able to delete them) and
  ``log/claims/`` (short-lived) never are, and a bucket default retention, which would
  lock them anyway, is refused;
- on a versioned bucket, deleting an unretained key removes every version of it, so a
  deleted wrapped key leaves no recoverable copy;
- every botocore failure becomes one `VaultError` with a one-line message naming the
  endpoint; connect timeouts and retries are short so an unreachable store fails fast.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    FlexibleChecksumError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
)
from botocore.exceptions import (
    ConnectTimeoutError as BotoConnectTimeoutError,
)

from pcii_vault.errors import (
    BackendError,
    ConfigError,
    InputError,
    IntegrityError,
    NotFoundError,
    ObjectExistsError,
    PreconditionFailedError,
    VaultError,
)
from pcii_vault.store.base import (
    MAX_WHOLE_OBJECT_BYTES,
    ObjectInfo,
    listed_key,
    too_large_to_read_whole,
    validate_key,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

__all__ = ["MIN_PART_SIZE", "RetentionMode", "S3Store"]

MIN_PART_SIZE = 8 << 20
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
RetentionMode = Literal["COMPLIANCE", "GOVERNANCE"]

# Write-once prefixes that get Object Lock retention, and the exceptions that never do.
_RETAINED_PREFIXES = ("log/", "records/", "policysets/")
_NEVER_RETAINED_PREFIXES = ("log/claims/", "wrapped/")

_CONFLICT_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NotFound", "404", "NoSuchVersion"})
_INTEGRITY_CODES = frozenset(
    {"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "XAmzContentChecksumMismatch"}
)
_CREDENTIAL_CODES = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidToken", "403"}
)


# (key, upload id) of multipart uploads never completed (`list` is a method in the class).
_Unfinished = list[tuple[str, str]]


def _default_clock() -> datetime:
    return datetime.now(UTC)


def _client_config(connect_timeout: float, read_timeout: float, max_attempts: int) -> Config:
    return Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": max_attempts, "mode": "standard"},
        # We send our own SHA-256 on every put; no second checksum computed by botocore.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_supported",
        max_pool_connections=32,
    )


class S3Store:
    """An ObjectStore over one S3 bucket and key prefix.

    Args:
        bucket: the bucket name.
        prefix: a key prefix inside the bucket ("" or segments like ``vault/one``).
        client: a ready boto3 S3 client; built from the standard AWS configuration
            (profile, environment, ``AWS_ENDPOINT_URL_S3``) when omitted.
        endpoint_url: an explicit endpoint for S3-compatible servers (client built here).
        profile_name: an AWS profile for the client built here.
        region_name: a region for the client built here.
        access_key_id: explicit credentials for the client built here (else the
            standard chain: environment, profile, instance role).
        secret_access_key: the secret matching `access_key_id`.
        retention_mode: Object Lock mode for write-once prefixes.
        retention_days: Object Lock retention period for write-once prefixes.
        part_size: multipart part size for `put_stream` (at least 8 MiB).
        max_concurrency: parts uploaded in parallel by `put_stream` (memory is bounded
            by ``(max_concurrency + 1) * part_size``).
        connect_timeout: seconds to wait for a TCP connection.
        read_timeout: seconds to wait for a response.
        max_attempts: total attempts per request (botocore standard retries).
        clock: returns the current time (for retention dates).
    """

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        client: S3Client | None = None,
        endpoint_url: str | None = None,
        profile_name: str | None = None,
        region_name: str | None = None,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        retention_mode: RetentionMode = "COMPLIANCE",
        retention_days: int = 3650,
        part_size: int = MIN_PART_SIZE,
        max_concurrency: int = 4,
        connect_timeout: float = 3.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        clock: Callable[[], datetime] = _default_clock,
    ) -> None:
        if not _BUCKET.fullmatch(bucket):
            raise ConfigError(f"S3 bucket name {bucket!r} is not valid")
        prefix = prefix.strip("/")
        if prefix:
            try:
                validate_key(prefix)
            except InputError as exc:
                raise ConfigError(f"S3 key prefix {prefix!r} is not valid: {exc}") from None
        if part_size < MIN_PART_SIZE:
            raise ValueError(f"part_size must be at least {MIN_PART_SIZE} bytes")
        if retention_days < 1 or max_concurrency < 1:
            raise ValueError("retention_days and max_concurrency must be positive")
        if client is None:
            try:
                session = boto3.session.Session(
                    profile_name=profile_name,
                    aws_access_key_id=access_key_id,
                    aws_secret_access_key=secret_access_key,
                )
            except BotoCoreError as exc:
                raise ConfigError(f"AWS configuration error: {exc}") from exc
            client = session.client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region_name,
                config=_client_config(connect_timeout, read_timeout, max_attempts),
            )
        self._client = client
        self._bucket = bucket
        self._prefix = f"{prefix}/" if prefix else ""
        self._retention_mode: RetentionMode = retention_mode
        self._retention_days = retention_days
        self._part_size = part_size
        self._max_concurrency = max_concurrency
        self._clock = clock
        self._bucket_state_lock = threading.Lock()
        self._object_lock: bool | None = None
        self._versioned: bool | None = None

    # -- identity --------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The store location, ``s3://bucket[/prefix]``."""
        return f"s3://{self._bucket}/{self._prefix}".rstrip("/")

    @property
    def bucket(self) -> str:
        """The bucket name."""
        return self._bucket

    @property
    def endpoint(self) -> str:
        """The endpoint the client talks to."""
        return str(self._client.meta.endpoint_url)

    @property
    def client(self) -> S3Client:
        """The underlying boto3 client (for probes and tests)."""
        return self._client

    def _full(self, key: str) -> str:
        return self._prefix + validate_key(key)

    # -- bucket capabilities -----------------------------------------------------------

    def object_lock_enabled(self) -> bool:
        """Return whether the bucket has Object Lock enabled (asked once, then cached).

        Raises:
            ConfigError: the bucket has a default retention rule, which would also lock
                wrapped keys and claims that must stay deletable.
            BackendError: the store is unavailable.
        """
        with self._bucket_state_lock:
            if self._object_lock is None:
                self._object_lock = self._read_object_lock()
            return self._object_lock

    def _read_object_lock(self) -> bool:
        try:
            answer = self._client.get_object_lock_configuration(Bucket=self._bucket)
        except ClientError as exc:
            code = _error_code(exc)
            if code in {"ObjectLockConfigurationNotFoundError", "NoSuchObjectLockConfiguration"}:
                return False
            if code == "NotImplemented" or _status(exc) == 501:
                return False
            raise self._map(exc, "get object lock configuration of", "") from exc
        except BotoCoreError as exc:
            raise self._map(exc, "get object lock configuration of", "") from exc
        config = answer.get("ObjectLockConfiguration", {})
        if config.get("ObjectLockEnabled") != "Enabled":
            return False
        if config.get("Rule", {}).get("DefaultRetention"):
            raise ConfigError(
                f"bucket {self._bucket} has a default Object Lock retention, which would lock "
                "wrapped keys and claims; remove the default rule (the vault sets retention "
                "per object)"
            )
        return True

    def _versioning_on(self) -> bool:
        with self._bucket_state_lock:
            if self._versioned is None:
                try:
                    answer = self._client.get_bucket_versioning(Bucket=self._bucket)
                except (ClientError, BotoCoreError) as exc:
                    raise self._map(exc, "get versioning of", "") from exc
                self._versioned = answer.get("Status") in {"Enabled", "Suspended"}
            return self._versioned

    def _retention_args(self, key: str) -> dict[str, Any]:
        """Object Lock arguments for `key`: retention on write-once prefixes only."""
        if not key.startswith(_RETAINED_PREFIXES) or key.startswith(_NEVER_RETAINED_PREFIXES):
            return {}
        if not self.object_lock_enabled():
            return {}
        until = self._clock() + timedelta(days=self._retention_days)
        return {"ObjectLockMode": self._retention_mode, "ObjectLockRetainUntilDate": until}

    # -- writes ----------------------------------------------------------------------

    def _put(self, key: str, data: bytes, conditions: dict[str, str]) -> ObjectInfo:
        full = self._full(key)
        checksum = base64.b64encode(hashlib.sha256(data).digest()).decode()
        try:
            answer = self._client.put_object(
                Bucket=self._bucket,
                Key=full,
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
                **conditions,  # type: ignore[arg-type]
                **self._retention_args(key),
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, "write", key, conditional=bool(conditions)) from exc
        return ObjectInfo(key=key, size=len(data), etag=_etag(answer.get("ETag", "")))

    def put_if_absent(self, key: str, data: bytes) -> ObjectInfo:
        """Create `key` with `data` unless it exists (``If-None-Match: *``).

        Raises:
            InputError: the key is unsafe.
            ObjectExistsError: the key already exists.
            IntegrityError: the server received different bytes than we sent.
            BackendError: the store is unavailable or refused the write.
        """
        try:
            return self._put(key, data, {"IfNoneMatch": "*"})
        except PreconditionFailedError:
            raise ObjectExistsError(f"object {key} already exists in {self.url}") from None

    def put_if_match(self, key: str, data: bytes, etag: str | None) -> ObjectInfo:
        """Replace `key` only if its current etag is `etag` (``None``: only if absent).

        Raises:
            InputError: the key is unsafe.
            PreconditionFailedError: the object changed, is missing, or exists for ``None``.
            IntegrityError: the server received different bytes than we sent.
            BackendError: the store is unavailable or refused the write.
        """
        if etag is None:
            return self._put(key, data, {"IfNoneMatch": "*"})
        try:
            return self._put(key, data, {"IfMatch": f'"{etag}"'})
        except NotFoundError:
            raise PreconditionFailedError(f"object {key} no longer exists in {self.url}") from None

    def put_stream(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Create `key` from `chunks` with bounded memory, visible only once complete.

        Streams shorter than one part are sent as one conditional put; longer ones as a
        multipart upload whose parts each carry their SHA-256 and whose completion is
        conditional on the key being absent. An exception raised by `chunks` propagates
        unchanged after the upload is aborted.

        Raises:
            InputError: the key is unsafe.
            ObjectExistsError: the key already exists.
            IntegrityError: the server received different bytes than we sent.
            BackendError: the store is unavailable or refused the write.
        """
        full = self._full(key)
        with contextlib.suppress(NotFoundError):
            self.head(key)
            # Fail fast before consuming a possibly large stream; completion still decides.
            raise ObjectExistsError(f"object {key} already exists in {self.url}")
        parts = _parts(chunks, self._part_size)
        first = next(parts, b"")
        second = next(parts, None)
        if second is None:
            return self.put_if_absent(key, first)
        try:
            created = self._client.create_multipart_upload(
                Bucket=self._bucket,
                Key=full,
                ChecksumAlgorithm="SHA256",
                **self._retention_args(key),
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, "start upload of", key) from exc
        upload_id = created["UploadId"]
        try:
            return self._upload_parts(key, full, upload_id, _chain(first, second, parts))
        except BaseException:
            with contextlib.suppress(ClientError, BotoCoreError):
                self._client.abort_multipart_upload(
                    Bucket=self._bucket, Key=full, UploadId=upload_id
                )
            raise

    def _upload_parts(
        self, key: str, full: str, upload_id: str, parts: Iterator[bytes]
    ) -> ObjectInfo:
        """Upload `parts` with bounded concurrency, then complete conditionally."""
        size = 0
        pending: set[Future[CompletedPartTypeDef]] = set()
        done: list[CompletedPartTypeDef] = []
        with ThreadPoolExecutor(self._max_concurrency, thread_name_prefix="s3-part") as pool:
            try:
                for number, part in enumerate(parts, start=1):
                    size += len(part)
                    pending.add(pool.submit(self._upload_part, key, full, upload_id, number, part))
                    # Bound memory: at most max_concurrency parts in flight plus one being
                    # read; the next part is read as soon as any upload finishes.
                    if len(pending) >= self._max_concurrency:
                        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                        done.extend(future.result() for future in finished)
                finished, pending = wait(pending)
                done.extend(future.result() for future in finished)
            finally:
                for future in pending:
                    future.cancel()
        done.sort(key=lambda completed: completed["PartNumber"])
        try:
            answer = self._client.complete_multipart_upload(
                Bucket=self._bucket,
                Key=full,
                UploadId=upload_id,
                MultipartUpload={"Parts": done},
                IfNoneMatch="*",
            )
        except (ClientError, BotoCoreError) as exc:
            error = self._map(exc, "complete upload of", key, conditional=True)
            if isinstance(error, PreconditionFailedError):
                raise ObjectExistsError(f"object {key} already exists in {self.url}") from None
            raise error from exc
        return ObjectInfo(key=key, size=size, etag=_etag(answer.get("ETag", "")))

    def _upload_part(
        self, key: str, full: str, upload_id: str, number: int, part: bytes
    ) -> CompletedPartTypeDef:
        checksum = base64.b64encode(hashlib.sha256(part).digest()).decode()
        try:
            answer = self._client.upload_part(
                Bucket=self._bucket,
                Key=full,
                UploadId=upload_id,
                PartNumber=number,
                Body=part,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=checksum,
            )
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, f"upload part {number} of", key) from exc
        return {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}

    def check_checksum_enforcement(self, key: str) -> None:
        """Verify that the server refuses a put whose SHA-256 checksum is wrong.

        Sends `key` with a deliberately wrong ``x-amz-checksum-sha256`` (for the
        conformance probe); if the server stores it anyway, the object is removed.

        Raises:
            ConfigError: the server accepted bytes that did not match their checksum.
            BackendError: the store is unavailable.
        """
        full = self._full(key)
        data = b"pcii-vault checksum probe"
        wrong = base64.b64encode(hashlib.sha256(data + b"!").digest()).decode()
        try:
            self._client.put_object(
                Bucket=self._bucket,
                Key=full,
                Body=data,
                ChecksumAlgorithm="SHA256",
                ChecksumSHA256=wrong,
            )
        except (ClientError, BotoCoreError) as exc:
            if isinstance(self._map(exc, "write", key), IntegrityError):
                return
            raise self._map(exc, "write", key) from exc
        self.delete(key)
        raise ConfigError(f"store {self.url} accepted a put with a wrong SHA-256 checksum")

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> bytes:
        """Return the whole object.

        Raises:
            NotFoundError: no such object.
            IntegrityError: the bytes did not match the stored checksum.
            BackendError: the store is unavailable.
        """
        return self.get_with_etag(key)[0]

    def get_with_etag(self, key: str) -> tuple[bytes, str]:
        """Return the object and its etag from one GET (one version).

        Raises:
            NotFoundError: no such object.
            IntegrityError: the bytes did not match the stored checksum, or the object is
                larger than any object the vault reads whole (refused unread).
            BackendError: the store is unavailable.
        """
        full = self._full(key)
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=full, ChecksumMode="ENABLED")
            size = int(answer.get("ContentLength", 0))
            if size > MAX_WHOLE_OBJECT_BYTES:
                answer["Body"].close()
                raise too_large_to_read_whole(key, size)
            data = answer["Body"].read()
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, "read", key) from exc
        if len(data) > MAX_WHOLE_OBJECT_BYTES:
            raise too_large_to_read_whole(key, len(data))
        return data, _etag(answer.get("ETag", ""))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return up to `length` bytes from offset `start` (empty past the end).

        Raises:
            InputError: negative offset or length.
            NotFoundError: no such object.
            BackendError: the store is unavailable.
        """
        if start < 0 or length < 0:
            raise InputError("range offset and length must not be negative")
        full = self._full(key)
        if length == 0:
            self.head(key)
            return b""
        try:
            answer = self._client.get_object(
                Bucket=self._bucket, Key=full, Range=f"bytes={start}-{start + length - 1}"
            )
            return answer["Body"].read()
        except ClientError as exc:
            if _error_code(exc) == "InvalidRange":
                self.head(key)  # distinguish "past the end" from "missing"
                return b""
            raise self._map(exc, "read", key) from exc
        except BotoCoreError as exc:
            raise self._map(exc, "read", key) from exc

    def open_stream(self, key: str, chunk_size: int = 1 << 20) -> Iterator[bytes]:
        """Yield the object in chunks; the request is made before this returns.

        Raises:
            NotFoundError: no such object.
            IntegrityError: the bytes did not match the stored checksum, or the object is
                larger than any object the vault reads whole (refused unread).
            BackendError: the store is unavailable.
        """
        full = self._full(key)
        try:
            answer = self._client.get_object(Bucket=self._bucket, Key=full, ChecksumMode="ENABLED")
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, "read", key) from exc
        return self._iter_body(answer["Body"], key, chunk_size)

    def _iter_body(self, body: Any, key: str, chunk_size: int) -> Iterator[bytes]:  # noqa: ANN401 -- botocore StreamingBody
        try:
            yield from body.iter_chunks(chunk_size)
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, "read", key) from exc
        finally:
            body.close()

    def head(self, key: str) -> ObjectInfo:
        """Return size and etag of `key`.

        Raises:
            NotFoundError: no such object.
            BackendError: the store is unavailable.
        """
        full = self._full(key)
        try:
            answer = self._client.head_object(Bucket=self._bucket, Key=full)
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, "read", key) from exc
        return ObjectInfo(key=key, size=answer["ContentLength"], etag=_etag(answer["ETag"]))

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object whose key starts with `prefix`, in lexicographic key order.

        Raises:
            InputError: the prefix contains characters no key can have.
            BackendError: the store is unavailable.
        """
        if prefix:
            validate_key(prefix.rstrip("/") + ("/x" if prefix.endswith("/") else "x"))
        paginator = self._client.get_paginator("list_objects_v2")
        infos: list[ObjectInfo] = []
        try:
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix + prefix):
                for item in page.get("Contents", []):
                    key = item["Key"][len(self._prefix) :]
                    if key.endswith("/"):
                        continue  # directory markers some servers report
                    infos.append(
                        ObjectInfo(
                            key=listed_key(key),
                            size=item["Size"],
                            etag=_etag(item["ETag"]),
                            modified=item.get("LastModified"),
                        )
                    )
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, "list", prefix) from exc
        # S3 orders by UTF-8 bytes; keys are ASCII, but sort so every server agrees.
        infos.sort(key=lambda info: info.key)
        yield from infos

    def delete(self, key: str) -> None:
        """Remove `key`; deleting a missing key is not an error.

        On a versioned bucket every version of an unretained key is removed (a deleted
        wrapped key must leave no copy); a retained key gets a delete marker.

        Raises:
            InputError: the key is unsafe.
            BackendError: the store is unavailable or refused the removal.
        """
        full = self._full(key)
        try:
            if self._versioning_on() and not self._retention_args_apply(key):
                self._delete_versions(full)
            else:
                self._client.delete_object(Bucket=self._bucket, Key=full)
        except (ClientError, BotoCoreError) as exc:
            error = self._map(exc, "delete", key)
            if isinstance(error, NotFoundError):
                return
            raise error from exc

    def remove_folder_marker(self, key: str) -> bool:
        """Remove the folder marker `key/` (never an object); whether there was one.

        Raises:
            InputError: the key is unsafe.
            BackendError: the store is unavailable or refused.
        """
        marker = self._full(key) + "/"
        try:
            listed = self._client.list_objects_v2(Bucket=self._bucket, Prefix=marker, MaxKeys=1)
            found = any(item["Key"] == marker for item in listed.get("Contents", []))
            if found:
                self._client.delete_object(Bucket=self._bucket, Key=marker)
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, "remove the folder marker at", key) from exc
        return found

    def unfinished_uploads(self, before: datetime) -> _Unfinished:
        """Multipart uploads begun before `before`, never completed or aborted: (key, id).

        Under this store's prefix, by key: what a writer killed mid-upload left.

        Raises:
            BackendError: the store is unavailable.
        """
        found: _Unfinished = []
        paginator = self._client.get_paginator("list_multipart_uploads")
        try:
            for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
                for upload in page.get("Uploads", []):
                    begun = upload.get("Initiated")
                    if isinstance(begun, datetime) and begun < before:
                        found.append((upload["Key"][len(self._prefix) :], upload["UploadId"]))
        except (ClientError, BotoCoreError) as exc:
            raise self._map(exc, "list unfinished uploads under", self._prefix) from exc
        return sorted(found)

    def abort_unfinished(self, key: str, upload_id: str) -> None:
        """Abort an unfinished multipart upload; its parts are removed.

        Raises:
            BackendError: the store is unavailable or refused.
        """
        try:
            self._client.abort_multipart_upload(
                Bucket=self._bucket, Key=self._prefix + key, UploadId=upload_id
            )
        except (ClientError, BotoCoreError) as exc:
            if isinstance(exc, ClientError) and _error_code(exc) == "NoSuchUpload":
                return  # completed or aborted meanwhile
            raise self._map(exc, "abort the unfinished upload of", key) from exc

    def _retention_args_apply(self, key: str) -> bool:
        return key.startswith(_RETAINED_PREFIXES) and not key.startswith(_NEVER_RETAINED_PREFIXES)

    def _delete_versions(self, full: str) -> None:
        paginator = self._client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=full):
            entries = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            for entry in entries:
                if entry["Key"] == full:
                    self._client.delete_object(
                        Bucket=self._bucket, Key=full, VersionId=entry["VersionId"]
                    )

    # -- errors ----------------------------------------------------------------------

    def _map(  # noqa: PLR0911 -- one return per error family reads clearer than a table
        self, exc: Exception, operation: str, key: str, *, conditional: bool = False
    ) -> VaultError:
        """Translate a botocore failure into one vault error with a one-line message."""
        where = f"{self.url} at {self.endpoint}"
        what = f"{operation} {key}".strip()
        if isinstance(exc, ClientError):
            code = _error_code(exc)
            status = _status(exc)
            if code in _CONFLICT_CODES or status == 412 or (conditional and status == 409):
                return PreconditionFailedError(f"{what}: condition failed in {where}")
            if code in _NOT_FOUND_CODES or (status == 404 and code != "NoSuchBucket"):
                return NotFoundError(f"object {key} not found in {where}")
            if code == "NoSuchBucket":
                return ConfigError(f"bucket {self._bucket} does not exist at {self.endpoint}")
            if code in _INTEGRITY_CODES:
                return IntegrityError(f"{what}: {where} refused the bytes (checksum mismatch)")
            if code in _CREDENTIAL_CODES or status == 403:
                return ConfigError(f"{what}: access denied by {where} ({code}); check credentials")
            return BackendError(f"{what}: {where} answered {code or status}")
        if isinstance(exc, FlexibleChecksumError):
            return IntegrityError(f"{what}: data from {where} failed its checksum")
        if isinstance(exc, NoCredentialsError | PartialCredentialsError):
            return ConfigError(f"no usable AWS credentials for {where}")
        if isinstance(
            exc,
            EndpointConnectionError
            | BotoConnectTimeoutError
            | ReadTimeoutError
            | ConnectionClosedError,
        ):
            return BackendError(f"S3 endpoint {self.endpoint} unreachable ({what})")
        return BackendError(f"{what}: {where} failed: {type(exc).__name__}")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _etag(raw: str) -> str:
    """S3 etags arrive quoted; the store hands them out bare."""
    return raw.strip('"')


def _parts(chunks: Iterable[bytes], part_size: int) -> Iterator[bytes]:
    """Regroup `chunks` into parts of exactly `part_size` bytes (the last may be short).

    Each byte is copied once, when its part is joined. An immutable `bytes` chunk is held
    as a view until then; any other buffer is copied at once, because its producer may
    reuse it as soon as the next piece is requested.
    """
    pending: list[memoryview] = []
    held = 0
    for chunk in chunks:
        view = memoryview(chunk if isinstance(chunk, bytes) else bytes(chunk)).cast("B")
        while held + len(view) >= part_size:
            take = part_size - held
            pending.append(view[:take])
            yield b"".join(pending)
            pending, held, view = [], 0, view[take:]
        if view:
            pending.append(view)
            held += len(view)
    if pending:
        yield b"".join(pending)


def _chain(first: bytes, second: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield second
    yield from rest
