"""A server's release held in memory (`Vault.serve_release`): the same files, no disk.

Below the size limit and with nothing to stamp, the release is held in memory with the
same file names and bytes the staged release writes; above it, it is staged in the
spool (removed afterwards); a tampered attachment fails as it does on disk, and nothing
is released.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import IntegrityError
from pcii_vault.models.request import SignedRequest
from pcii_vault.vault import HeldRelease, StagedRelease

ATTACHMENT = b"fictional capture " * 3000  # 54 kB, not a PDF: nothing to stamp


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[VaultBench]:
    made = VaultBench(tmp_path, secret=b"held-release-secret", attachment_bytes=ATTACHMENT)
    yield made
    made.vault.close()


@pytest.fixture
def spool(tmp_path: Path) -> Path:
    made = tmp_path / "spool"
    made.mkdir()
    return made


def _review(bench: VaultBench, tracking: str) -> SignedRequest:
    return bench.vault.sign(bench.ids["office"], "review", record=tracking, purpose="review")


def test_a_small_release_is_held_in_memory_with_the_files_a_staged_one_writes(
    bench: VaultBench, spool: Path
) -> None:
    tracking = bench.submit_receipt().tracking_number
    with bench.vault.serve_release(_review(bench, tracking), spool, in_memory=1 << 20) as held:
        assert isinstance(held, HeldRelease)
        assert not list(spool.iterdir())  # nothing touched the disk
        contents = dict(held.contents)
        names = held.files
    with bench.vault.open_release(_review(bench, tracking), spool) as staged:
        assert staged.files == names
        on_disk = {name: (staged.directory / name).read_bytes() for name in staged.files}
    assert set(contents) == set(on_disk)
    attachment = next(name for name in names if name.startswith("attachments/"))
    assert contents[attachment] == on_disk[attachment] == ATTACHMENT
    assert all(contents[name] for name in names)
    assert not list(spool.iterdir())


def test_a_release_over_the_limit_is_staged_in_the_spool_and_removed(
    bench: VaultBench, spool: Path
) -> None:
    tracking = bench.submit_receipt().tracking_number
    with bench.vault.serve_release(_review(bench, tracking), spool, in_memory=1024) as staged:
        assert isinstance(staged, StagedRelease)
        assert staged.directory.parent == spool
        attachment = next(n for n in staged.files if n.startswith("attachments/"))
        assert (staged.directory / attachment).read_bytes() == ATTACHMENT
    assert not list(spool.iterdir())


def test_a_tampered_attachment_held_in_memory_fails_and_nothing_is_released(
    bench: VaultBench, spool: Path
) -> None:
    tracking = bench.submit_receipt().tracking_number
    store = bench.real
    key = next(
        info.key
        for info in store.list(f"records/{tracking}/")
        if not info.key.endswith("/document")
    )
    stored = bytearray(store.get(key))
    stored[len(stored) // 2] ^= 1
    store.delete(key)
    store.put_if_absent(key, bytes(stored))
    with (
        pytest.raises(IntegrityError),
        bench.vault.serve_release(_review(bench, tracking), spool, in_memory=1 << 20),
    ):
        pytest.fail("a tampered attachment was released")
    assert not list(spool.iterdir())
