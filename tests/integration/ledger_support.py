"""Shared builders for the ledger integration tests (not a test module)."""

from __future__ import annotations

from datetime import UTC, datetime

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.ledger.log import CHECKPOINT_KEY, Ledger
from pcii_vault.ledger.note import Checkpoint, NoteVerifier
from pcii_vault.ledger.tiles import build_tiles
from pcii_vault.ledger.tree import leaf_hash, root_from_leaf_hashes
from pcii_vault.models.event import Event
from pcii_vault.store.base import ObjectStore

ORIGIN = "pcii-vault.test/log"
SEED = bytes(range(32))
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def signer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey(SEED)


def verifier() -> NoteVerifier:
    return NoteVerifier(ORIGIN, signer().public_key)


def ledger(store: ObjectStore) -> Ledger:
    key = signer()
    return Ledger(store, ORIGIN, signer=key, verifier=key.public_key, clock=lambda: T0)


def draft(writer: int | str, i: int) -> Event:
    return Event(
        seq=0,
        time=T0,
        type="access.decided",
        actor=f"writer-{writer}",
        record=f"R-{writer}-{i}",
        action="retrieve",
        decision="permit",
        details={"writer": str(writer), "i": i},
    )


def forge_log(store: ObjectStore, entries: list[bytes]) -> Checkpoint:
    """Write tiles and a checkpoint signed by the real key for arbitrary entries."""
    for key, data in build_tiles(0, entries, store.get).items():
        store.put_if_absent(key, data)
    root = root_from_leaf_hashes([leaf_hash(e) for e in entries])
    cp = Checkpoint.sign(ORIGIN, len(entries), root, signer())
    store.put_if_absent(CHECKPOINT_KEY, cp.note.encode())
    return cp


def replace(store: ObjectStore, key: str, data: bytes) -> None:
    store.delete(key)
    store.put_if_absent(key, data)
