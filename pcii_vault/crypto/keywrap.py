"""Wrapping data keys (DEKs) under key-encryption keys (KEKs) with AES-256-GCM.

Blob layout (65 bytes for a 32-byte DEK):

    format (1) = 0x01 | KEK version (uint32 BE) | nonce (12) | ciphertext + tag (48)

Invariants:
- The associated data is `format || KEK version || context`: changing the version byte
  (to route the blob to another KEK) or moving the blob to another record fails.
- Nonces are 96 random bits per wrap; a KEK wraps far fewer than 2**32 keys, so the
  GCM random-nonce bound is never approached.
- Every failure is one `IntegrityError` that does not say which check failed.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Final

import structlog
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pcii_vault.errors import IntegrityError

__all__ = [
    "KEK_BYTES",
    "WRAPPED_KEY_FORMAT",
    "parse_unverified_wrapped_kek_version",
    "unwrap_key",
    "wrap_key",
]

_log = structlog.get_logger(__name__)

KEK_BYTES: Final = 32
WRAPPED_KEY_FORMAT: Final = 1
_HEADER: Final = struct.Struct(">BI")
_NONCE_BYTES: Final = 12
_TAG_BYTES: Final = 16
_MAX_VERSION: Final = 2**32 - 1
_UNWRAP_FAILED: Final = "wrapped data key failed authentication"


def wrap_key(kek: bytes, kek_version: int, dek: bytes, context: bytes) -> bytes:
    """Wrap `dek` under `kek`, binding the KEK version and `context`.

    Args:
        kek: the 32-byte key-encryption key.
        kek_version: its version number (1 .. 2**32-1), recorded in the blob.
        dek: the data key to wrap (16..64 bytes; normally 32).
        context: associated data, e.g. `RecordContext(...).to_bytes()`.

    Returns:
        The versioned wrapped-key blob.

    Raises:
        ValueError: wrong key length or version out of range.
    """
    return _wrap_key_with_nonce(kek, kek_version, dek, context, os.urandom(_NONCE_BYTES))


def _wrap_key_with_nonce(
    kek: bytes, kek_version: int, dek: bytes, context: bytes, nonce: bytes
) -> bytes:
    """Wrap with a given nonce: for known-answer vectors only, never reuse a nonce."""
    if len(kek) != KEK_BYTES:
        raise ValueError("a KEK must be 32 bytes")
    if not 16 <= len(dek) <= 64:
        raise ValueError("a data key must be 16 to 64 bytes")
    if not 1 <= kek_version <= _MAX_VERSION:
        raise ValueError("kek_version must be between 1 and 2**32-1")
    if len(nonce) != _NONCE_BYTES:
        raise ValueError("nonce must be 12 bytes")
    header = _HEADER.pack(WRAPPED_KEY_FORMAT, kek_version)
    sealed = AESGCM(kek).encrypt(nonce, dek, header + context)
    return header + nonce + sealed


def parse_unverified_wrapped_kek_version(blob: bytes) -> int:
    """Return the KEK version a blob names, without authenticating it (for rewrap planning).

    Raises:
        IntegrityError: not a wrapped-key blob of a known format.
    """
    if len(blob) < _HEADER.size + _NONCE_BYTES + _TAG_BYTES + 16:
        _log.debug("wrapped_key_rejected", reason="short", length=len(blob))
        raise IntegrityError(_UNWRAP_FAILED)
    fmt, version = _HEADER.unpack_from(blob)
    if fmt != WRAPPED_KEY_FORMAT or version == 0:
        _log.debug("wrapped_key_rejected", reason="format", format=fmt, version=version)
        raise IntegrityError(_UNWRAP_FAILED)
    return int(version)


def unwrap_key(kek_lookup: Callable[[int], bytes], blob: bytes, context: bytes) -> bytes:
    """Return the data key inside `blob`.

    Args:
        kek_lookup: returns the KEK for a version; raises `IntegrityError` for an unknown
            or retired one.
        blob: a blob made by `wrap_key`.
        context: the same associated data given to `wrap_key`.

    Returns:
        The data key.

    Raises:
        IntegrityError: tampered blob, wrong context, wrong KEK, unknown or retired version.
    """
    version = parse_unverified_wrapped_kek_version(blob)
    kek = kek_lookup(version)
    header_end = _HEADER.size
    nonce = blob[header_end : header_end + _NONCE_BYTES]
    try:
        return AESGCM(kek).decrypt(
            nonce, blob[header_end + _NONCE_BYTES :], blob[:header_end] + context
        )
    except InvalidTag:
        _log.debug("wrapped_key_rejected", reason="tag", kek_version=version)
        raise IntegrityError(_UNWRAP_FAILED) from None
