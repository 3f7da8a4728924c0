"""A logged policy set's text deleted from the store is written again before it decides.

A tester's finding: with `policysets/<hash>` deleted, the vault went on logging decisions
naming that set, never storing its text again, and from then on `audit verify` failed
(exit 4, "policy set ... named by the log is missing"): one deleted object made every
later decision impossible to re-run.
"""

from __future__ import annotations

from pathlib import Path

from vault_support import VaultBench

from pcii_vault.policy.archive import POLICY_SET_PREFIX, load_policy_set
from pcii_vault.vault import Vault

SECRET = b"policy-text-restored"


def test_a_deleted_policy_text_is_restored_by_the_next_process_that_decides(
    tmp_path: Path,
) -> None:
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    root = bench.vault.paths.root
    bench.vault.close()
    store = bench.real
    stored = [info.key for info in store.list(POLICY_SET_PREFIX)]
    assert len(stored) == 1
    text = store.get(stored[0])
    store.delete(stored[0])
    bench.vault = Vault(root, unseal=lambda: SECRET)
    try:
        bench.submit_receipt()
        assert store.get(stored[0]) == text
        size = bench.vault.index.size
        named = {e.policy_set for e in bench.vault.reader().events(0, size) if e.policy_set}
        for policy_set in named:
            load_policy_set(store, policy_set)  # what `audit verify` re-runs decisions on
    finally:
        bench.vault.close()


def test_junk_in_place_of_a_policy_text_is_replaced(tmp_path: Path) -> None:
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    root = bench.vault.paths.root
    bench.vault.close()
    store = bench.real
    key = next(info.key for info in store.list(POLICY_SET_PREFIX))
    text, etag = store.get_with_etag(key)
    store.put_if_match(key, b"junk", etag)
    bench.vault = Vault(root, unseal=lambda: SECRET)
    try:
        bench.submit_receipt()
        assert store.get(key) == text
    finally:
        bench.vault.close()
