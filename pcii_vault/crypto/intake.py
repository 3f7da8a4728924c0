"""Owner-side intake: sealing data (a DEK) to the vault's X25519 intake key.

An owner encrypts a submission on its own machine under a fresh DEK and seals that DEK
to the vault's intake public key with a libsodium sealed box (ephemeral X25519 +
XSalsa20-Poly1305). Only the holder of the intake private key (the vault's keyring) can
open it; the sender is anonymous, so authenticity comes from the signed request, not
from the box.

Invariant: opening failures raise one `IntegrityError`, never return partial data.
"""

from __future__ import annotations

from typing import Final

import nacl.exceptions
import nacl.public

from pcii_vault.errors import IntegrityError

__all__ = [
    "INTAKE_KEY_BYTES",
    "generate_intake_keypair",
    "intake_public_key",
    "open_from_intake",
    "seal_to_intake",
]

INTAKE_KEY_BYTES: Final = 32


def generate_intake_keypair() -> tuple[bytes, bytes]:
    """Create a fresh X25519 intake key pair.

    Returns:
        (private key raw 32 bytes, public key raw 32 bytes).
    """
    private = nacl.public.PrivateKey.generate()
    return bytes(private), bytes(private.public_key)


def intake_public_key(private_key_raw: bytes) -> bytes:
    """Return the raw public key matching a raw X25519 private key.

    Raises:
        ValueError: the private key is not 32 bytes.
    """
    _require_length("private", private_key_raw)
    return bytes(nacl.public.PrivateKey(private_key_raw).public_key)


def seal_to_intake(public_key_raw: bytes, data: bytes) -> bytes:
    """Seal `data` so that only the intake private key can open it.

    Args:
        public_key_raw: the vault's 32-byte X25519 intake public key.
        data: what to seal (typically a 32-byte DEK).

    Returns:
        The sealed box (48 bytes longer than `data`).

    Raises:
        ValueError: the public key is not 32 bytes.
    """
    _require_length("public", public_key_raw)
    return bytes(nacl.public.SealedBox(nacl.public.PublicKey(public_key_raw)).encrypt(data))


def open_from_intake(private_key_raw: bytes, sealed: bytes) -> bytes:
    """Open a sealed box made by `seal_to_intake`.

    Args:
        private_key_raw: the vault's 32-byte X25519 intake private key.
        sealed: the sealed box.

    Returns:
        The sealed data.

    Raises:
        IntegrityError: tampered, truncated, or sealed to another key.
        ValueError: the private key is not 32 bytes.
    """
    _require_length("private", private_key_raw)
    box = nacl.public.SealedBox(nacl.public.PrivateKey(private_key_raw))
    try:
        return bytes(box.decrypt(sealed))
    except (nacl.exceptions.CryptoError, ValueError, TypeError) as exc:
        raise IntegrityError("sealed intake box failed authentication") from exc


def _require_length(which: str, raw: bytes) -> None:
    if len(raw) != INTAKE_KEY_BYTES:
        raise ValueError(f"an X25519 {which} key must be 32 bytes")
