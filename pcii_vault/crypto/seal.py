"""Sealing secrets at rest under a key derived from an unseal secret (scrypt + AES-256-GCM).

Used by the local keyring (`pcii_vault.keys.local`), which owns the file format; this
module only holds the primitives, since only `crypto/` touches `cryptography`.

Invariants:
- scrypt parameters read from a file are bounded (`ScryptParams.check_untrusted`), so a
  crafted file cannot make unsealing eat unbounded memory or time.
- Opening raises one `IntegrityError` on any authentication failure; a wrong secret and
  a damaged ciphertext are indistinguishable by design.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from pcii_vault.errors import IntegrityError

__all__ = [
    "DEFAULT_SCRYPT",
    "SALT_BYTES",
    "SEALING_KEY_BYTES",
    "SEAL_NONCE_BYTES",
    "ScryptParams",
    "derive_sealing_key",
    "open_sealed",
    "random_bytes",
    "seal",
]

SEALING_KEY_BYTES: Final = 32
SALT_BYTES: Final = 16
SEAL_NONCE_BYTES: Final = 12
# Limits for parameters read from a file: 2**20 * 8 * 128 B = 1 GiB of scrypt memory.
_MAX_LOG2_N: Final = 20
_MAX_R: Final = 16
_MAX_P: Final = 16


@dataclass(frozen=True, slots=True)
class ScryptParams:
    """scrypt cost parameters, recorded beside the sealed data."""

    n: int
    r: int
    p: int

    def __post_init__(self) -> None:
        if self.n < 2 or self.n & (self.n - 1):
            raise ValueError("scrypt n must be a power of two >= 2")
        if self.r < 1 or self.p < 1:
            raise ValueError("scrypt r and p must be >= 1")

    def check_untrusted(self) -> None:
        """Refuse parameters too costly to have been written by us.

        Raises:
            ValueError: n, r or p beyond the limits this build accepts from a file.
        """
        if self.n > 2**_MAX_LOG2_N or self.r > _MAX_R or self.p > _MAX_P:
            raise ValueError("scrypt parameters exceed the accepted limits")


# OWASP-level interactive default: ~0.3 s and 128 MiB on a current laptop core.
DEFAULT_SCRYPT: Final = ScryptParams(n=2**17, r=8, p=1)


def random_bytes(length: int) -> bytes:
    """Return `length` bytes from the operating system's CSPRNG."""
    return os.urandom(length)


def derive_sealing_key(secret: bytes, salt: bytes, params: ScryptParams) -> bytes:
    """Derive the 32-byte sealing key from the unseal secret.

    Args:
        secret: the unseal secret.
        salt: a random salt of at least 16 bytes, stored beside the sealed data.
        params: scrypt costs.

    Returns:
        The sealing key.

    Raises:
        ValueError: salt too short, or parameters the KDF refuses.
    """
    if len(salt) < SALT_BYTES:
        raise ValueError("salt must be at least 16 bytes")
    kdf = Scrypt(salt=salt, length=SEALING_KEY_BYTES, n=params.n, r=params.r, p=params.p)
    return kdf.derive(secret)


def seal(key: bytes, plaintext: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """Encrypt `plaintext` under `key` with a fresh random nonce.

    Returns:
        (nonce, ciphertext with tag).

    Raises:
        ValueError: the key is not 32 bytes.
    """
    if len(key) != SEALING_KEY_BYTES:
        raise ValueError("a sealing key must be 32 bytes")
    nonce = os.urandom(SEAL_NONCE_BYTES)
    return nonce, AESGCM(key).encrypt(nonce, plaintext, associated_data)


def open_sealed(key: bytes, nonce: bytes, ciphertext: bytes, associated_data: bytes) -> bytes:
    """Decrypt what `seal` produced.

    Raises:
        IntegrityError: wrong key, tampered nonce, ciphertext or associated data.
    """
    if len(key) != SEALING_KEY_BYTES:
        raise ValueError("a sealing key must be 32 bytes")
    if len(nonce) != SEAL_NONCE_BYTES:
        raise IntegrityError("sealed data failed authentication")
    try:
        return AESGCM(key).decrypt(nonce, ciphertext, associated_data)
    except InvalidTag:
        raise IntegrityError("sealed data failed authentication") from None
