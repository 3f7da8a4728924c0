"""A rollback journal planted beside the index of a long-lived vault object (a server).

SQLite rolls a hot journal back into the database file at the next read: a journal
crafted from a copy of the index, with a suspended principal made active again, would
decide reads on facts the vault never wrote. The vault never lets SQLite open the index
file: it reads the file's bytes, checks their tag and queries a copy of them in memory,
so a journal beside the file is never read, whoever left it; the next write removes it.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import PolicyDenied
from pcii_vault.vault import Vault

SECRET = b"hot-journal-tests-unseal-secret"
WATER = "Water and Wastewater Systems"


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[VaultBench]:
    made = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional capture " * 50)
    made.add("water", "analyst", "EPA Water", "federal", sectors=[WATER])
    yield made
    made.vault.close()


def _suspend(vault: Vault, bench: VaultBench, who: str) -> None:
    changes = {"status": "suspended"}
    request = vault.sign(
        bench.ids["admin"],
        "manage-principals",
        params={"op": "update", "principal": who, "changes": changes},
    )
    vault.update_principal(request, who, changes)


def _journal(index: Path, scratch: Path, change: str | None, write: str) -> bytes:
    """A hot journal that, rolled back into `index`, leaves its pages as after `change`.

    Made the way an attacker would: on a copy, commit `change`, then begin a
    transaction that `write`s the same pages (SQLite journals a page it changes) and
    keep its journal (synchronous off: SQLite writes the journal's header at once, as
    for a transaction a crash cut short).
    """
    copy = scratch / "copy.sqlite"
    shutil.copyfile(index, copy)
    db = sqlite3.connect(copy, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        if change is not None:
            db.execute(change)
        db.execute("PRAGMA synchronous=OFF")
        db.execute("BEGIN IMMEDIATE")
        db.execute(write)
        journal = Path(f"{copy}-journal").read_bytes()
        db.execute("ROLLBACK")
    finally:
        db.close()
    return journal


_REACTIVATE = (
    "UPDATE principals SET status = 'active', "
    "document = replace(document, '\"suspended\"', '\"active\"') WHERE id = 'water'"
)
_SUSPEND = (
    "UPDATE principals SET status = 'suspended', "
    "document = replace(document, '\"active\"', '\"suspended\"') WHERE id = 'water'"
)


def test_a_planted_journal_is_never_read(bench: VaultBench, tmp_path: Path) -> None:
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    _suspend(vault, bench, "water")
    status = vault.sign(bench.ids["water"], "status", record=tracking)
    with pytest.raises(PolicyDenied):
        vault.status(status)

    index = vault.paths.index
    planted = _journal(index, tmp_path, _REACTIVATE, _SUSPEND)
    Path(f"{index}-journal").write_bytes(planted)

    # Still suspended, in this process and in a new one: the journal's pages are not read.
    with pytest.raises(PolicyDenied, match="suspended"):
        vault.status(vault.sign(bench.ids["water"], "status", record=tracking))
    fresh = Vault(vault.paths.root, unseal=lambda: SECRET)
    try:
        with pytest.raises(PolicyDenied, match="suspended"):
            fresh.status(fresh.sign(bench.ids["water"], "status", record=tracking))
        bench.submit_receipt()  # a write: the file replaced, the journal removed
    finally:
        fresh.close()
    assert not Path(f"{index}-journal").exists()
    with pytest.raises(PolicyDenied, match="suspended"):
        vault.status(vault.sign(bench.ids["water"], "status", record=tracking))
    bench.audit()


def test_a_journal_left_by_an_older_version_changes_nothing(
    bench: VaultBench, tmp_path: Path
) -> None:
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    index = vault.paths.index
    before = index.read_bytes()
    leftover = _journal(
        index, tmp_path, None, "UPDATE meta SET value = value || '.' WHERE key = 'size'"
    )
    Path(f"{index}-journal").write_bytes(leftover)

    row = vault.status(vault.sign(bench.ids["owner"], "status", record=tracking))
    assert row.tracking == tracking
    assert index.read_bytes() == before
