"""The key seams: what the core asks of whoever holds its keys.

Two protocols. `KekProvider` wraps per-record data keys (DEKs) under versioned
key-encryption keys (KEKs): the local sealed keyring, a PKCS#11 token, an OpenBao
transit mount or AWS KMS. `KeyProvider` is everything the core needs: a KEK provider,
a `Signer` for the log (checkpoints and claims), and the intake key that opens DEKs
sealed by owners. No method returns KEK bytes or the log's private key.

Invariants:
- a wrapped key names the KEK version and the provider that wrapped it, so rotation and
  migration never strand data, and a blob is routed to the provider that can open it;
- unwrap binds the same context as wrap (vault id, record id, format version): a wrapped
  key moved to another record, or handed to another key, fails with `IntegrityError`;
- versions below `min_decryption_version` are retired and refuse to unwrap;
- a provider that cannot be reached raises `BackendError` (exit 5) and releases nothing.

Blob layout of the external providers (the local keyring keeps format 1, see
`pcii_vault.crypto.keywrap`)::

    format (1) = 0x02 | KEK version (uint32 BE) | provider id (8) | provider payload

The provider id is the first 8 bytes of SHA-256 over the provider's `key_id`. Each
provider authenticates the whole header together with the record context (AES-GCM AAD,
transit `associated_data`, KMS encryption context), so the header cannot be altered.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Protocol, runtime_checkable

import structlog

from pcii_vault.crypto.signing import Signer
from pcii_vault.errors import BackendError, InputError, IntegrityError

__all__ = [
    "EXTERNAL_WRAPPED_FORMAT",
    "KekInfo",
    "KekProvider",
    "KeyLocation",
    "KeyProvider",
    "VersionedKek",
    "external_header",
    "owned_by",
    "parse_unverified_external",
    "provider_id",
]

_log = structlog.get_logger(__name__)

EXTERNAL_WRAPPED_FORMAT: Final = 2
_EXTERNAL_HEADER: Final = struct.Struct(">BI8s")
_UNWRAP_FAILED: Final = "wrapped data key failed authentication"


@dataclass(frozen=True, slots=True)
class KekInfo:
    """What may be shown about a KEK version: never the key."""

    version: int
    created: datetime | None
    retired: bool


@dataclass(frozen=True, slots=True)
class KeyLocation:
    """Where one of the vault's keys lives (for `pcii keys status`)."""

    name: str
    where: str


@runtime_checkable
class KekProvider(Protocol):
    """Wraps per-record data keys (DEKs) under versioned key-encryption keys (KEKs)."""

    @property
    def key_id(self) -> str:
        """A stable name of the key (no secrets, no addresses that change), e.g. `local`."""
        ...

    @property
    def current_version(self) -> int:
        """The KEK version new wraps use."""
        ...

    @property
    def min_decryption_version(self) -> int:
        """The oldest KEK version that may still unwrap; older ones are retired."""
        ...

    @property
    def versions(self) -> tuple[KekInfo, ...]:
        """Every KEK version, oldest first, without key material."""
        ...

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        """Wrap `dek` under the current KEK, binding `context`; returns a versioned blob."""
        ...

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Return the DEK inside `wrapped`.

        Raises:
            IntegrityError: tampered blob, wrong context, wrong key, unknown or retired
                KEK version.
            BackendError: the key holder is unavailable.
        """
        ...

    def rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Re-wrap `wrapped` under the current KEK (inside the provider where it can).

        Raises:
            IntegrityError: as `unwrap`.
            BackendError: the key holder is unavailable.
        """
        ...

    def owns(self, wrapped: bytes) -> bool:
        """Whether `wrapped` names this provider (unauthenticated routing only)."""
        ...

    def wrapped_version(self, wrapped: bytes) -> int:
        """The KEK version `wrapped` names, unauthenticated (for rewrap planning).

        Raises:
            IntegrityError: not a blob of this provider.
        """
        ...

    def rotate(self) -> int:
        """Add a new KEK version, make it current, and return its number."""
        ...

    def check_retire(self, version: int) -> None:
        """Refuse, changing nothing, what `retire(version)` would refuse.

        The vault logs a retirement before the key holder acts: a refusal known in
        advance (an order the holder imposes) must come before the log names it.

        Raises:
            InputError: `version` is current, unknown, or cannot be retired on its own.
        """
        ...

    def retire(self, version: int) -> None:
        """Make `version` refuse to unwrap from now on (idempotent).

        Raises:
            InputError: `version` is current, unknown, or cannot be retired on its own.
        """
        ...

    def close(self) -> None:
        """Release sessions and connections."""
        ...


@runtime_checkable
class KeyProvider(KekProvider, Protocol):
    """Every key operation the core needs: KEKs, the log's signer, the intake key."""

    @property
    def log_signer(self) -> Signer:
        """Signs checkpoints and claims; the private key never leaves its holder."""
        ...

    @property
    def intake_public_key(self) -> bytes:
        """The raw X25519 public key owners seal their data keys to."""
        ...

    def open_intake(self, sealed: bytes) -> bytes:
        """Open a DEK sealed by an owner to the intake key.

        Raises:
            IntegrityError: tampered, truncated, or sealed to another key.
        """
        ...

    def locations(self) -> tuple[KeyLocation, ...]:
        """Where each key lives."""
        ...


def provider_id(key_id: str) -> bytes:
    """The 8-byte id an external provider writes into each blob it wraps."""
    return hashlib.sha256(key_id.encode("utf-8")).digest()[:8]


def external_header(version: int, key_id: str) -> bytes:
    """The header of an external provider's blob; authenticate it with the context."""
    if not 1 <= version <= 2**32 - 1:
        raise ValueError("kek_version must be between 1 and 2**32-1")
    return _EXTERNAL_HEADER.pack(EXTERNAL_WRAPPED_FORMAT, version, provider_id(key_id))


def parse_unverified_external(blob: bytes, key_id: str) -> tuple[int, bytes, bytes]:
    """Split an external blob into (version, header, payload), checking it names `key_id`.

    Nothing here is authenticated: the provider authenticates the header with the payload.

    Raises:
        IntegrityError: not a blob of this provider.
    """
    if len(blob) <= _EXTERNAL_HEADER.size:
        _log.debug("wrapped_key_rejected", reason="short", length=len(blob))
        raise IntegrityError(_UNWRAP_FAILED)
    fmt, version, pid = _EXTERNAL_HEADER.unpack_from(blob)
    if fmt != EXTERNAL_WRAPPED_FORMAT or version == 0 or pid != provider_id(key_id):
        _log.debug("wrapped_key_rejected", reason="not this provider", format=fmt)
        raise IntegrityError(_UNWRAP_FAILED)
    return int(version), blob[: _EXTERNAL_HEADER.size], blob[_EXTERNAL_HEADER.size :]


def owned_by(blob: bytes, key_id: str) -> bool:
    """Whether an external blob names `key_id` (unauthenticated routing)."""
    return (
        len(blob) > _EXTERNAL_HEADER.size
        and blob[0] == EXTERNAL_WRAPPED_FORMAT
        and blob[5:13] == provider_id(key_id)
    )


class VersionedKek:
    """What every external KEK provider shares: its key id and the versions it listed.

    Subclasses set `_key_id` and keep `_versions` (oldest first) current.
    """

    _key_id: str
    _versions: tuple[KekInfo, ...]

    @property
    def key_id(self) -> str:
        """The provider's stable key name."""
        return self._key_id

    @property
    def current_version(self) -> int:
        """The newest version."""
        return self._versions[-1].version

    @property
    def min_decryption_version(self) -> int:
        """The oldest unretired version (past the newest when the key holder disabled all)."""
        return min(
            (v.version for v in self._versions if not v.retired), default=self.current_version + 1
        )

    @property
    def versions(self) -> tuple[KekInfo, ...]:
        """Every version, oldest first."""
        return self._versions

    def owns(self, wrapped: bytes) -> bool:
        """Whether the blob names this key (unauthenticated routing)."""
        return owned_by(wrapped, self._key_id)

    def wrapped_version(self, wrapped: bytes) -> int:
        """The version a blob names (unauthenticated)."""
        return parse_unverified_external(wrapped, self._key_id)[0]

    def _check_current_usable(self) -> int:
        """The current version, refused when its key holder disabled it.

        A key disabled (or scheduled for deletion) outside the vault would still wrap on
        some holders, and every data key wrapped under it would then not unwrap.

        Raises:
            BackendError: the current version may not decrypt.
        """
        current = self._versions[-1]
        if current.retired:
            raise BackendError(
                f"KEK version {current.version} of {self._key_id} is disabled in its key "
                "holder: nothing is wrapped under it; re-enable it there, or rotate"
            )
        return current.version

    def check_retire(self, version: int) -> None:
        """Refuse, changing nothing, what `retire(version)` would refuse.

        Raises:
            InputError: current or unknown version.
        """
        self._check_retirable(version)

    def _check_retirable(self, version: int) -> None:
        """Refuse to retire the current version or one that does not exist.

        Raises:
            InputError: current or unknown version.
        """
        if version == self.current_version:
            raise InputError(f"KEK version {version} is current; rotate before retiring it")
        if all(v.version != version for v in self._versions):
            raise InputError(f"no KEK version {version} for {self._key_id}")
