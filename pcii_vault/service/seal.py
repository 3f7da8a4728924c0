"""A server sealed by shares: custodians unseal it remotely, one signed share at a time.

A vault initialised with `--unseal-shares N --unseal-threshold M` and served without
`PCII_UNSEAL_SHARES` starts sealed: it holds no key, `/readyz` says so, and every act is
refused (503, exit 5). Registered, active administrators send one SLIP-39 share each
(`pcii --vault https://... unseal --share FILE`), over a signed HTTP message and a
signed act. While sealed the index cannot be trusted (its key is sealed too), so
custodians are looked up in a projection of the verified log. At M distinct shares of
one split the secret is recovered, checked against the sealed keyring, and the vault
opens; a corrupted or repeated share, or one of a split with another threshold than the
vault records, is named and refused. A share of another split with the same threshold
is named too, but kept apart: it never locks this vault's own shares out. Every
attempt, refused ones included, is logged as one `vault.unsealed` event as soon as the
log is writable; the server counts as unsealed only once that event is logged.
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


# One `vault.unsealed` event must fit in one log entry (64 KiB): it lists every share of
# the split that opened the vault and the first other attempts; the rest are counted per
# custodian. At most this many splits are kept apart at once.
_LISTED_OTHERS = 32
_MAX_SPLITS = 64


@dataclass(frozen=True)
class _Attempt:
    principal: str
    at: str
    outcome: str
    split: tuple[Any, ...] | None  # of an accepted share


@dataclass(frozen=True)
class _Share:
    text: ShareText
    index: int
    split: tuple[Any, ...]
    threshold: int
    principal: str  # the custodian who gave it


class Seal:
    """The sealed state of one server and the shares offered so far.

    Shares are kept per split: a share of another split (another vault's, handed over
    by mistake) is named but cannot lock out this vault's own shares, whichever came
    first. The first split to reach its threshold is tried against the keyring; if it
    does not open it, that split's shares are dropped. The server counts as unsealed
    only once its keys are open and the attempts are logged: if that fails (a key
    holder or the store unreachable), it stays sealed with the recovered secret, and
    the next custodian's offer (any share) tries again.
    """

    def __init__(self, vault: Vault, *, skew: timedelta) -> None:
        self._vault = vault
        self._skew = skew
        self._lock = threading.Lock()  # the shares and attempts
        self._custodians_lock = threading.Lock()  # the projection (taken under `_lock` too)
        self._offers = threading.Lock()  # one offer (and opening) at a time
        self._splits: dict[tuple[Any, ...], dict[int, _Share]] = {}
        self._attempts: list[_Attempt] = []
        self._refusals = 0
        # (principal, "refused" or "accepted") -> (how many not listed, the last time)
        self._unlisted: dict[tuple[str, str], tuple[int, str]] = {}
        self._opened_split: tuple[Any, ...] | None = None
        self._secret: bytes | None = None  # recovered: the vault's unseal callback
        self._opened_with = 0
        self._unsealed = False  # keys open and the attempts logged
        self._custodians: Index | None = None

    @property
    def sealed(self) -> bool:
        """The keys are not open (or the unseal is not logged) yet."""
        return not self._unsealed

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
            group = self._largest()
            # The shares' own threshold once one is in; before, what the vault records.
            threshold = next(
                (s.threshold for s in group.values()), self._vault.config.unseal_threshold
            )
            return {"sealed": self.sealed, "shares": len(group), "threshold": threshold}

    def custodian(self, principal_id: str) -> Principal:
        """A registered principal, from the verified log as it is now (the index is sealed too).

        The projection is caught up with the log at every lookup: an administrator
        registered, suspended or revoked since the last one is seen as the log says.

        Raises:
            KeyError: nobody of that id is registered.
        """
        from pcii_vault.errors import NotFoundError  # noqa: PLC0415

        with self._custodians_lock:
            if self._custodians is None:
                self._custodians = Index.in_memory()
            reader = self._vault.reader()
            checkpoint = reader.check_edge()
            size = checkpoint.size if checkpoint else 0
            if size > self._custodians.size:
                self._custodians.apply_all(reader.events(self._custodians.size, size), strict=False)
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
            InputError: the vault is not sealed, or the share is corrupted, given twice,
                of a split with another threshold than the vault's, or the shares do not
                open the keyring (that split's shares are then dropped).
            BackendError: the keys or the log could not be reached to finish opening
                (the server stays sealed; any custodian's next offer tries again).
        """
        with self._offers:
            if self._unsealed:
                raise InputError("the vault is already unsealed")
            if self._secret is None:
                progress = self._take(principal, mnemonic)
                if progress is not None:
                    return progress
            else:
                with self._lock:
                    self._attempt(principal, "accepted: the opening is tried again")
            return self._finish()

    def _take(self, principal: str, mnemonic: str) -> dict[str, Any] | None:
        """Record one share; `None` once a split is complete and opens the keyring."""
        with self._lock:
            text = ShareText(f"of {principal}", mnemonic)
            try:
                share, others = self._accept(text, principal)
            except InputError as exc:
                self._attempt(principal, f"refused: {exc.diagnostics()}")
                raise
            group = self._splits.setdefault(share.split, {})
            group[share.index] = share
            self._attempt(
                principal,
                f"accepted (another split than {others})" if others else "accepted",
                split=share.split,
            )
            if len(group) >= share.threshold:
                self._drop_shares_of_former_custodians(group)
            if len(group) < share.threshold:
                answer: dict[str, Any] = {
                    "sealed": True,
                    "shares": len(group),
                    "threshold": share.threshold,
                    "missing": share.threshold - len(group),
                }
                if others:
                    answer["warning"] = (
                        f"this share is of another split than {others}: only one of them "
                        "can be this vault's, and only its own shares open it"
                    )
                return answer
            self._secret = self._open(share.split, principal)
            self._opened_with = len(group)
            self._opened_split = share.split
            return None

    def _drop_shares_of_former_custodians(self, group: dict[int, _Share]) -> None:
        """Drop the shares of custodians the log no longer holds active administrators.

        A share counts only if its custodian may still give one when the vault opens: one
        suspended or revoked since (by another replica, or on this machine) must not help
        open it. Under the lock.
        """
        for index, share in list(group.items()):
            try:
                principal = self.custodian(share.principal)
            except KeyError:  # pragma: no cover - the log never forgets a principal
                still = False
            else:
                still = principal.role == "admin" and principal.status == "active"
            if not still:
                del group[index]
                self._attempt(
                    share.principal,
                    f"dropped: {share.principal} is no longer an active administrator; "
                    "another custodian's share is needed",
                )

    def refused(self, principal: str, reason: str) -> None:
        """Note an offer refused before its share was read (not an active administrator)."""
        with self._lock:
            if not self._unsealed:
                self._attempt(principal, f"refused: {reason}")

    def _finish(self) -> dict[str, Any]:
        """Open the keys and the index, catch up, and log who unsealed it and how."""
        vault = self._vault
        with self._lock:
            attempts = self._logged_attempts()
        vault.keyring  # noqa: B018 -- opens the providers
        vault.sync()
        index = vault.log_unsealed(attempts)
        with self._lock:
            self._unsealed = True
            self._splits.clear()
            self._attempts.clear()
            self._unlisted.clear()
        return {"sealed": False, "shares": self._opened_with, "logged_as": index}

    def _accept(self, text: ShareText, principal: str) -> tuple[_Share, str]:
        """The parsed share, and whose shares of other splits are in (empty if none).

        Each share of a split must come from another custodian: a threshold of M means
        M administrators, so one holding two shares cannot unseal a 2-of-3 vault alone.
        """
        split, index, threshold = share_parameters(text)
        expected = self._vault.config.unseal_threshold
        if expected is not None and threshold != expected:
            raise InputError(
                f"unseal share {text.name} is of a split that needs {threshold} shares; "
                f"this vault's needs {expected}: not this vault's share"
            )
        group = self._splits.get(split, {})
        if index in group:
            raise InputError(
                f"unseal share {text.name} is a share given already (the same share, "
                "offered before by a custodian): each share counts once"
            )
        if any(share.text.name == text.name for share in group.values()):
            raise InputError(
                f"{principal} has given a share of this split already: each custodian "
                "gives one share (another custodian must give the next)"
            )
        if split not in self._splits and len(self._splits) >= _MAX_SPLITS:
            raise InputError(
                f"unseal share {text.name} is of yet another split: shares of "
                f"{len(self._splits)} splits are in already"
            )
        others = sorted(
            {
                s.text.name
                for other, group in self._splits.items()
                if other != split
                for s in group.values()
            }
        )
        return _Share(text, index, split, threshold, principal), ", ".join(others)

    def _largest(self) -> dict[int, _Share]:
        return max(self._splits.values(), key=len, default={})

    def _open(self, split: tuple[Any, ...], principal: str) -> bytes:
        texts = [s.text for s in self._splits[split].values()]
        try:
            secret = combine_shares(texts)
            LocalKeyring.open(self._vault.paths.keyring, secret)
        except (InputError, IntegrityError) as exc:
            del self._splits[split]
            self._attempt(principal, f"refused: the shares do not open the keyring ({exc})")
            raise InputError(
                "the shares do not open this vault's keyring (shares of another vault?); "
                "every share of that split must be given again"
            ) from None
        return secret

    def _attempt(
        self, principal: str, outcome: str, *, split: tuple[Any, ...] | None = None
    ) -> None:
        at = datetime.now(UTC).isoformat()
        if outcome.startswith("refused"):
            self._refusals += 1
            if self._refusals > _LISTED_OTHERS:  # counted at once: memory stays bounded
                self._count_unlisted(principal, "refused", at)
                return
        self._attempts.append(_Attempt(principal, at, outcome, split))

    def _count_unlisted(self, principal: str, kind: str, at: str) -> None:
        count, _ = self._unlisted.get((principal, kind), (0, at))
        self._unlisted[(principal, kind)] = (count + 1, at)

    def _outcome(self, attempt: _Attempt) -> str:
        """An accepted share's outcome, told once it is known which split opened the vault.

        Until then a share is only of the same split as others or not: the first one in
        may be the foreign one, so the log names the shares that opened the vault.
        """
        if attempt.split is None:
            return attempt.outcome
        if attempt.split == self._opened_split:
            return "accepted"
        return "accepted, of another split than the shares that opened the vault"

    def _logged_attempts(self) -> list[dict[str, str]]:
        """What `vault.unsealed` lists: bounded, every share that opened the vault kept."""
        listed: list[_Attempt] = []
        others = 0
        for attempt in self._attempts:
            if attempt.split is not None and attempt.split == self._opened_split:
                listed.append(attempt)
            elif others < _LISTED_OTHERS:
                listed.append(attempt)
                others += 1
            else:
                kind = "refused" if attempt.outcome.startswith("refused") else "accepted"
                self._count_unlisted(attempt.principal, kind, attempt.at)
        self._attempts = listed
        rows = [{"principal": a.principal, "at": a.at, "outcome": self._outcome(a)} for a in listed]
        rows += [
            {"principal": who, "at": last, "outcome": f"{kind} {count} more times (not listed)"}
            for (who, kind), (count, last) in sorted(self._unlisted.items())
        ]
        return rows
