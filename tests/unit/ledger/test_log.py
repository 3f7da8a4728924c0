"""Ledger.append and reads: claim-then-commit behaviour on the filesystem store."""

from __future__ import annotations

import base64
import json

import pytest
import structlog.testing

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import BackendError, InputError, IntegrityError
from pcii_vault.ledger.log import CLAIM_PREFIX, Ledger, claim_key, encode_claim, history_key
from pcii_vault.ledger.note import Checkpoint, NoteVerifier
from pcii_vault.ledger.proof import ProofBundle, prove, verify_bundle
from pcii_vault.ledger.tiles import bundle_key, hash_tile_key
from pcii_vault.ledger.tree import leaf_hash, verify_inclusion
from pcii_vault.ledger.verify import verify_log
from pcii_vault.models.event import Event

ORIGIN = "unit.test/log"
KEY = Ed25519PrivateKey(b"\x05" * 32)


def _ledger(store):
    return Ledger(store, ORIGIN, signer=KEY, verifier=KEY.public_key)


def _draft(i, **extra):
    from datetime import UTC, datetime

    return Event(
        seq=0,
        time=datetime(2026, 1, 1, tzinfo=UTC),
        type="notice.sent",
        actor="vault",
        record=f"R{i}",
        **extra,
    )


def test_append_assigns_seq_and_returns_verifiable_proofs(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(i) for i in range(3)])
    result = log.append([_draft(i) for i in range(3, 5)])
    assert result.indices == (3, 4)
    assert [e.seq for e in result.events] == [3, 4]
    for event in result.events:
        path = result.inclusion_proof(event.seq)
        verify_inclusion(
            leaf_hash(event.entry_bytes()), event.seq, result.size, path, result.checkpoint.root
        )


def test_oversized_entry_is_input_error_before_any_write(fs_store):
    with pytest.raises(InputError, match="65536"):
        _ledger(fs_store).append([_draft(0, details={"blob": "x" * 70000})])
    assert list(fs_store.list("log/")) == []


def test_empty_append_is_refused(fs_store):
    with pytest.raises(InputError):
        _ledger(fs_store).append([])


def test_reader_without_key_cannot_append(fs_store):
    reader = Ledger(fs_store, ORIGIN, signer=None, verifier=KEY.public_key)
    with pytest.raises(ValueError, match="read-only"):
        reader.append([_draft(0)])


class DownStore:
    url = "down://"

    def __getattr__(self, name):
        def fail(*args, **kwargs):
            raise BackendError("store unavailable")

        return fail


def test_down_store_raises_backend_error():
    with pytest.raises(BackendError):
        _ledger(DownStore()).append([_draft(0)])


def test_crashed_writers_claim_is_committed_by_next_append(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(0)])
    orphan = _draft(1).model_copy(update={"seq": 1}).entry_bytes()
    fs_store.put_if_absent(claim_key(1), encode_claim([orphan], 1, KEY))  # then died
    result = log.append([_draft(2)])
    assert result.indices == (2,)
    assert list(log.entries(1, 2)) == [orphan]
    assert list(fs_store.list(CLAIM_PREFIX)) == []
    verify_log(fs_store, log.verifier)


def test_stale_claim_below_checkpoint_is_ignored_and_cleaned(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(i) for i in range(4)])
    stale = _draft(9).model_copy(update={"seq": 1}).entry_bytes()
    fs_store.put_if_absent(claim_key(1), encode_claim([stale], 1, KEY))
    log.append([_draft(4)])
    assert [e.record for e in log.events(0, 5)] == ["R0", "R1", "R2", "R3", "R4"]
    assert list(fs_store.list(CLAIM_PREFIX)) == []


def test_a_stale_claim_met_on_the_way_is_never_built_on(fs_store, monkeypatch):
    """A writer that read the checkpoint just before another writer committed slot 2 meets
    a third writer's stale claim at 2 (made with an even older view, about to be withdrawn):
    its act must be decided on the log's real entries 2.., not on the stale claim's."""
    log = _ledger(fs_store)
    log.append([_draft(i) for i in range(2)])
    before_commit, _ = log._read_checkpoint()
    log.append([_draft(2), _draft(3)])  # the slot is committed, its claim cleaned
    stale = [_draft(90 + i).model_copy(update={"seq": 2 + i}).entry_bytes() for i in range(2)]
    fs_store.put_if_absent(claim_key(2), encode_claim(stale, 2, KEY))
    reads = []
    real = log._read_checkpoint

    def first_read_is_old():
        reads.append(1)
        return (before_commit, None) if len(reads) == 1 else real()

    monkeypatch.setattr(log, "_read_checkpoint", first_read_is_old)
    seen = {}

    def build(position, before):
        seen[position] = list(before)
        return [_draft(4)]

    result = log.append_at(build, known_size=2)
    assert result.indices == (4,)
    assert seen[4] == list(log.entries(2, 4))  # the committed R2, R3, never the stale R90, R91
    assert [e.record for e in log.events(0, 5)] == ["R0", "R1", "R2", "R3", "R4"]


def test_junk_tile_at_the_next_width_is_replaced_not_trusted_and_does_not_wedge(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(0)])
    fs_store.put_if_absent(bundle_key(0, 2), b"\x00\x01X\x00\x01Y")
    fs_store.put_if_absent(hash_tile_key(0, 0, 2), b"J" * 64)
    log.append([_draft(1)])
    assert [e.record for e in log.events(0, 2)] == ["R0", "R1"]
    verify_log(fs_store, log.key_string())


def test_proof_bundle_round_trip_and_tamper(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(i) for i in range(10)])
    bundle = ProofBundle.from_json(prove(log, 6).model_dump_json())
    key = NoteVerifier(ORIGIN, KEY.public_key).key_string()
    assert verify_bundle(bundle, key).record == "R6"
    moved = bundle.model_copy(update={"index": 5})
    with pytest.raises(IntegrityError):
        verify_bundle(moved, key)
    other = NoteVerifier(ORIGIN, Ed25519PrivateKey(b"\x06" * 32).public_key)
    with pytest.raises(IntegrityError):
        verify_bundle(bundle, other)


def test_a_bundle_has_one_encoding(fs_store):
    """A tester's finding: `"index": true` (or "6", 6.0) and a proof hash with its unused
    base64 bits set verified, where the checkpoint's parser is strict."""
    log = _ledger(fs_store)
    log.append([_draft(i) for i in range(10)])
    good = json.loads(prove(log, 6).model_dump_json())
    key = NoteVerifier(ORIGIN, KEY.public_key).key_string()
    for index in (True, "6", 6.0):
        with pytest.raises(IntegrityError, match="not a well-formed"):
            ProofBundle.from_json(json.dumps({**good, "index": index}))
    last = good["proof"][0]
    assert last.endswith("=")  # 32 bytes: 4 unused bits before the padding
    loose = last[:-2] + chr(ord(last[-2]) + 1) + "="
    assert base64.b64decode(loose) == base64.b64decode(last)
    bundle = ProofBundle.from_json(json.dumps({**good, "proof": [loose, *good["proof"][1:]]}))
    with pytest.raises(IntegrityError, match="not canonical base64"):
        verify_bundle(bundle, key)


def test_a_forged_claim_is_never_signed_into_the_log(fs_store):
    """Write access to the store is not enough to append: claims carry the log key's signature."""
    log = _ledger(fs_store)
    log.append([_draft(0)])
    forged = _draft(66).model_copy(update={"seq": 1}).entry_bytes()
    mallory = Ed25519PrivateKey.generate()
    fs_store.put_if_absent(claim_key(1), encode_claim([forged], 1, mallory))
    with pytest.raises(IntegrityError, match="forged claim"):
        verify_log(fs_store, log.verifier)
    result = log.append([_draft(2)])
    assert result.indices == (1,)
    assert [e.record for e in log.events(0, 2)] == ["R0", "R2"]
    assert list(fs_store.list(CLAIM_PREFIX)) == []
    verify_log(fs_store, log.verifier)


def test_a_claim_signed_for_another_position_is_forged(fs_store):
    log = _ledger(fs_store)
    log.append([_draft(0)])
    moved = _draft(5).model_copy(update={"seq": 1}).entry_bytes()
    fs_store.put_if_absent(claim_key(1), encode_claim([moved], 7, KEY))
    result = log.append([_draft(1)])
    assert [e.record for e in log.events(0, 2)] == ["R0", "R1"]
    assert result.indices == (1,)


@pytest.mark.parametrize("planted_size", ["current", "next-with-another-root"])
def test_a_history_slot_is_junk_unless_it_holds_that_size(fs_store, planted_size):
    """A signed checkpoint of another size at a slot is junk (replaced); one of the slot's
    size with another root, signed by the log key, is a fork (alarm)."""
    log = _ledger(fs_store)
    log.append([_draft(i) for i in range(3)])
    current = log.checkpoint()
    assert current is not None
    slot = history_key(current.size + 1)
    if planted_size == "current":
        fs_store.put_if_absent(slot, current.note.encode())
        log.append([_draft(3)])
        assert verify_log(fs_store, NoteVerifier(ORIGIN, KEY.public_key)).size == 4
    else:
        forged = Checkpoint.sign(ORIGIN, current.size + 1, b"\x07" * 32, KEY)
        fs_store.put_if_absent(slot, forged.note.encode())
        with pytest.raises(IntegrityError, match="fork alarm"):
            log.append([_draft(3)])


@pytest.mark.parametrize("planted", ["sp ace", "-dash", "a:b", "new\nline"])
def test_junk_among_the_claims_does_not_fail_a_committed_append(fs_store, planted):
    """A tester's finding: a file of a name the vault never writes, planted among the
    claims, made every append fail after its commit (exit 4): a logged permit with no
    release, a validation reported failed that had happened. Removing claims is
    housekeeping: the append returns; the junk is named where the claims are listed."""
    log = _ledger(fs_store)
    log.append([_draft(0)])
    (fs_store.root / "log" / "claims" / planted).write_bytes(b"junk")
    with structlog.testing.capture_logs() as logged:
        result = log.append([_draft(1)])
    assert result.indices == (1,)
    assert log.size() == 2
    assert [e["event"] for e in logged] == ["log_claims_not_removed"]
    with pytest.raises(IntegrityError, match="planted"):
        list(fs_store.list(CLAIM_PREFIX))
