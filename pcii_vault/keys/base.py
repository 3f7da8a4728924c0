"""The KeyProvider protocol: who wraps and unwraps data keys.

Invariants:
- a wrapped key names the KEK version that wrapped it, so rotation never strands data;
- unwrap binds the same context as wrap (vault id, record id, format version): a wrapped
  key moved to another record fails with IntegrityError;
- versions below `min_decryption_version` are retired and refuse to unwrap.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["KeyProvider"]


@runtime_checkable
class KeyProvider(Protocol):
    """Wraps per-record data keys (DEKs) under versioned key-encryption keys (KEKs)."""

    @property
    def current_version(self) -> int:
        """The KEK version new wraps use."""
        ...

    @property
    def min_decryption_version(self) -> int:
        """The oldest KEK version that may still unwrap; older ones are retired."""
        ...

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        """Wrap `dek` under the current KEK, binding `context`; returns a versioned blob."""
        ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Return the DEK inside `wrapped`.

        Raises:
            IntegrityError: tampered blob, wrong context, unknown or retired KEK version.
        """
        ...

    def rotate(self) -> int:
        """Add a new KEK version, make it current, and return its number."""
        ...
