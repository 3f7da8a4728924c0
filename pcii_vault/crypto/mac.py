"""Message authentication for local state the vault must be able to trust again later.

`Authenticator` holds an HMAC-SHA256 key derived (HKDF) from a keyring secret for one
purpose; the key never leaves the object. Verification raises and says nothing about
which byte differed.
"""

from __future__ import annotations

import hashlib
import hmac

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from pcii_vault.errors import IntegrityError

__all__ = ["Authenticator"]


class Authenticator:
    """HMAC-SHA256 tags under a key derived for one purpose."""

    def __init__(self, secret: bytes, purpose: bytes) -> None:
        if len(secret) < 32:
            raise ValueError("an authenticator needs a secret of at least 32 bytes")
        self._key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(
            secret
        )

    def __repr__(self) -> str:
        return "Authenticator(<redacted>)"

    def tag(self, data: bytes) -> bytes:
        """The tag of `data`."""
        return hmac.new(self._key, data, hashlib.sha256).digest()

    def verify(self, data: bytes, tag: bytes) -> None:
        """Check a tag.

        Raises:
            IntegrityError: the tag does not authenticate `data`.
        """
        if not hmac.compare_digest(self.tag(data), tag):
            raise IntegrityError("authentication tag does not match")
