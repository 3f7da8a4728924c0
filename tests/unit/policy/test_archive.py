"""The stored text of a policy set: junk at or under its key never stops the vault."""

from __future__ import annotations

from pathlib import Path

from pcii_vault.policy.archive import load_policy_set, policy_set_key, store_policy_set
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
