"""KEKs in AWS KMS (tested against moto's KMS server mode, an emulator, not AWS).

URI: `awskms:KEY-ID`, `awskms:alias/NAME` or `awskms:arn:aws:kms:...`, with the standard
AWS configuration (credentials, `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL_KMS`).

Keys:
- KEK version 1 is the named KMS key (symmetric, `ENCRYPT_DECRYPT`; `init` creates it,
  with the alias, when an alias names a key that does not exist yet); version N > 1 is a
  KMS key that `rotate` creates, found through the alias `alias/pcii-kek/<name>/vN`;
- the record context and the blob header are the KMS encryption context, so a wrong
  context or an altered header fails inside KMS;
- `rewrap` is KMS `ReEncrypt`: the data key never leaves KMS;
- retiring version N disables its KMS key, so KMS itself refuses to decrypt with it;
- KMS holds no Ed25519 signing keys: the log key stays in the sealed local keyring.

Blob: `0x02 | version (4) | provider id (8) | KMS ciphertext blob`.

Errors: an endpoint that cannot be reached or throttles is `BackendError` (exit 5); a
ciphertext KMS refuses (invalid, other key, wrong context, disabled key) is
`IntegrityError` (exit 4); a key that does not exist is `ConfigError` (exit 2).
"""

from __future__ import annotations

import base64
import os
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import boto3
import botocore.config
import botocore.exceptions
import structlog

from pcii_vault.errors import BackendError, ConfigError, InputError, IntegrityError
from pcii_vault.keys.base import (
    KekInfo,
    VersionedKek,
    external_header,
    parse_unverified_external,
)

if TYPE_CHECKING:
    from mypy_boto3_kms import KMSClient

__all__ = ["KmsKek"]

_log = structlog.get_logger(__name__)

_UNWRAP_FAILED: Final = "wrapped data key failed authentication"
_REFUSED: Final = frozenset(
    {
        "InvalidCiphertextException",
        "IncorrectKeyException",
        "DisabledException",
        "KMSInvalidStateException",
        "InvalidKeyUsageException",
    }
)
_UNAVAILABLE: Final = frozenset(
    {"DependencyTimeoutException", "KMSInternalException", "ThrottlingException"}
)
# The caller's credentials themselves refused (a key of a blob refused is `_REFUSED`).
_CREDENTIALS_REFUSED: Final = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "ExpiredTokenException",
        "InvalidClientTokenId",
    }
)
_CONFIG: Final = botocore.config.Config(
    connect_timeout=3, read_timeout=10, retries={"max_attempts": 2, "mode": "standard"}
)


def _slug(key: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "-", key.removeprefix("alias/"))[-200:]


class _Calls:
    """Map botocore failures to the vault's error families."""

    def __init__(self, what: str) -> None:
        self._what = what
        self._reads_blob = what in {"unwrap", "rewrap"}

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: Any, exc: Any, tb: Any) -> None:  # noqa: ANN401
        if exc is None:
            return
        if isinstance(exc, botocore.exceptions.ClientError):
            code = exc.response.get("Error", {}).get("Code", "")
            # For a blob we stored, AccessDenied on decrypt means it names a key other than
            # the one we asked for (moto answers so for an altered key id; AWS answers
            # IncorrectKeyException): the blob was altered or moved.
            if self._reads_blob and code in _REFUSED | {"AccessDeniedException"}:
                _log.debug("kms_refused", operation=self._what, code=code)
                raise IntegrityError(_UNWRAP_FAILED) from None
            if code in {"DisabledException", "KMSInvalidStateException"}:
                # Not a blob's fault: the key itself is disabled or pending deletion.
                raise BackendError(
                    f"AWS KMS refused {self._what}: the key is disabled or pending deletion"
                ) from None
            if code in _UNAVAILABLE:
                raise BackendError(f"AWS KMS unavailable during {self._what} ({code})") from exc
            if code == "NotFoundException":
                raise ConfigError(f"KMS key not found during {self._what}") from None
            if code in _CREDENTIALS_REFUSED:
                # As a refused OpenBao token: the vault's configuration, not the holder.
                raise ConfigError(
                    f"AWS KMS refused the credentials during {self._what} ({code}); "
                    "check AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY"
                ) from None
            raise BackendError(f"AWS KMS refused {self._what} ({code})") from exc
        if isinstance(
            exc,
            botocore.exceptions.NoCredentialsError | botocore.exceptions.PartialCredentialsError,
        ):
            raise ConfigError(
                f"no usable AWS credentials for KMS ({self._what}): set AWS_PROFILE or "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ) from None
        if isinstance(exc, botocore.exceptions.BotoCoreError):
            raise BackendError(
                f"AWS KMS unreachable during {self._what} ({type(exc).__name__})"
            ) from exc


class KmsKek(VersionedKek):
    """KEK versions as KMS keys; wrap, unwrap and rewrap inside KMS."""

    def __init__(self, key: str, client: KMSClient) -> None:
        """Not for direct use: call `KmsKek.open`."""
        self._key = key
        self._key_id = f"awskms:{key}"
        self._alias_prefix = f"alias/pcii-kek/{_slug(key)}/v"
        self._client = client
        self._by_version: dict[int, str] = {}
        self._versions: tuple[KekInfo, ...] = ()
        self._refresh()

    def __repr__(self) -> str:
        return f"KmsKek({self._key_id!r}, current_version={self.current_version})"

    @classmethod
    def open(cls, uri: str, *, create: bool = False) -> KmsKek:
        """Open the KMS key; with `create`, make it when an alias names no key yet.

        Raises:
            InputError: malformed URI.
            ConfigError: no such key (and it cannot or may not be created).
            BackendError: KMS unreachable.
        """
        key = uri.removeprefix("awskms:")
        if not key or any(c.isspace() for c in key):
            raise InputError(f"malformed AWS KMS URI {uri!r}: use awskms:KEY-ID|ALIAS|ARN")
        # AWS_REGION as the S3 store reads it (botocore itself reads AWS_DEFAULT_REGION).
        region = os.environ.get("AWS_REGION") or None
        try:
            client: KMSClient = boto3.client("kms", config=_CONFIG, region_name=region)
        except botocore.exceptions.NoRegionError:
            raise ConfigError(
                "AWS KMS needs a region: set AWS_REGION (or AWS_DEFAULT_REGION, or a profile's)"
            ) from None
        _ensure_key(client, key, create=create)
        return cls(key, client)

    # -- KekProvider ----------------------------------------------------------------

    def _context(self, header: bytes, context: bytes) -> dict[str, str]:
        return {
            "pcii-header": base64.b64encode(header).decode("ascii"),
            "pcii-context": base64.b64encode(context).decode("ascii"),
        }

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        """KMS Encrypt under the current version's key.

        Raises:
            BackendError: KMS unavailable, or the current version's key is disabled or
                pending deletion (a key wrapped under it would be lost with it).
        """
        version = self._check_current_usable()
        header = external_header(version, self._key_id)
        with _Calls("wrap"):
            out = self._client.encrypt(
                KeyId=self._by_version[version],
                Plaintext=dek,
                EncryptionContext=self._context(header, context),
            )
        return header + out["CiphertextBlob"]

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """KMS Decrypt with the version's key and the encryption context.

        Raises:
            IntegrityError: tampered, wrong context, other key, unknown or retired version.
            BackendError: KMS unavailable.
        """
        version, header, payload = parse_unverified_external(wrapped, self._key_id)
        key = self._usable(version)
        with _Calls("unwrap"):
            out = self._client.decrypt(
                CiphertextBlob=payload, KeyId=key, EncryptionContext=self._context(header, context)
            )
        return out["Plaintext"]

    def rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        """KMS ReEncrypt to the current version: the DEK never leaves KMS."""
        version, header, payload = parse_unverified_external(wrapped, self._key_id)
        source = self._usable(version)
        target = self._check_current_usable()
        new_header = external_header(target, self._key_id)
        with _Calls("rewrap"):
            out = self._client.re_encrypt(
                CiphertextBlob=payload,
                SourceKeyId=source,
                SourceEncryptionContext=self._context(header, context),
                DestinationKeyId=self._by_version[target],
                DestinationEncryptionContext=self._context(new_header, context),
            )
        return new_header + out["CiphertextBlob"]

    def rotate(self) -> int:
        """Create a KMS key for version N+1 and its alias."""
        self._refresh()
        version = self.current_version + 1
        with _Calls("rotate"):
            created = self._client.create_key(
                Description=f"pcii-vault KEK {self._key} version {version}",
                KeyUsage="ENCRYPT_DECRYPT",
            )
            self._client.create_alias(
                AliasName=f"{self._alias_prefix}{version}",
                TargetKeyId=created["KeyMetadata"]["KeyId"],
            )
        self._refresh()
        return version

    def retire(self, version: int) -> None:
        """Disable the version's KMS key: KMS refuses to decrypt with it.

        Raises:
            InputError: current or unknown version.
        """
        self._refresh()
        self._check_retirable(version)
        with _Calls("retire"):
            self._client.disable_key(KeyId=self._by_version[version])
        self._refresh()

    def close(self) -> None:
        """Close the client's connections."""
        self._client.close()

    # -- internals ----------------------------------------------------------------------

    def _usable(self, version: int) -> str:
        if version not in self._by_version:
            self._refresh()  # rotated by another process since we looked
        info = next((v for v in self._versions if v.version == version), None)
        if info is None:
            raise IntegrityError(f"KEK version {version} is not known to {self._key_id}")
        if info.retired:
            raise IntegrityError(f"KEK version {version} is retired")
        return self._by_version[version]

    def _refresh(self) -> None:
        with _Calls("list versions"):
            by_version = {1: self._client.describe_key(KeyId=self._key)["KeyMetadata"]["KeyId"]}
            for page in self._client.get_paginator("list_aliases").paginate():
                for alias in page["Aliases"]:
                    name = alias.get("AliasName", "")
                    suffix = name.removeprefix(self._alias_prefix)
                    if name.startswith(self._alias_prefix) and suffix.isdigit():
                        by_version[int(suffix)] = alias["TargetKeyId"]
            infos = []
            for version in sorted(by_version):
                meta = self._client.describe_key(KeyId=by_version[version])["KeyMetadata"]
                created = meta.get("CreationDate")
                infos.append(
                    KekInfo(
                        version=version,
                        created=created if isinstance(created, datetime) else None,
                        retired=not meta.get("Enabled", False),
                    )
                )
        self._by_version = by_version
        self._versions = tuple(infos)


def _ensure_key(client: KMSClient, key: str, *, create: bool) -> None:
    with _Calls("open"):
        try:
            client.describe_key(KeyId=key)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NotFoundException":
                raise
        else:
            return
    if not (create and key.startswith("alias/")):
        raise ConfigError(f"no KMS key {key} (init creates one only for an alias/NAME)")
    with _Calls("create key"):
        created = client.create_key(
            Description=f"pcii-vault KEK {key} version 1", KeyUsage="ENCRYPT_DECRYPT"
        )
        client.create_alias(AliasName=key, TargetKeyId=created["KeyMetadata"]["KeyId"])
    _log.info("kms_key_created", key=key)
