"""A logged policy set's text deleted or changed in the store: refused, then restored.

A tester's finding: with `policysets/<hash>` deleted, the vault went on logging decisions
naming that set, never storing its text again, and from then on `audit verify` failed
(exit 4, "policy set ... named by the log is missing"): one deleted object made every
later decision impossible to re-run. The next finding: the vault then wrote the text
again by itself, at the next command of any kind, so the tampering left no trace. Now it
is tampering (exit 4) until `pcii maintenance` writes it again and says so.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import IntegrityError
from pcii_vault.policy.archive import POLICY_SET_PREFIX, load_policy_set
from pcii_vault.store.base import ObjectStore
from pcii_vault.vault import Vault

SECRET = b"policy-text-restored"


def _deleted(store: ObjectStore, key: str) -> None:
    store.delete(key)


def _changed(store: ObjectStore, key: str) -> None:
    _, etag = store.get_with_etag(key)
    store.put_if_match(key, b"junk", etag)


@pytest.mark.parametrize(("damage", "what"), [(_deleted, "deleted"), (_changed, "changed")])
def test_a_damaged_policy_text_is_refused_until_maintenance_writes_it(
    tmp_path: Path, damage: Callable[[ObjectStore, str], None], what: str
) -> None:
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    root = bench.vault.paths.root
    bench.vault.close()
    store = bench.real
    [key] = [info.key for info in store.list(POLICY_SET_PREFIX)]
    text = store.get(key)
    damage(store, key)
    bench.vault = Vault(root, unseal=lambda: SECRET)
    try:
        size = bench.vault.index.size
        for _ in range(2):  # refused each time, never written over
            with pytest.raises(IntegrityError, match=rf"{key}, .* was {what} outside the vault"):
                bench.submit_receipt()
        assert bench.vault.reader().size() == size
        dry = bench.vault.maintain(grace=timedelta(hours=24), dry_run=True)
        assert dry.policy_texts == (key,)
        with pytest.raises(IntegrityError, match=f"was {what}"):  # a dry run wrote nothing
            bench.submit_receipt()
        done = bench.vault.maintain(grace=timedelta(hours=24), dry_run=False)
        assert done.policy_texts == (key,)
        assert store.get(key) == text
        bench.submit_receipt()
        assert bench.vault.maintain(grace=timedelta(hours=24), dry_run=True).policy_texts == ()
        named = {e.policy_set for e in bench.vault.reader().events(0, bench.vault.index.size)}
        for policy_set in named - {None}:
            assert policy_set is not None
            load_policy_set(store, policy_set)  # what `audit verify` re-runs decisions on
    finally:
        bench.vault.close()


@pytest.mark.parametrize(("damage", "what"), [(_deleted, "deleted"), (_changed, "changed")])
def test_a_new_policy_set_waits_until_the_damaged_one_in_force_is_restored(
    tmp_path: Path, damage: Callable[[ObjectStore, str], None], what: str
) -> None:
    """A tester's finding: with the text of the set in force damaged and policies/ edited,
    `maintenance` listed nothing and the next act logged the new set and went on; nothing
    would ever write the old text again, and `audit verify` failed for good."""
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    root = bench.vault.paths.root
    bench.vault.close()
    store = bench.real
    [key] = [info.key for info in store.list(POLICY_SET_PREFIX)]
    damage(store, key)
    edited = root / "policies" / "analyst-access.cedar"
    original = edited.read_bytes()
    edited.write_bytes(original + b"\n// edited after the damage\n")
    bench.vault = Vault(root, unseal=lambda: SECRET)
    try:
        size = bench.vault.index.size
        refused = rf"{key}.*policies/ now holds another"
        with pytest.raises(IntegrityError, match=refused) as caught:
            bench.submit_receipt()
        assert "--skip-decision-replay" not in str(caught.value)  # an audit option
        with pytest.raises(IntegrityError, match=refused):
            bench.vault.maintain(grace=timedelta(hours=24), dry_run=True)
        assert bench.vault.reader().size() == size  # the new set was not logged
        assert [info.key for info in store.list(POLICY_SET_PREFIX)] == ([key] * (what != "deleted"))
        # The way out the message gives: the set's files back, `maintenance`, the change.
        edited.write_bytes(original)
        assert bench.vault.maintain(grace=timedelta(hours=24), dry_run=False).policy_texts == (key,)
        edited.write_bytes(original + b"\n// edited after the damage\n")
        bench.submit_receipt()
        bench.audit()
        named = {e.policy_set for e in bench.vault.reader().events(0, bench.vault.index.size)}
        assert len(named - {None}) == 2  # the old set and the new, both stored
        for policy_set in named - {None}:
            assert policy_set is not None
            load_policy_set(store, policy_set)
    finally:
        bench.vault.close()


def test_a_server_is_not_ready_while_a_damaged_policy_text_refuses_every_act(
    tmp_path: Path,
) -> None:
    """A tester's finding: `/readyz` said ready while every act was refused (exit 4) for a
    damaged text of the set in force, and after a policy directory that does not load."""
    from fastapi.testclient import TestClient

    from pcii_vault.service import app as service

    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    root = bench.vault.paths.root
    bench.vault.close()
    [key] = [info.key for info in bench.real.list(POLICY_SET_PREFIX)]
    _deleted(bench.real, key)
    bench.vault = Vault(root, unseal=lambda: SECRET)
    edited = root / "policies" / "analyst-access.cedar"
    original = edited.read_bytes()
    app = service.create_app(bench.vault, spool=service.private_spool(tmp_path / "spool"))
    try:
        with TestClient(app.app) as http:
            for change, said in [
                (original, "pcii maintenance` writes it again"),  # the set in force
                (original + b"\n// edited\n", "policies/ now holds another"),  # replacing it
                (b"permit (", "policy set refused"),  # a directory that does not load
            ]:
                edited.write_bytes(change)
                ready = http.get("/readyz")
                assert ready.status_code == 503, ready.text
                assert said in ready.json()["error"]
                assert ready.json()["ready"] is False
            edited.write_bytes(original)
            bench.vault.maintain(grace=timedelta(hours=24), dry_run=False)
            assert http.get("/readyz").json() == {"ready": True}
            # A tester's finding: damaged while the server ran, after its first check,
            # the text went unnoticed by /readyz, and decisions went on.
            _changed(bench.real, key)
            assert http.get("/readyz").status_code == 503
            with pytest.raises(IntegrityError, match="was changed outside the vault"):
                bench.submit_receipt()
            bench.vault.maintain(grace=timedelta(hours=24), dry_run=False)
            assert http.get("/readyz").json() == {"ready": True}
        assert bench.vault.reader().size() == bench.vault.index.size  # nothing was logged
    finally:
        bench.vault.close()
