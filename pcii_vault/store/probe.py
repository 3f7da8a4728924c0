"""The conformance probe: does a live store keep the guarantees the vault relies on?

`check_store` writes a few small objects under a scratch prefix ``probe/<nonce>/`` and
removes them again, whatever happens. It checks that:
- put_if_absent creates an object and refuses a second creator (one winner per key);
- put_if_match refuses a stale etag and refuses ``None`` on an existing key;
- the server refuses bytes whose SHA-256 checksum does not match (S3; a filesystem
  store has no transport, so the check does not apply);
- ranged reads, prefix listing in key order, and idempotent delete behave.

Invariant: a store missing any of these guarantees is refused with a `ConfigError`;
the vault never runs on a store that could let two writers both win or could accept
silently corrupted bytes.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass

from pcii_vault.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    ObjectExistsError,
    PreconditionFailedError,
)
from pcii_vault.store.base import ObjectStore

__all__ = ["ProbeResult", "check_store"]

# Failing any of these means the log could fork or a claim could be lost.
_CONDITIONAL_CHECKS = frozenset(
    {
        "put_if_absent refuses an existing key",
        "put_if_match refuses a stale etag",
        "put_if_match None refuses an existing key",
    }
)


class _GuaranteeMissingError(Exception):
    """A probe check failed; the store is refused."""


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """One probe check: its name, whether it passed (None: not applicable), and why."""

    check: str
    passed: bool | None
    detail: str


class _Probe:
    """Runs the checks in order, recording each result."""

    def __init__(self, store: ObjectStore, base: str) -> None:
        self.store = store
        self.base = base
        self.results: list[ProbeResult] = []

    def record(self, check: str, *, passed: bool | None, detail: str) -> None:
        self.results.append(ProbeResult(check, passed, detail))
        if passed is False:
            # Later checks build on this one; stop here and refuse the store.
            raise _GuaranteeMissingError(check)

    def expect_refusal(
        self, check: str, write: Callable[[], object], refusal: type[ConflictError]
    ) -> None:
        try:
            write()
        except refusal:
            self.record(check, passed=True, detail=f"refused with {refusal.__name__}")
        else:
            self.record(check, passed=False, detail="the write was accepted")

    def run(self) -> None:
        store, first, second = self.store, f"{self.base}a", f"{self.base}b"
        payload = bytes(range(256))
        created = store.put_if_absent(first, payload)
        self.record("put_if_absent creates", passed=store.get(first) == payload, detail=first)
        self.expect_refusal(
            "put_if_absent refuses an existing key",
            lambda: store.put_if_absent(first, b"second writer"),
            ObjectExistsError,
        )
        replaced = store.put_if_match(first, payload[::-1], created.etag)
        self.record(
            "put_if_match replaces the current version",
            passed=store.get_with_etag(first) == (payload[::-1], replaced.etag),
            detail="etag changed" if replaced.etag != created.etag else "etag unchanged",
        )
        self.expect_refusal(
            "put_if_match refuses a stale etag",
            lambda: store.put_if_match(first, b"stale writer", created.etag),
            PreconditionFailedError,
        )
        self.expect_refusal(
            "put_if_match None refuses an existing key",
            lambda: store.put_if_match(first, b"blind writer", None),
            PreconditionFailedError,
        )
        self.check_checksums()
        ranged = store.get_range(first, 10, 20)
        self.record("ranged get", passed=ranged == payload[::-1][10:30], detail="bytes 10..29")
        store.put_if_absent(second, b"b")
        listed = [info.key for info in store.list(self.base)]
        self.record(
            "list by prefix in key order",
            passed=listed == [first, second],
            detail=f"{len(listed)} objects",
        )
        store.delete(second)
        store.delete(second)
        try:
            store.head(second)
        except NotFoundError:
            self.record("delete is idempotent", passed=True, detail="object gone")
        else:
            self.record("delete is idempotent", passed=False, detail="object still present")

    def check_checksums(self) -> None:
        check = "wrong checksum refused"
        enforce = getattr(self.store, "check_checksum_enforcement", None)
        if enforce is None:
            self.record(
                check, passed=None, detail="not applicable: local files, no transport to verify"
            )
            return
        try:
            enforce(f"{self.base}checksum")
        except ConfigError as exc:
            self.record(check, passed=False, detail=str(exc))
        else:
            self.record(check, passed=True, detail="server verified x-amz-checksum-sha256")


def check_store(store: ObjectStore, *, nonce: str | None = None) -> list[ProbeResult]:
    """Run the conformance probe on a live store and clean up after it.

    Args:
        store: the store to probe.
        nonce: names the scratch prefix ``probe/<nonce>/`` (random when omitted).

    Returns:
        Every check's result; all passed or not applicable.

    Raises:
        ConfigError: the store misses a guarantee the vault relies on.
        BackendError: the store is unavailable.
    """
    probe = _Probe(store, f"probe/{nonce or secrets.token_hex(8)}/")
    try:
        probe.run()
    except _GuaranteeMissingError:
        pass  # the failed result is recorded and reported below
    finally:
        for key in ("a", "b", "checksum"):
            try:
                store.delete(probe.base + key)
            except Exception:  # noqa: BLE001, S112 -- best-effort cleanup must not hide the result
                continue
        # A filesystem store keeps the emptied scratch directories: leave nothing behind.
        remove_empty_prefix = getattr(store, "remove_empty_prefix", None)
        if remove_empty_prefix is not None:
            remove_empty_prefix(probe.base)
    failed = [result for result in probe.results if result.passed is False]
    if any(result.check in _CONDITIONAL_CHECKS for result in failed):
        raise ConfigError(
            f"store {store.url} does not honour conditional writes; refusing to use it"
        )
    if failed:
        names = ", ".join(result.check for result in failed)
        raise ConfigError(
            f"store {store.url} failed the conformance probe ({names}); refusing to use it"
        )
    return probe.results
