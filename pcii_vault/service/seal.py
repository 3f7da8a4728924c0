"""A server sealed by shares: custodians unseal it remotely, one signed share at a time.

A vault initialised with `--unseal-shares N --unseal-threshold M` and served without
`PCII_UNSEAL_SHARES` starts sealed: it holds no key, `/readyz` says so, and every act is
refused (503, exit 5). Registered, active administrators send one SLIP-39 share each
(`pcii --vault https://... unseal --share FILE`), over a signed HTTP message and a
signed act. While sealed the index cannot be trusted (its key is sealed too), so
custodians are looked up in a projection of the verified log. At M distinct shares of
one split the secret is recovered, checked against the sealed keyring, and the vault
opens; a corrupted or foreign share is named and refused. Every attempt, refused ones
included, is logged as one `vault.unsealed` event as soon as the log is writable.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pcii_vault.errors import BackendError, InputError, IntegrityError, PolicyDenied
from pcii_vault.index import Index
from pcii_vault.keys.local import LocalKeyring
from pcii_vault.keys.shares import ShareText, combine_shares, share_parameters
from pcii_vault.models.request import verify_act

if TYPE_CHECKING:
    from pcii_vault.models.principal import Principal
    from pcii_vault.models.request import SignedRequest
    from pcii_vault.vault import Vault

__all__ = ["SEALED_MESSAGE", "Seal"]

SEALED_MESSAGE = (
    "the vault is sealed: its custodians unseal it with `pcii --vault URL unseal --share FILE`"
)


@dataclass(frozen=True)
class _Share:
    text: ShareText
    index: int
    split: tuple[Any, ...]
    threshold: int


class Seal:
    """The sealed state of one server and the shares offered so far."""

    def __init__(self, vault: Vault, *, skew: timedelta) -> None:
        self._vault = vault
        self._skew = skew
        self._lock = threading.Lock()
        self._shares: dict[int, _Share] = {}
        self._attempts: list[dict[str, str]] = []
        self._secret: bytes | None = None
        self._custodians: Index | None = None

    @property
    def sealed(self) -> bool:
        """No key is open yet."""
        return self._secret is None

    def secret(self) -> bytes:
        """The unseal secret (the vault's unseal callback).

        Raises:
            BackendError: still sealed.
        """
        if self._secret is None:
            raise BackendError(SEALED_MESSAGE)
        return self._secret

    def status(self) -> dict[str, Any]:
        """What `/readyz` and a custodian are told: sealed, and how many shares are in."""
        with self._lock:
            # The shares' own threshold once one is in; before, what the vault records.
            threshold = next(
                (s.threshold for s in self._shares.values()),
                self._vault.config.unseal_threshold,
            )
            return {"sealed": self.sealed, "shares": len(self._shares), "threshold": threshold}

    def custodian(self, principal_id: str) -> Principal:
        """A registered principal, from the verified log (the index is sealed too).

        Raises:
            KeyError: nobody of that id is registered.
        """
        from pcii_vault.errors import NotFoundError  # noqa: PLC0415

        with self._lock:
            if self._custodians is None:
                reader = self._vault.reader()
                checkpoint = reader.check_edge()
                index = Index.in_memory()
                size = checkpoint.size if checkpoint else 0
                index.apply_all(reader.events(0, size), strict=False)
                self._custodians = index
            try:
                return self._custodians.principal(principal_id)
            except NotFoundError:
                raise KeyError(principal_id) from None

    def check_act(self, request: SignedRequest, principal: Principal) -> None:
        """The signed act of an unseal: this vault, `unseal`, fresh, an active admin's.

        Raises:
            IntegrityError: another vault, another action, stale, or a bad signature.
            PolicyDenied: the signer is not an active administrator.
        """
        verify_act(
            request,
            vault=self._vault.config.vault_id,
            action="unseal",
            public_key=principal.public_key,
            now=datetime.now(UTC),
            window=self._skew,
        )
        if principal.role != "admin" or principal.status != "active":
            raise PolicyDenied(f"{principal.id} is not an active administrator: no unseal")

    def offer(self, principal: str, mnemonic: str) -> dict[str, Any]:
        """Take one custodian's share; open the vault when enough are in.

        Raises:
            InputError: the vault is not sealed, or the share is corrupted, of another
                split, or the shares do not open the keyring (they are then all dropped).
        """
        with self._lock:
            if self._secret is not None:
                raise InputError("the vault is already unsealed")
            text = ShareText(f"of {principal}", mnemonic)
            try:
                share = self._accept(text)
            except InputError as exc:
                self._attempt(principal, f"refused: {exc.diagnostics()}")
                raise
            self._shares[share.index] = share
            self._attempt(principal, "accepted")
            if len(self._shares) < share.threshold:
                missing = share.threshold - len(self._shares)
                return {
                    "sealed": True,
                    "shares": len(self._shares),
                    "threshold": share.threshold,
                    "missing": missing,
                }
            secret = self._open([s.text for s in self._shares.values()], principal)
            self._secret = secret
            attempts = list(self._attempts)
            opened_with = len(self._shares)  # the shares that opened it (not every attempt)
        # Open the keys and the index, catch up, and log who unsealed it and how.
        vault = self._vault
        vault.keyring  # noqa: B018 -- opens the providers
        vault.sync()
        index = vault.log_unsealed(attempts)
        return {"sealed": False, "shares": opened_with, "logged_as": index}

    def _accept(self, text: ShareText) -> _Share:
        split, index, threshold = share_parameters(text)
        for other in self._shares.values():
            if other.split != split:
                raise InputError(
                    f"unseal share {text.name} belongs to another split than {other.text.name}"
                )
        if index in self._shares:
            raise InputError(f"unseal share {text.name} was given already")
        return _Share(text, index, split, threshold)

    def _open(self, texts: list[ShareText], principal: str) -> bytes:
        try:
            secret = combine_shares(texts)
            LocalKeyring.open(self._vault.paths.keyring, secret)
        except (InputError, IntegrityError) as exc:
            self._shares.clear()
            self._attempt(principal, f"refused: the shares do not open the keyring ({exc})")
            raise InputError(
                "the shares do not open this vault's keyring (shares of another vault?); "
                "every share must be given again"
            ) from None
        return secret

    def _attempt(self, principal: str, outcome: str) -> None:
        self._attempts.append(
            {"principal": principal, "at": datetime.now(UTC).isoformat(), "outcome": outcome}
        )
