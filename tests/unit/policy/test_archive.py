"""The stored text of a policy set: junk at or under its key never stops the vault."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pcii_vault.errors import IntegrityError
from pcii_vault.policy.archive import (
    load_policy_set,
    policy_set_damage,
    policy_set_key,
    store_policy_set,
)
from pcii_vault.policy.engine import PolicyEngine
from pcii_vault.store.filesystem import FilesystemStore

POLICIES = Path(__file__).resolve().parents[3] / "policies"


def test_objects_planted_under_the_key_are_removed_and_the_set_stored(tmp_path: Path) -> None:
    """`policysets/<hash>/x` makes the key a directory: every command stopped, exit 5."""
    store = FilesystemStore(tmp_path / "objects", create=True)
    engine = PolicyEngine.load(POLICIES)
    key = policy_set_key(engine.policy_set_hash)
    store.put_if_absent(f"{key}/x", b"junk")
    store.put_if_absent(f"{key}/a/c", b"junk")
    assert store_policy_set(store, engine) is True
    assert load_policy_set(store, engine.policy_set_hash).policy_set_hash == engine.policy_set_hash
    assert [info.key for info in store.list("policysets/")] == [key]


@pytest.mark.parametrize(
    "edit",
    [
        lambda data: data + b" ",
        lambda data: b" " + data,
        lambda data: data.replace(b'"format":', b'"format" :', 1),
    ],
    ids=["space after", "space before", "space inside"],
)
def test_a_stored_set_in_other_bytes_is_refused_by_the_auditor_too(
    tmp_path: Path, edit: Callable[[bytes], bytes]
) -> None:
    """A tester's finding: a space added to a stored policy set stopped every command
    (the vault compares bytes) while `audit verify`, parsing it, said the log was sound."""
    store = FilesystemStore(tmp_path / "objects", create=True)
    engine = PolicyEngine.load(POLICIES)
    key = policy_set_key(engine.policy_set_hash)
    store_policy_set(store, engine)
    data, etag = store.get_with_etag(key)
    store.put_if_match(key, edit(data), etag)
    with pytest.raises(IntegrityError, match="not the document the vault wrote"):
        load_policy_set(store, engine.policy_set_hash)


def test_a_linked_policysets_folder_is_named_not_taken_for_a_changed_text(tmp_path: Path) -> None:
    """A tester's finding: `policysets` made a symlink said the text "was changed outside
    the vault" and sent the user to `pcii maintenance`, which then refused the link."""
    store = FilesystemStore(tmp_path / "objects", create=True)
    engine = PolicyEngine.load(POLICIES)
    store_policy_set(store, engine)
    (store.root / "policysets").rename(store.root / "copy")
    (store.root / "policysets").symlink_to("copy")
    with pytest.raises(IntegrityError, match="symlink planted in the store"):
        policy_set_damage(store, engine.policy_set_hash)
