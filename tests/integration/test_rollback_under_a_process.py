"""A vault put back whole to an older copy under a process that saw it newer.

A tester's finding: under a running `pcii serve`, the store, the vault directory's
checkpoint anchor and the index, all put back to an older consistent copy, were taken as
the vault's state: a principal revoked a moment before was released a record. The
process itself signed the newer checkpoint; it now holds the log to it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import IntegrityError
from pcii_vault.ledger.anchor import CheckpointAnchor

SECRET = b"rollback-under-a-process"
_STATE = ("objects", "index.sqlite", "index.sqlite.mac", "log-checkpoint")


def _copy(vault_dir: Path, into: Path) -> None:
    into.mkdir()
    for name in _STATE:
        source = vault_dir / name
        if source.is_dir():
            shutil.copytree(source, into / name, symlinks=True)
        elif source.exists():
            shutil.copy2(source, into / name)


def _put_back(saved: Path, vault_dir: Path, names: tuple[str, ...]) -> None:
    for name in names:
        target = vault_dir / name
        if target.is_dir():
            shutil.rmtree(target)
        else:
            target.unlink(missing_ok=True)
        source = saved / name
        if source.is_dir():
            shutil.copytree(source, target, symlinks=True)
        elif source.exists():
            shutil.copy2(source, target)


@pytest.mark.parametrize(
    "names",
    [_STATE, ("objects", "log-checkpoint"), ("objects",)],
    ids=["store, anchor and index", "store and anchor", "store"],
)
def test_an_older_copy_put_back_under_an_open_vault_is_a_rollback(
    tmp_path: Path, names: tuple[str, ...]
) -> None:
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    vault_dir = bench.vault.paths.root
    saved = tmp_path / "older"
    _copy(vault_dir, saved)
    bench.update("owner", status="suspended")
    bench.vault.sync()
    _put_back(saved, vault_dir, names)
    bench.vault._synced_since = float("-inf")  # as a request after the copy went back
    with pytest.raises(IntegrityError, match=r"rollback|rolled back"):
        bench.vault.sync()
    # Still refused on every later look, and the revocation is not undone meanwhile.
    with pytest.raises(IntegrityError):
        bench.vault.sync()


def test_the_anchor_never_goes_back_below_what_it_read(tmp_path: Path) -> None:
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    path = bench.vault.paths.anchor
    verifier = bench.vault.reader().verifier
    older = path.read_bytes()
    bench.update("owner", status="suspended")
    anchor = CheckpointAnchor(path)
    newest = anchor.load(verifier)
    assert newest is not None
    path.write_bytes(older)
    assert anchor.load(verifier) == newest
    path.unlink()
    assert anchor.load(verifier) == newest
    # A fresh object reads the file as it is: the floor is what this process saw.
    assert CheckpointAnchor(path).load(verifier) is None
