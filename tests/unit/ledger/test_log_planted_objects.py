"""The log against huge planted objects: refused unread where they must be the log's,
removed where they are junk at a key the next commit writes (never a wedge)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from vault_support import outcome_within

from pcii_vault.crypto.signing import Ed25519PrivateKey
from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.anchor import CheckpointAnchor
from pcii_vault.ledger.log import CHECKPOINT_KEY, Ledger, claim_key, history_key
from pcii_vault.ledger.note import NoteVerifier
from pcii_vault.ledger.tiles import bundle_key, hash_tile_key
from pcii_vault.ledger.verify import verify_log
from pcii_vault.store.filesystem import FilesystemStore
from tests.integration.ledger_support import draft

ORIGIN = "unit.test/log"
KEY = Ed25519PrivateKey(b"\x05" * 32)
MAX_WHOLE_OBJECT_BYTES = 64 << 20  # store.base.MAX_WHOLE_OBJECT_BYTES
HUGE = 4 * MAX_WHOLE_OBJECT_BYTES  # sparse: no disk space, 256 MiB if read


def _ledger(store: FilesystemStore, anchor: CheckpointAnchor | None = None) -> Ledger:
    return Ledger(store, ORIGIN, signer=KEY, verifier=KEY.public_key, anchor=anchor)


def _plant_sparse(path: Path, size: int = HUGE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as stream:
        stream.truncate(size)


class _Peak:
    """The peak of Python allocations inside the block, in bytes."""

    def __enter__(self) -> _Peak:
        tracemalloc.start()
        self.peak = 0
        return self

    def __exit__(self, *exc: object) -> None:
        self.peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()


@pytest.mark.parametrize(
    "junk",
    [
        lambda: bundle_key(0, 2),
        lambda: hash_tile_key(0, 0, 2),
        lambda: history_key(2),
        lambda: claim_key(1),
    ],
    ids=["next-bundle", "next-hash-tile", "next-history", "next-claim"],
)
def test_a_huge_object_at_a_key_the_next_append_writes_is_removed_unread(
    fs_store: FilesystemStore, junk: object
) -> None:
    log = _ledger(fs_store)
    log.append([draft("t", 0)])
    key = junk()  # type: ignore[operator]
    _plant_sparse(fs_store.root / key)
    with _Peak() as memory:
        result = log.append([draft("t", 1)])
    assert memory.peak < MAX_WHOLE_OBJECT_BYTES // 4
    assert result.indices == (1,)
    assert [e.record for e in log.events(0, 2)] == ["R-t-0", "R-t-1"]
    verify_log(fs_store, log.verifier)


def test_a_huge_checkpoint_is_integrity_error_for_readers_and_audit(
    fs_store: FilesystemStore,
) -> None:
    log = _ledger(fs_store)
    log.append([draft("t", 0)])
    (fs_store.root / CHECKPOINT_KEY).unlink()
    _plant_sparse(fs_store.root / CHECKPOINT_KEY)
    with _Peak() as memory:
        with pytest.raises(IntegrityError):
            _ledger(fs_store).checkpoint()
        with pytest.raises(IntegrityError):
            verify_log(fs_store, log.verifier)
    assert memory.peak < MAX_WHOLE_OBJECT_BYTES // 4


def test_a_huge_anchor_file_is_integrity_error_unread(tmp_path: Path) -> None:
    anchor_path = tmp_path / "log-checkpoint"
    _plant_sparse(anchor_path)
    verifier = NoteVerifier(ORIGIN, KEY.public_key)
    with _Peak() as memory, pytest.raises(IntegrityError, match="too large"):
        CheckpointAnchor(anchor_path).load(verifier)
    assert memory.peak < MAX_WHOLE_OBJECT_BYTES // 4


@pytest.mark.parametrize("planted", ["fifo", "dev-zero"])
def test_a_fifo_or_device_at_the_anchor_is_integrity_error_not_a_hang(
    tmp_path: Path, planted: str
) -> None:
    """The audit commands read a vault's anchor without the vault's own file checks."""
    import os

    anchor_path = tmp_path / "log-checkpoint"
    if planted == "fifo":
        os.mkfifo(anchor_path)
    else:
        anchor_path.symlink_to("/dev/zero")
    verifier = NoteVerifier(ORIGIN, KEY.public_key)
    error = outcome_within(lambda: CheckpointAnchor(anchor_path).load(verifier))
    assert isinstance(error, IntegrityError)
    # The vault writes a file there, never a link: a link is refused before it is read.
    assert ("not a regular file" if planted == "fifo" else "is a symlink") in str(error)
