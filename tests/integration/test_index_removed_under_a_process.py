"""The index removed under a long-lived vault (a server) after its tag had failed.

A tester's finding: a server that had seen an edited index (exit 4, as documented) kept
answering exit 4 once the file was deleted, comparing its edited copy with the log,
until some other process wrote the file; SECURITY.md says a deleted index is rebuilt
from the verified log by the next request.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from vault_support import VaultBench

from pcii_vault.errors import IntegrityError

SECRET = b"index-removed-under-a-process"


def test_an_edited_index_then_removed_is_rebuilt_by_the_next_request(tmp_path: Path) -> None:
    bench = VaultBench(tmp_path, secret=SECRET, attachment_bytes=b"fictional\n")
    vault = bench.vault
    tracking = bench.submit_receipt().tracking_number
    status = vault.sign(bench.ids["office"], "status", record=tracking)
    assert vault.status(status).state == "received"
    path = vault.paths.index
    with sqlite3.connect(path) as db:  # an edit the tag does not cover
        db.execute("UPDATE principals SET status='suspended' WHERE id='office'")
    with pytest.raises(IntegrityError, match="principals"):
        vault.status(vault.sign(bench.ids["office"], "status", record=tracking))
    path.unlink()
    row = vault.status(vault.sign(bench.ids["office"], "status", record=tracking))
    assert row.state == "received"
    assert vault.index.principal("office").status == "active"
    assert path.is_file()
    bench.audit()
