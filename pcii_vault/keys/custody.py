"""Key custody: the one `KeyProvider` the core uses, assembled from where each key lives.

The sealed local keyring always exists: it holds the intake key (no HSM or key service
here opens X25519 sealed boxes) and, unless a provider holds one, the log's signing key.
The KEKs live in the provider named by the vault (`local`, `pkcs11:`, `openbao:`,
`awskms:`). During a migration a second provider can still *read* the blobs it wrapped;
every new wrap goes to the current provider.

Invariants:
- nothing here returns KEK bytes or a private key: wrap, unwrap, rewrap, sign, open;
- a blob is routed to the provider it names; a blob no open provider names is an
  `IntegrityError`, never a guess.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pcii_vault.crypto.mac import Authenticator
from pcii_vault.crypto.signing import Signer
from pcii_vault.errors import IntegrityError
from pcii_vault.keys.base import KekInfo, KekProvider, KeyLocation
from pcii_vault.keys.local import LocalKeyring
from pcii_vault.keys.providers import LOCAL, open_kek_provider, open_log_signer

__all__ = ["KeyCustody", "describe_location", "open_custody"]


class KeyCustody:
    """The core's key seam: a KEK provider, the log's signer, and the intake key."""

    __slots__ = ("_closers", "_kek", "_local", "_readers", "_signer", "_signer_where")

    def __init__(
        self,
        local: LocalKeyring,
        kek: KekProvider,
        signer: Signer,
        *,
        signer_where: str,
        readers: Sequence[KekProvider] = (),
        close_signer: Callable[[], None] | None = None,
    ) -> None:
        """Assemble custody.

        Args:
            local: the unsealed local keyring (intake key; maybe the KEKs and log key).
            kek: the provider new wraps go to.
            signer: the log's signer.
            signer_where: where the log key lives, for `locations`.
            readers: other providers whose blobs may still be unwrapped (a migration's
                source); the local keyring always reads its own blobs.
            close_signer: releases the signer's sessions, if it has any.
        """
        self._local = local
        self._kek = kek
        self._signer = signer
        self._signer_where = signer_where
        others = [p for p in (*readers, local) if p is not kek]
        self._readers: tuple[KekProvider, ...] = (kek, *others)
        self._closers = [p.close for p in self._readers]
        if close_signer is not None:
            self._closers.append(close_signer)

    def __repr__(self) -> str:
        return f"KeyCustody(kek={self._kek.key_id!r}, log={self._signer_where!r})"

    @property
    def kek_provider(self) -> KekProvider:
        """The provider new wraps go to."""
        return self._kek

    @property
    def local(self) -> LocalKeyring:
        """The sealed local keyring (always present)."""
        return self._local

    # -- KekProvider (delegated to the current provider) -------------------------------

    @property
    def key_id(self) -> str:
        """The current KEK provider's key id."""
        return self._kek.key_id

    @property
    def current_version(self) -> int:
        """The KEK version new wraps use."""
        return self._kek.current_version

    @property
    def min_decryption_version(self) -> int:
        """The oldest KEK version of the current provider that still unwraps."""
        return self._kek.min_decryption_version

    @property
    def versions(self) -> tuple[KekInfo, ...]:
        """The current provider's KEK versions."""
        return self._kek.versions

    def wrap(self, dek: bytes, context: bytes) -> bytes:
        """Wrap under the current provider's current KEK."""
        return self._kek.wrap(dek, context)

    def unwrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Unwrap with whichever open provider the blob names.

        Raises:
            IntegrityError: no open provider names the blob, or it fails authentication.
            BackendError: that provider is unavailable.
        """
        return self._reader_for(wrapped).unwrap(wrapped, context)

    def rewrap(self, wrapped: bytes, context: bytes) -> bytes:
        """Re-wrap under the current KEK: inside the provider when it wrapped the blob.

        Raises:
            IntegrityError: as `unwrap`.
            BackendError: a provider is unavailable.
        """
        if self._kek.owns(wrapped):
            return self._kek.rewrap(wrapped, context)
        # Across providers the DEK passes through this process, as it does on a release.
        return self._kek.wrap(self._reader_for(wrapped).unwrap(wrapped, context), context)

    def owns(self, wrapped: bytes) -> bool:
        """Whether the current provider wrapped `wrapped`."""
        return self._kek.owns(wrapped)

    def wrapped_version(self, wrapped: bytes) -> int:
        """The current provider's KEK version a blob names (unauthenticated).

        Raises:
            IntegrityError: the blob is not the current provider's.
        """
        return self._kek.wrapped_version(wrapped)

    def is_current(self, wrapped: bytes) -> bool:
        """Whether `wrapped` is under the current provider's current KEK (unauthenticated)."""
        return self._kek.owns(wrapped) and self._kek.wrapped_version(wrapped) == (
            self._kek.current_version
        )

    def rotate(self) -> int:
        """Rotate the current provider's KEK."""
        return self._kek.rotate()

    def check_retire(self, version: int) -> None:
        """Refuse, changing nothing, what `retire` would refuse."""
        self._kek.check_retire(version)

    def retire(self, version: int) -> None:
        """Retire one of the current provider's KEK versions."""
        self._kek.retire(version)

    def close(self) -> None:
        """Close every provider's sessions (the signer's too)."""
        for close in self._closers:
            close()

    # -- the other keys ---------------------------------------------------------------

    @property
    def log_signer(self) -> Signer:
        """The log's signer."""
        return self._signer

    @property
    def intake_public_key(self) -> bytes:
        """The X25519 intake public key (from the local keyring)."""
        return self._local.intake_public_key

    def open_intake(self, sealed: bytes) -> bytes:
        """Open an owner's sealed DEK with the intake key (local keyring)."""
        return self._local.open_intake(sealed)

    def index_authenticator(self) -> Authenticator:
        """The index's authenticator, keyed from the local keyring (never exported)."""
        return self._local.index_authenticator()

    def locations(self) -> tuple[KeyLocation, ...]:
        """Where the KEKs, the log key and the intake key live."""
        return (
            KeyLocation("key-encryption keys", describe_location(self._kek.key_id, self._local)),
            KeyLocation("log signing key", self._signer_where),
            KeyLocation("intake key", f"local sealed keyring {self._local.path}"),
        )

    def _reader_for(self, wrapped: bytes) -> KekProvider:
        for provider in self._readers:
            if provider.owns(wrapped):
                return provider
        raise IntegrityError("wrapped data key names no key provider of this vault")


def describe_location(key_id: str, local: LocalKeyring) -> str:
    """A human description of where a provider's keys are."""
    return f"local sealed keyring {local.path}" if key_id == "local" else key_id


def open_custody(
    local: LocalKeyring,
    kek_uri: str,
    signer_uri: str,
    *,
    readers: Sequence[str] = (),
    create: bool = False,
) -> KeyCustody:
    """Open the providers a vault names and assemble its custody.

    Args:
        local: the unsealed local keyring.
        kek_uri: where the KEKs live now.
        signer_uri: where the log key lives (`local` or a provider's Ed25519 key).
        readers: providers whose blobs must still unwrap (a migration's source).
        create: create missing keys (only `init` does).

    Raises:
        ConfigError: a named key does not exist, or its client library is missing.
        BackendError: a provider cannot be reached.
    """
    opened: list[KekProvider] = []
    try:
        kek = open_kek_provider(kek_uri, local, create=create)
        opened.append(kek)
        sources = []
        for uri in readers:
            source = open_kek_provider(uri, local)
            opened.append(source)
            sources.append(source)
        signer = open_log_signer(signer_uri, local, create=create)
    except BaseException:
        for provider in opened:
            provider.close()
        raise
    close = getattr(signer, "close", None)
    return KeyCustody(
        local,
        kek,
        signer,
        signer_where=describe_location(signer_uri, local) if signer_uri == LOCAL else signer_uri,
        readers=sources,
        close_signer=close if callable(close) else None,
    )
