"""Reads and appends trust only the signed root and the vault's anchor, never tiles alone.

Each test plays an attacker with write access to the store (no log key): rewrite an entry
and recompute its hash tile, put back an older checkpoint, delete the history.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.anchor import CheckpointAnchor
from pcii_vault.ledger.log import CHECKPOINT_KEY, Ledger, history_key
from pcii_vault.ledger.note import NoteVerifier
from pcii_vault.ledger.tiles import bundle_key, decode_bundle, encode_bundle, hash_tile_key
from pcii_vault.ledger.tree import leaf_hash
from pcii_vault.ledger.verified import VerifiedTiles
from pcii_vault.ledger.verify import verify_log
from pcii_vault.models.event import Event

ORIGIN = "unit.test/log"
KEY = Ed25519PrivateKey(b"\x07" * 32)
VERIFIER = NoteVerifier(ORIGIN, KEY.public_key)


def _ledger(store, anchor=None):
    return Ledger(store, ORIGIN, signer=KEY, verifier=KEY.public_key, anchor=anchor)


def _draft(i):
    return Event(
        seq=0,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        type="notice.sent",
        actor="vault",
        record=f"R{i}",
    )


def _overwrite(store, key, data):
    _, etag = store.get_with_etag(key)
    store.put_if_match(key, data, etag)


def _forge_entry(store, n, width, position, new_entry):
    """Rewrite one entry of bundle `n` and recompute its level-0 tile (SHA-256 only)."""
    entries = decode_bundle(store.get(bundle_key(n, width)), width)
    entries[position] = new_entry
    _overwrite(store, bundle_key(n, width), encode_bundle(entries))
    _overwrite(store, hash_tile_key(0, n, width), b"".join(leaf_hash(e) for e in entries))


def _forged_event(seq):
    return Event(
        seq=seq,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        type="notice.sent",
        actor="vault",
        record="X",
    ).entry_bytes()


def test_a_forged_entry_in_the_partial_bundle_is_never_extended_or_read(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(i) for i in range(5)])
    _forge_entry(fs_store, 0, 5, 2, _forged_event(2))
    with pytest.raises(IntegrityError, match=r"signed (root|tree)"):
        log.append([_draft(5)])
    with pytest.raises(IntegrityError, match=r"signed (root|tree)"):
        list(_ledger(fs_store).entries(0, 5))
    # Nothing was signed over the forgery.
    assert _ledger(fs_store).size() == 5


def test_a_forged_entry_in_a_full_bundle_is_caught_by_its_parent_tile(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(i) for i in range(300)])
    _forge_entry(fs_store, 0, 256, 10, _forged_event(10))
    reader = _ledger(fs_store)
    assert [e.record for e in reader.events(256, 300)] == [f"R{i}" for i in range(256, 300)]
    with pytest.raises(IntegrityError, match="does not belong to the signed tree"):
        list(reader.entries(0, 20))


def test_a_bundle_that_differs_from_an_authenticated_tile_is_named(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(i) for i in range(3)])
    entries = decode_bundle(fs_store.get(bundle_key(0, 3)), 3)
    entries[1] = _forged_event(1)
    _overwrite(fs_store, bundle_key(0, 3), encode_bundle(entries))
    with pytest.raises(IntegrityError, match=r"entry 1 \(log/tile/entries/000.p/3\)"):
        list(_ledger(fs_store).entries(0, 3))


def test_verified_tiles_reproduce_the_root_at_many_sizes(fs_store):
    log = _ledger(fs_store)
    for size in (1, 255, 256, 257, 511, 512, 700):
        log.append([_draft(i) for i in range(size - log.size())])
        cp = log.checkpoint()
        tiles = VerifiedTiles(fs_store, cp)
        assert len(list(tiles.entries(0, size))) == size


def test_rollback_to_an_older_signed_checkpoint_is_refused(fs_store, tmp_path):
    anchor = CheckpointAnchor(tmp_path / "anchor")
    log = _ledger(fs_store, anchor)
    log.append([_draft(0)])
    old = fs_store.get(CHECKPOINT_KEY)
    log.append([_draft(1)])
    _overwrite(fs_store, CHECKPOINT_KEY, old)
    with pytest.raises(IntegrityError, match="rollback"):
        _ledger(fs_store, anchor).size()
    with pytest.raises(IntegrityError, match="rollback"):
        _ledger(fs_store, anchor).append([_draft(2)])


def test_a_long_lived_reader_refuses_a_rollback_to_a_checkpoint_it_trusted(fs_store, tmp_path):
    """A server's reader once proved checkpoint 1; put back after 2, it is a rollback."""
    anchor = CheckpointAnchor(tmp_path / "anchor")
    writer = _ledger(fs_store, anchor)
    writer.append([_draft(0)])
    reader = Ledger(fs_store, ORIGIN, signer=None, verifier=KEY.public_key, anchor=anchor)
    assert reader.size() == 1
    old = fs_store.get(CHECKPOINT_KEY)
    writer.append([_draft(1)])  # another process of the vault: the anchor moves to 2
    _overwrite(fs_store, CHECKPOINT_KEY, old)
    with pytest.raises(IntegrityError, match="rollback"):
        reader.size()


def test_a_checkpoint_read_while_another_process_commits_is_no_rollback(fs_store, tmp_path):
    """The anchor is read before the store: a commit in between only makes it newer."""
    anchor = CheckpointAnchor(tmp_path / "anchor")
    writer = _ledger(fs_store, anchor)
    writer.append([_draft(0)])
    reader = Ledger(fs_store, ORIGIN, signer=None, verifier=KEY.public_key, anchor=anchor)
    real_get = fs_store.get_with_etag
    committing = []

    def get_then_another_commit(key):
        got = real_get(key)
        if key == CHECKPOINT_KEY and not committing:
            committing.append(1)  # the writer's own reads go straight through
            try:
                writer.append([_draft(len(committing))])  # store and anchor move on
            finally:
                committing.clear()
        return got

    fs_store.get_with_etag = get_then_another_commit
    assert reader.size() == 1  # what it read; the anchor is at 2 by now
    assert reader.size() == 2


def test_a_vanished_checkpoint_the_vault_signed_is_reported(fs_store, tmp_path):
    anchor = CheckpointAnchor(tmp_path / "anchor")
    log = _ledger(fs_store, anchor)
    log.append([_draft(0)])
    log.append([_draft(1)])
    fs_store.delete(history_key(2))
    with pytest.raises(IntegrityError, match="vanished"):
        _ledger(fs_store, anchor).size()


def test_a_deleted_log_is_reported_against_the_anchor(fs_store, tmp_path):
    anchor = CheckpointAnchor(tmp_path / "anchor")
    _ledger(fs_store, anchor).append([_draft(0)])
    fs_store.delete(CHECKPOINT_KEY)
    with pytest.raises(IntegrityError, match="missing but this vault signed"):
        _ledger(fs_store, anchor).size()


def test_a_log_replaced_by_another_tree_is_a_fork(fs_store, tmp_path):
    """Same key, another history from the start: the anchor's tree is not inside it."""
    anchor = CheckpointAnchor(tmp_path / "anchor")
    _ledger(fs_store, anchor).append([_draft(0)])
    for info in list(fs_store.list("log/")):
        fs_store.delete(info.key)
    other = _ledger(fs_store)
    other.append([_draft(9)])
    other.append([_draft(8)])
    with pytest.raises(IntegrityError, match="fork"):
        _ledger(fs_store, anchor).size()


def test_the_anchor_moves_only_forward(fs_store, tmp_path):
    anchor = CheckpointAnchor(tmp_path / "anchor")
    log = _ledger(fs_store, anchor)
    log.append([_draft(0)])
    small = log.checkpoint()
    log.append([_draft(1)])
    anchor.advance(small, VERIFIER)
    loaded = anchor.load(VERIFIER)
    assert loaded is not None
    assert loaded.size == 2


def test_a_planted_history_checkpoint_does_not_wedge_appends(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(0)])
    fs_store.put_if_absent(history_key(2), b"junk")
    log.append([_draft(1)])
    verify_log(fs_store, log.key_string())
