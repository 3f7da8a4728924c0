"""Every policy set the vault loads, kept in the store by its hash, for replaying decisions.

A `policy.loaded` event names a policy set by its SHA-256 (`PolicyEngine.policy_set_hash`).
Its exact text is stored, before the event is logged, at ``policysets/<hash>``: a
canonical JSON document (format, version, and each file's name and text). The object is
written once (under Object Lock where the bucket has it); whoever reads it recomputes the
hash from the files and refuses anything else, so a swapped or edited policy set is
detected, never used. With it an auditor re-runs every logged decision on the policies
that made it.

Invariants: an object at a policy set's key that does not hash to the key is junk: it is
replaced when the vault stores a set before logging it, and for a set the log names
already (deleted or changed since) the vault refuses to decide until `pcii maintenance`
writes it again; reading checks the hash before parsing a single policy.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import structlog

from pcii_vault.crypto.canonical import canonical_json
from pcii_vault.errors import IntegrityError, NotFoundError, ObjectExistsError
from pcii_vault.policy.engine import PolicyEngine, PolicyLoadError, hash_policy_files
from pcii_vault.store.base import ObjectStore, ObjectTooLargeError, remove_planted_under

__all__ = [
    "POLICY_SET_PREFIX",
    "load_policy_set",
    "policy_set_damage",
    "policy_set_key",
    "store_policy_set",
]

_log = structlog.get_logger(__name__)

POLICY_SET_PREFIX = "policysets/"
_FORMAT = "pcii-vault/policy-set"
_VERSION = 1


def policy_set_key(policy_set_hash: str) -> str:
    """Object key of the policy set with this hash."""
    return f"{POLICY_SET_PREFIX}{policy_set_hash}"


def _document(files: Sequence[tuple[str, bytes]]) -> bytes:
    texts = {name: data.decode("utf-8") for name, data in files}
    return canonical_json({"format": _FORMAT, "v": _VERSION, "files": texts})


def _parse_unverified_files(data: bytes, key: str) -> list[tuple[str, bytes]]:
    try:
        doc: Any = json.loads(data)
    except ValueError as exc:
        raise IntegrityError(f"{key} is not a policy-set document") from exc
    if (
        not isinstance(doc, dict)
        or doc.get("format") != _FORMAT
        or doc.get("v") != _VERSION
        or set(doc) != {"format", "v", "files"}
        or not isinstance(doc["files"], dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in doc["files"].items())
    ):
        raise IntegrityError(f"{key} is not a policy-set document of version {_VERSION}")
    return [(name, text.encode("utf-8")) for name, text in doc["files"].items()]


def store_policy_set(store: ObjectStore, engine: PolicyEngine) -> bool:
    """Store the exact text of `engine`'s policy set (idempotent).

    Returns:
        Whether it was written: absent, or junk in its place (replaced, never trusted).
    """
    key = policy_set_key(engine.policy_set_hash)
    data = _document(engine.files)
    try:
        store.put_if_absent(key, data)
    except ObjectExistsError:
        try:
            existing, etag = store.get_with_etag(key)
        except NotFoundError:
            # Objects planted under the key make it a directory: removed, then written.
            for found in remove_planted_under(store, key):
                _log.warning("junk_under_policy_set_removed", key=found)
            store.put_if_absent(key, data)
            return True
        if existing == data:
            return False
        # Junk at our key (the real text hashes to it): replace, never trust it.
        _log.warning("junk_policy_set_replaced", key=key)
        store.put_if_match(key, data, etag)
    return True


def policy_set_damage(store: ObjectStore, policy_set_hash: str) -> str | None:
    """What happened to the stored text of a set the log names, or None when it is intact.

    For the set in force, `store_policy_set` writes it again from policies/.

    Raises:
        IntegrityError: what is wrong is not the text (a symlink planted on its path).
    """
    key = policy_set_key(policy_set_hash)
    try:
        data = store.get(key)
    except NotFoundError:
        return f"{key}, the text of the policy set in force, was deleted outside the vault"
    except ObjectTooLargeError:  # larger than any object the vault writes
        data = b""
    try:
        _checked_files(data, key, policy_set_hash)
    except IntegrityError:
        return f"{key}, the text of the policy set in force, was changed outside the vault"
    return None


def _checked_files(data: bytes, key: str, policy_set_hash: str) -> list[tuple[str, bytes]]:
    """The files of a stored policy set, its bytes exactly the vault's document of them.

    Raises:
        IntegrityError: malformed, of another hash, or other bytes.
    """
    files = _parse_unverified_files(data, key)
    if hash_policy_files(files) != policy_set_hash:
        raise IntegrityError(f"{key} does not hash to its name: an altered policy set")
    if data != _document(files):
        # The same files in other bytes (a space added, keys reordered): not what the vault
        # wrote, so changed by someone; the vault's own commands refuse it the same way.
        raise IntegrityError(f"{key} is not the document the vault wrote: an altered policy set")
    return files


def load_policy_set(store: ObjectStore, policy_set_hash: str) -> PolicyEngine:
    """Load a stored policy set after checking that its files hash to `policy_set_hash`.

    Raises:
        IntegrityError: the set is missing, malformed, of another hash, or its
            policies do not load.
    """
    key = policy_set_key(policy_set_hash)
    try:
        data = store.get(key)
    except NotFoundError as exc:
        raise IntegrityError(
            f"policy set {policy_set_hash[:16]}... named by the log is missing ({key}; a "
            "copy of the log without policysets/: --skip-decision-replay)"
        ) from exc
    files = _checked_files(data, key, policy_set_hash)
    with tempfile.TemporaryDirectory(prefix="pcii-policy-") as tmp:
        directory = Path(tmp)
        for name, text in files:
            if "/" in name or name.startswith(".") or not name:
                raise IntegrityError(f"{key} names a file {name!r} outside its set")
            (directory / name).write_bytes(text)
        try:
            engine = PolicyEngine.load(directory)
        except PolicyLoadError as exc:
            raise IntegrityError(f"{key} does not load: {exc}") from exc
    if engine.policy_set_hash != policy_set_hash:  # pragma: no cover - hashed above
        raise IntegrityError(f"{key} loads as another policy set")
    return engine
