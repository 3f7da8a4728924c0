"""verify_log detects every kind of tampering, on the filesystem store and SeaweedFS."""

from __future__ import annotations

import pytest
from ledger_support import ORIGIN, draft, forge_log, ledger, replace, signer, verifier

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.log import CHECKPOINT_KEY, claim_key, encode_claim, history_key
from pcii_vault.ledger.note import Checkpoint, parse_checkpoint
from pcii_vault.ledger.tiles import bundle_key, decode_bundle, encode_bundle, hash_tile_key
from pcii_vault.ledger.verify import verify_log

SIZES = (300, 5, 1)  # one full bundle, then partial bundles of widths 44, 49 and 50


@pytest.fixture
def log_store(any_store):
    log = ledger(any_store)
    start = 0
    for count in SIZES:
        log.append([draft("a", start + i) for i in range(count)])
        start += count
    return any_store


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0x01]) + data[at + 1 :]


def test_clean_log_verifies(log_store):
    report = verify_log(log_store, verifier())
    assert report.size == 306
    assert report.events == 306
    assert report.history == 3
    assert report.pending == ()


def test_pending_claim_is_reported_not_verified(log_store):
    log_store.put_if_absent(
        claim_key(306), encode_claim([draft("b", 0).entry_bytes()], 306, signer())
    )
    report = verify_log(log_store, verifier())
    assert any("claims/" in p and "awaiting commit" in p for p in report.pending)


def test_modified_entry(log_store):
    key = bundle_key(0, 256)
    entries = decode_bundle(log_store.get(key), 256)
    entries[7] = entries[7].replace(b"R-a-7", b"R-a-X")
    replace(log_store, key, encode_bundle(entries))
    with pytest.raises(IntegrityError, match=r"entry 7 .*does not match"):
        verify_log(log_store, verifier())


def test_deleted_entry(log_store):
    key = bundle_key(0, 256)
    entries = decode_bundle(log_store.get(key), 256)
    replace(log_store, key, encode_bundle(entries[:10] + entries[11:]))
    with pytest.raises(IntegrityError, match=r"entry_bundle|tile/entries/000 is truncated"):
        verify_log(log_store, verifier())


def test_inserted_entry(log_store):
    key = bundle_key(0, 256)
    entries = decode_bundle(log_store.get(key), 256)
    replace(log_store, key, encode_bundle([*entries[:10], entries[10], *entries[10:]]))
    with pytest.raises(IntegrityError, match=r"entry 11 .*seq 10|trailing"):
        verify_log(log_store, verifier())


def test_reordered_entries(log_store):
    key = bundle_key(0, 256)
    entries = decode_bundle(log_store.get(key), 256)
    entries[3], entries[4] = entries[4], entries[3]
    replace(log_store, key, encode_bundle(entries))
    with pytest.raises(IntegrityError, match=r"entry 3 .*does not match its leaf hash"):
        verify_log(log_store, verifier())


def test_missing_tile(log_store):
    log_store.delete(hash_tile_key(0, 0, 256))
    with pytest.raises(IntegrityError, match=r"missing tile log/tile/0/000"):
        verify_log(log_store, verifier())


def test_missing_entry_bundle(log_store):
    log_store.delete(bundle_key(1, 50))
    with pytest.raises(IntegrityError, match=r"missing tile log/tile/entries/001.p/50"):
        verify_log(log_store, verifier())


def test_truncated_tile(log_store):
    key = hash_tile_key(0, 0, 256)
    replace(log_store, key, log_store.get(key)[:-1])
    with pytest.raises(IntegrityError, match=r"log/tile/0/000 has 8191 bytes"):
        verify_log(log_store, verifier())


def test_trailing_bytes_on_tile(log_store):
    key = hash_tile_key(0, 1, 50)
    replace(log_store, key, log_store.get(key) + b"\x00")
    with pytest.raises(IntegrityError, match=r"log/tile/0/001.p/50 has 1601 bytes"):
        verify_log(log_store, verifier())


def test_trailing_bytes_on_bundle(log_store):
    key = bundle_key(1, 50)
    replace(log_store, key, log_store.get(key) + b"\x00")
    with pytest.raises(IntegrityError, match=r"trailing bytes"):
        verify_log(log_store, verifier())


def test_checkpoint_signed_by_unknown_key(log_store):
    cp = parse_checkpoint(log_store.get(CHECKPOINT_KEY), verifier())
    forged = Checkpoint.sign(ORIGIN, cp.size, cp.root, Ed25519PrivateKey(b"\x07" * 32))
    replace(log_store, CHECKPOINT_KEY, forged.note.encode())
    with pytest.raises(IntegrityError, match=r"log/checkpoint: signed note carries no signature"):
        verify_log(log_store, verifier())


def test_rollback_against_trusted_checkpoint(log_store):
    trusted = parse_checkpoint(log_store.get(CHECKPOINT_KEY), verifier())
    replace(log_store, CHECKPOINT_KEY, log_store.get(history_key(300)))
    with pytest.raises(IntegrityError, match=r"rollback: .*size 300, smaller than .*306"):
        verify_log(log_store, verifier(), trusted=trusted)


def test_rollback_against_history(log_store):
    replace(log_store, CHECKPOINT_KEY, log_store.get(history_key(300)))
    with pytest.raises(IntegrityError, match=r"rollback: log/checkpoint has size 300"):
        verify_log(log_store, verifier())


def test_fork_two_checkpoints_same_size_different_roots(log_store):
    other = Checkpoint.sign(ORIGIN, 305, b"\x11" * 32, signer())
    replace(log_store, history_key(305), other.note.encode())
    with pytest.raises(IntegrityError, match=r"fork: log/checkpoints/0+305"):
        verify_log(log_store, verifier())


def test_fork_inconsistent_history_checkpoint(log_store):
    other = Checkpoint.sign(ORIGIN, 200, b"\x22" * 32, signer())
    log_store.put_if_absent(history_key(200), other.note.encode())
    with pytest.raises(IntegrityError, match=r"fork: log/checkpoints/0+200"):
        verify_log(log_store, verifier())


def test_fork_against_trusted_checkpoint(log_store):
    trusted = Checkpoint.sign(ORIGIN, 100, b"\x33" * 32, signer())
    with pytest.raises(IntegrityError, match=r"fork: the trusted checkpoint"):
        verify_log(log_store, verifier(), trusted=trusted)


def test_sequence_gap(any_store):
    events = [draft("g", i).model_copy(update={"seq": i}) for i in range(5)]
    events[3] = events[3].model_copy(update={"seq": 4})
    forge_log(any_store, [e.entry_bytes() for e in events])
    with pytest.raises(IntegrityError, match=r"entry 3 .*carries seq 4"):
        verify_log(any_store, verifier())


def test_unknown_event_type(any_store):
    good = draft("u", 0).model_copy(update={"seq": 0}).entry_bytes()
    forge_log(
        any_store,
        [good, good.replace(b'"seq":0', b'"seq":1').replace(b"access.decided", b"access.novel")],
    )
    with pytest.raises(IntegrityError, match=r"entry 1 .*not a known event"):
        verify_log(any_store, verifier())


def test_unexpected_object_under_log(log_store):
    log_store.put_if_absent("log/notes.txt", b"hello")
    with pytest.raises(IntegrityError, match=r"unexpected object under log/: log/notes.txt"):
        verify_log(log_store, verifier())


def test_flipped_byte_in_any_committed_object_is_detected(log_store):
    keys = [info.key for info in log_store.list("log/") if not info.key.startswith("log/claims/")]
    assert len(keys) > 10
    for key in keys:
        original = log_store.get(key)
        replace(log_store, key, _flip(original, len(original) // 2))
        with pytest.raises(IntegrityError):
            verify_log(log_store, verifier())
        replace(log_store, key, original)
    verify_log(log_store, verifier())


def test_event_checker_hook_rejects_illegal_history(log_store):
    def no_retrieve(event):
        if event.seq == 42:
            raise IntegrityError(f"entry {event.seq}: release of a destroyed record")

    with pytest.raises(IntegrityError, match="entry 42: release"):
        verify_log(log_store, verifier(), event_checker=no_retrieve)
