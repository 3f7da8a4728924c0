"""An index file written by someone else while the vault works with it.

A tester's finding: the vault checked the index file's tag, let SQLite write its
transaction into the file, then tagged the file as it found it. An attacker with write
access to the vault directory (no secret) who wrote a forged page while the transaction
was open had it tagged as the vault's: a suspended analyst active again, a record's row
deleted (which `maintenance` then shredded, with a clean audit). The vault now queries an
in-memory copy of the bytes whose tag it checked, and writes and tags its own copy's bytes:
what is written into the file meanwhile is never read as a fact, nor tagged.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import BackendError, IntegrityError, PolicyDenied
from pcii_vault.index import Index
from pcii_vault.vault import Vault

SECRET = b"written-meanwhile-unseal-secret"


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[VaultBench]:
    made = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional capture " * 50)
    yield made
    made.vault.close()


def _forged(index: Path, scratch: Path) -> bytes:
    """The index's bytes with the suspended office active again (as an attacker makes it)."""
    copy = scratch / "forged.sqlite"
    shutil.copyfile(index, copy)
    db = sqlite3.connect(copy, isolation_level=None)
    try:
        db.execute(
            "UPDATE principals SET status = 'active', "
            "document = replace(document, '\"suspended\"', '\"active\"') WHERE id = 'office'"
        )
    finally:
        db.close()
    return copy.read_bytes()


def _office_status(vault: Vault, bench: VaultBench, tracking: str) -> object:
    return vault.status(vault.sign(bench.ids["office"], "status", record=tracking))


def _refused_here_and_in_a_new_process(
    bench: VaultBench, tracking: str, error: type[Exception], match: str
) -> None:
    """The office's status refused by the running vault, and by one opened afresh."""
    with pytest.raises(error, match=match):
        _office_status(bench.vault, bench, tracking)
    fresh = Vault(bench.vault.paths.root, unseal=lambda: SECRET)
    try:
        with pytest.raises(error, match=match):
            _office_status(fresh, bench, tracking)
    finally:
        fresh.close()


def _write_in_place(path: Path, data: bytes) -> None:
    with path.open("r+b") as handle:  # the same inode, as a write into the open file
        handle.write(data)


def test_a_page_written_while_the_vault_writes_is_not_tagged_as_its_own(
    bench: VaultBench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = bench.submit_receipt().tracking_number
    bench.update("office", status="suspended")
    with pytest.raises(PolicyDenied, match="suspended"):
        _office_status(bench.vault, bench, tracking)
    index = bench.vault.paths.index
    forged = _forged(index, tmp_path)
    persist = Index._persist_locked

    def attacker_writes_first(self: Index) -> None:
        _write_in_place(index, forged)  # during the vault's write, before its tag
        persist(self)

    monkeypatch.setattr(Index, "_persist_locked", attacker_writes_first)
    bench.submit_receipt()  # anyone's ordinary act
    monkeypatch.undo()

    _refused_here_and_in_a_new_process(bench, tracking, PolicyDenied, "suspended")
    assert index.read_bytes() != forged
    bench.audit()


def test_a_page_written_after_the_check_never_decides(
    bench: VaultBench, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracking = bench.submit_receipt().tracking_number
    bench.update("office", status="suspended")
    index = bench.vault.paths.index
    forged = _forged(index, tmp_path)
    verify = Index._verify_locked

    def check_then_attacker_writes(self: Index) -> None:
        verify(self)
        _write_in_place(index, forged)  # between the tag's check and the decision's reads

    monkeypatch.setattr(Index, "_verify_locked", check_then_attacker_writes)
    # Denied on the facts checked, or refused at the act's next look at the file.
    with pytest.raises((PolicyDenied, IntegrityError), match=r"suspended|outside the vault"):
        _office_status(bench.vault, bench, tracking)
    monkeypatch.undo()

    # The next look finds the file changed, and names it.
    with pytest.raises(IntegrityError, match="changed outside the vault"):
        _office_status(bench.vault, bench, tracking)


@pytest.mark.parametrize("size", ["abc", "12.0", "-1", "99999999999999999999"])
def test_an_edited_size_is_named_as_tampering(bench: VaultBench, size: str) -> None:
    """A tester's finding: a size that is no number (or no size of the log) was exit 1."""
    tracking = bench.submit_receipt().tracking_number
    index = bench.vault.paths.index
    db = sqlite3.connect(index, isolation_level=None)
    try:
        db.execute("UPDATE meta SET value = ? WHERE key = 'size'", (size,))
    finally:
        db.close()
    _refused_here_and_in_a_new_process(bench, tracking, IntegrityError, "index")


def test_an_index_grown_past_any_size_the_vault_writes_is_not_read(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vault reads the index into memory: a huge sparse file planted there is refused
    by its size, not read."""
    tracking = bench.submit_receipt().tracking_number
    monkeypatch.setattr("pcii_vault.index._MAX_INDEX_BYTES", 1 << 20)
    index = bench.vault.paths.index
    with index.open("r+b") as handle:
        handle.truncate(2 << 20)  # sparse: nothing written
    _refused_here_and_in_a_new_process(bench, tracking, IntegrityError, "larger than any index")


@pytest.mark.parametrize("size", [(2 << 30) + (1 << 20), (2 << 30) - 256])
def test_an_index_sqlite_cannot_load_is_refused_by_its_size(bench: VaultBench, size: int) -> None:
    """A tester's finding: a sparse index between 2 and 4 GiB was read (2 GiB into
    memory) and then exit 1 (MemoryError); the next: one of 2 GiB less 256 bytes, let
    through as loadable, too (SQLite loads at most 2 GiB less 257 bytes)."""
    tracking = bench.submit_receipt().tracking_number
    with bench.vault.paths.index.open("r+b") as handle:
        handle.truncate(size)  # sparse: nothing written
    _refused_here_and_in_a_new_process(bench, tracking, IntegrityError, "larger than any index")
    with pytest.raises(IntegrityError) as refused:  # the way out, said once
        _office_status(bench.vault, bench, tracking)
    assert str(refused.value).count("pcii index rebuild") == 1


def test_an_index_grown_past_what_sqlite_loads_is_not_written(
    bench: VaultBench, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The vault never writes an index it could not read back: the act fails (the
    store and the log are as they were) with a one-line error naming the limit."""
    tracking = bench.submit_receipt().tracking_number
    before = bench.vault.paths.index.read_bytes()
    monkeypatch.setattr("pcii_vault.index._MAX_INDEX_BYTES", len(before) - 1)
    request = bench.vault.sign(bench.ids["office"], "validate", record=tracking)
    with pytest.raises(BackendError, match="largest index SQLite loads"):
        bench.vault.transition(request, "submission.validated")
    assert bench.vault.paths.index.read_bytes() == before


def test_an_untagged_index_ahead_of_the_log_may_be_an_edit_and_says_so(bench: VaultBench) -> None:
    """A tester's finding: one edited number (the index's size, its tag failing then) was
    called a rollback of the log, sending the operator after a backup that never was."""
    tracking = bench.submit_receipt().tracking_number
    db = sqlite3.connect(bench.vault.paths.index, isolation_level=None)
    try:
        db.execute("UPDATE meta SET value = '9999' WHERE key = 'size'")
    finally:
        db.close()
    _refused_here_and_in_a_new_process(
        bench, tracking, IntegrityError, "or the index was changed outside the vault"
    )


def test_an_index_replaced_under_a_running_vault_gives_its_advice_once(
    bench: VaultBench,
) -> None:
    """A tester's finding (under `pcii serve`): "...; remove it and run `pcii index
    rebuild`; run `pcii index rebuild` to rebuild it from the verified log"."""
    tracking = bench.submit_receipt().tracking_number
    index = bench.vault.paths.index
    index.unlink()
    index.mkdir()
    with pytest.raises(IntegrityError) as refused:
        _office_status(bench.vault, bench, tracking)
    assert str(refused.value).count("pcii index rebuild") == 1, refused.value
    index.rmdir()
