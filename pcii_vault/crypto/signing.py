"""Ed25519 signatures (PyNaCl) for requests, checkpoints and identities.

Verification raises `IntegrityError`; it never returns False.

Verify once: verification is a pure function of (key, message, signature), and the
vault checks the same signature several times per act (the request before and at its
log position, again when its event is projected; a checkpoint on every read). A
signature that verified is remembered by the SHA-256 of its key, signature and message
(lengths included, so no two inputs share an encoding), and the same triple is not
verified again; anything else is verified in full. A failure is never remembered.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import nacl.exceptions
import nacl.signing

from pcii_vault.errors import IntegrityError

__all__ = ["SEED_BYTES", "Ed25519PrivateKey", "Ed25519PublicKey", "Signer"]

SEED_BYTES = 32
# Digests of (key, signature, message) triples that verified; cleared when full.
_VERIFIED: set[bytes] = set()
_VERIFIED_MAX = 65536
_VERIFIED_DOMAIN = b"pcii-vault verified ed25519 v1\n"


@dataclass(frozen=True, slots=True)
class Ed25519PublicKey:
    """A verifying key: 32 raw bytes."""

    raw: bytes

    def __post_init__(self) -> None:
        if len(self.raw) != 32:
            raise IntegrityError("Ed25519 public key must be 32 bytes")

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check `signature` over `message`.

        Raises:
            IntegrityError: the signature does not verify.
        """
        try:
            digest = hashlib.sha256(
                b"".join(
                    (
                        _VERIFIED_DOMAIN,
                        self.raw,
                        len(signature).to_bytes(8, "big"),
                        signature,
                        message,
                    )
                )
            ).digest()
        except TypeError as exc:  # not bytes: nacl would refuse it too
            raise IntegrityError("signature does not verify") from exc
        if digest in _VERIFIED:
            return
        try:
            nacl.signing.VerifyKey(self.raw).verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as exc:
            raise IntegrityError("signature does not verify") from exc
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED.add(digest)


@runtime_checkable
class Signer(Protocol):
    """Something that makes Ed25519 signatures without handing out its private key.

    The log signs checkpoints and claims through this seam, so the key may live in the
    sealed keyring, a PKCS#11 token or an OpenBao transit mount.
    """

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The verifying key matching every signature `sign` makes."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of `message`.

        Raises:
            BackendError: the key holder is unavailable.
        """
        ...


class Ed25519PrivateKey:
    """A signing key held in memory; never printed, never logged."""

    __slots__ = ("_key",)

    def __init__(self, seed: bytes) -> None:
        if len(seed) != SEED_BYTES:
            raise ValueError("Ed25519 seed must be 32 bytes")
        self._key = nacl.signing.SigningKey(seed)

    @classmethod
    def generate(cls) -> Ed25519PrivateKey:
        """Create a fresh key from the operating system's randomness."""
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def seed(self) -> bytes:
        """The 32-byte seed, for sealing into a keyring or an identity file."""
        return bytes(self._key)

    @property
    def public_key(self) -> Ed25519PublicKey:
        """The matching verifying key."""
        return Ed25519PublicKey(bytes(self._key.verify_key))

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte detached signature of `message`."""
        return bytes(self._key.sign(message).signature)

    def __repr__(self) -> str:
        return "Ed25519PrivateKey(<redacted>)"
